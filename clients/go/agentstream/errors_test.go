package agentstream_test

import (
	"errors"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/agentstream/agentstream/clients/go/agentstream"
	pb "github.com/agentstream/agentstream/clients/go/agentstreamv1"
)

func TestErrorForTask(t *testing.T) {
	cases := []struct {
		task   *pb.TaskPayload
		reason string
		code   codes.Code
	}{
		{&pb.TaskPayload{Status: pb.TaskStatus_TASK_STATUS_FAILED, Msg: "503",
			Error: &pb.TaskError{Reason: "LLM_UPSTREAM_ERROR", Code: "UNAVAILABLE", Metadata: map[string]string{"http_status": "503"}}},
			"LLM_UPSTREAM_ERROR", codes.Unavailable},
		{&pb.TaskPayload{Status: pb.TaskStatus_TASK_STATUS_FAILED, Error: &pb.TaskError{Reason: "SOMETHING_NEW", Code: "BOGUS"}},
			"SOMETHING_NEW", codes.Unknown},
		{&pb.TaskPayload{Status: pb.TaskStatus_TASK_STATUS_CANCELLED, Error: &pb.TaskError{Reason: "RUN_CANCELLED", Code: "CANCELLED"}},
			"RUN_CANCELLED", codes.Canceled},
		{&pb.TaskPayload{Status: pb.TaskStatus_TASK_STATUS_TIMED_OUT}, "RUN_TIMED_OUT", codes.DeadlineExceeded},
		{&pb.TaskPayload{Status: pb.TaskStatus_TASK_STATUS_INTERRUPTED}, "RUN_INTERRUPTED", codes.Unavailable},
		{&pb.TaskPayload{Status: pb.TaskStatus_TASK_STATUS_FAILED}, "INTERNAL", codes.Internal},
	}
	for _, c := range cases {
		var typed *agentstream.Error
		err := agentstream.ErrorForTask(c.task)
		if !errors.As(err, &typed) || typed.Reason != c.reason || typed.Code != c.code {
			t.Fatalf("%v: got %v, want %s %s", c.task, err, c.code, c.reason)
		}
	}
	if err := agentstream.ErrorForTask(&pb.TaskPayload{Status: pb.TaskStatus_TASK_STATUS_SUCCEEDED, Success: true}); err != nil {
		t.Fatalf("a successful task has an error: %v", err)
	}
	if err := agentstream.ErrorForTask(&pb.TaskPayload{Status: pb.TaskStatus_TASK_STATUS_INTERRUPTED}); !errors.Is(err, agentstream.ErrRunInterrupted) {
		t.Fatalf("errors.Is(ErrRunInterrupted): %v", err)
	}
}
