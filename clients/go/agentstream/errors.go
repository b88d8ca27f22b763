package agentstream

import (
	"errors"
	"fmt"
	"io"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/agentstream/agentstream/clients/go/agentstreamv1"
)

// ErrorDomain is the ErrorInfo domain of every error the server reports.
const ErrorDomain = "agentstream.dev"

// Error is a failed call, as the server's error table describes it. Use errors.As to read it and
// errors.Is against the Err* values to test its reason.
type Error struct {
	Code            codes.Code
	Reason          string // the error table's reason, e.g. "AGENT_NOT_FOUND"; empty for transport errors
	Message         string
	Metadata        map[string]string
	FieldViolations []FieldViolation
}

// FieldViolation names a request field at fault.
type FieldViolation struct {
	Field       string
	Description string
}

func (e *Error) Error() string {
	if e.Reason == "" {
		return fmt.Sprintf("%s: %s", e.Code, e.Message)
	}
	return fmt.Sprintf("%s %s: %s", e.Code, e.Reason, e.Message)
}

// Is matches another *Error with the same reason (so errors.Is(err, ErrAgentNotFound) works).
func (e *Error) Is(target error) bool {
	var other *Error
	return errors.As(target, &other) && other.Reason != "" && other.Reason == e.Reason
}

// The rows of the server's error table.
var (
	ErrInvalidArgument          = &Error{Code: codes.InvalidArgument, Reason: "INVALID_ARGUMENT"}
	ErrUnauthenticated          = &Error{Code: codes.Unauthenticated, Reason: "UNAUTHENTICATED"}
	ErrPermissionDenied         = &Error{Code: codes.PermissionDenied, Reason: "PERMISSION_DENIED"}
	ErrAgentNotFound            = &Error{Code: codes.NotFound, Reason: "AGENT_NOT_FOUND"}
	ErrRunAlreadyExists         = &Error{Code: codes.AlreadyExists, Reason: "RUN_ALREADY_EXISTS"}
	ErrTooManyRuns              = &Error{Code: codes.ResourceExhausted, Reason: "TOO_MANY_RUNS"}
	ErrServerDraining           = &Error{Code: codes.Unavailable, Reason: "SERVER_DRAINING"}
	ErrRunNotFound              = &Error{Code: codes.NotFound, Reason: "RUN_NOT_FOUND"}
	ErrSeqOutOfRange            = &Error{Code: codes.OutOfRange, Reason: "SEQ_OUT_OF_RANGE"}
	ErrTooManySubscribers       = &Error{Code: codes.ResourceExhausted, Reason: "TOO_MANY_SUBSCRIBERS"}
	ErrLLMUpstream              = &Error{Code: codes.Unavailable, Reason: "LLM_UPSTREAM_ERROR"}
	ErrRunStoreUnavailable      = &Error{Code: codes.Unavailable, Reason: "RUN_STORE_UNAVAILABLE"}
	ErrMaxStepsExceeded         = &Error{Code: codes.ResourceExhausted, Reason: "MAX_STEPS_EXCEEDED"}
	ErrRunTimedOut              = &Error{Code: codes.DeadlineExceeded, Reason: "RUN_TIMED_OUT"}
	ErrRunCancelled             = &Error{Code: codes.Canceled, Reason: "RUN_CANCELLED"}
	ErrRunInterrupted           = &Error{Code: codes.Unavailable, Reason: "RUN_INTERRUPTED"}
	ErrSessionBusy              = &Error{Code: codes.FailedPrecondition, Reason: "SESSION_BUSY"}
	ErrSessionNotFound          = &Error{Code: codes.NotFound, Reason: "SESSION_NOT_FOUND"}
	ErrInterruptNotFound        = &Error{Code: codes.NotFound, Reason: "INTERRUPT_NOT_FOUND"}
	ErrInterruptAlreadyResolved = &Error{Code: codes.FailedPrecondition, Reason: "INTERRUPT_ALREADY_RESOLVED"}
	ErrAgentDepthExceeded       = &Error{Code: codes.ResourceExhausted, Reason: "AGENT_DEPTH_EXCEEDED"}
	ErrInternal                 = &Error{Code: codes.Internal, Reason: "INTERNAL"}
)

// FromStatus turns a gRPC error into an *Error, reading ErrorInfo and BadRequest details.
func FromStatus(err error) error {
	if err == nil {
		return nil
	}
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	out := &Error{Code: st.Code(), Message: st.Message(), Metadata: map[string]string{}}
	for _, detail := range st.Details() {
		switch d := detail.(type) {
		case *errdetails.ErrorInfo:
			if d.GetDomain() == ErrorDomain {
				out.Reason = d.GetReason()
				for k, v := range d.GetMetadata() {
					out.Metadata[k] = v
				}
			}
		case *errdetails.BadRequest:
			for _, v := range d.GetFieldViolations() {
				out.FieldViolations = append(out.FieldViolations, FieldViolation{v.GetField(), v.GetDescription()})
			}
		}
	}
	return out
}

// ErrorForTask is the typed error for an in-band failure (a terminal task payload with success=false),
// for callers who prefer an error to checking GetSuccess: the reason, code and metadata of its error,
// else by its status (TIMED_OUT: RUN_TIMED_OUT, CANCELLED: RUN_CANCELLED, INTERRUPTED: RUN_INTERRUPTED;
// otherwise INTERNAL). It returns nil for a successful task.
func ErrorForTask(task *pb.TaskPayload) error {
	if task.GetSuccess() {
		return nil
	}
	out := &Error{Message: task.GetMsg(), Metadata: map[string]string{}}
	if e := task.GetError(); e != nil {
		out.Reason, out.Code = e.GetReason(), codeFromName(e.GetCode())
		for k, v := range e.GetMetadata() {
			out.Metadata[k] = v
		}
		return out
	}
	row := ErrInternal
	switch task.GetStatus() {
	case pb.TaskStatus_TASK_STATUS_TIMED_OUT:
		row = ErrRunTimedOut
	case pb.TaskStatus_TASK_STATUS_CANCELLED:
		row = ErrRunCancelled
	case pb.TaskStatus_TASK_STATUS_INTERRUPTED:
		row = ErrRunInterrupted
	}
	out.Reason, out.Code = row.Reason, row.Code
	if out.Message == "" {
		out.Message = task.GetStatus().String()
	}
	return out
}

// codeFromName is the code for a canonical gRPC code name ("UNAVAILABLE"); Unknown when it is none.
func codeFromName(name string) codes.Code {
	var code codes.Code
	if name == "" || code.UnmarshalJSON([]byte(`"`+name+`"`)) != nil {
		return codes.Unknown
	}
	return code
}

// IsResumable reports whether err is a failure of the connection rather than an answer of the server: a
// status without agentstream details and with code UNAVAILABLE, INTERNAL, UNKNOWN or ABORTED (a lost
// connection, a reset stream, a restarted server). A resuming SubscribeRun subscribes again after these.
func IsResumable(err error) bool {
	var typed *Error
	if !errors.As(FromStatus(err), &typed) || typed.Reason != "" {
		return false
	}
	switch typed.Code {
	case codes.Unavailable, codes.Internal, codes.Unknown, codes.Aborted:
		return true
	}
	return false
}

func isEOF(err error) bool { return errors.Is(err, io.EOF) }
