package agentstream_test

import (
	"context"
	"errors"
	"os"
	"testing"

	"github.com/agentstream/agentstream/clients/go/agentstream"
)

// authTarget is the second interop server, which requires a token (see .ci/interop.sh).
func authTarget(t *testing.T) (target, runner, reader string) {
	t.Helper()
	target, runner, reader = os.Getenv("AGENTSTREAM_INTEROP_AUTH_TARGET"), os.Getenv("AGENTSTREAM_INTEROP_RUNNER_TOKEN"), os.Getenv("AGENTSTREAM_INTEROP_READER_TOKEN")
	if target == "" || runner == "" || reader == "" {
		t.Fatal("AGENTSTREAM_INTEROP_AUTH_TARGET and the tokens are not set: run these tests with `make interop`")
	}
	return target, runner, reader
}

func TestTokens(t *testing.T) {
	target, runner, reader := authTarget(t)
	ctx := context.Background()

	anonymous, err := agentstream.Dial(target)
	if err != nil {
		t.Fatal(err)
	}
	defer anonymous.Close()
	if _, err := anonymous.GetRun(ctx, "no-such-run"); !errors.Is(err, agentstream.ErrUnauthenticated) {
		t.Fatalf("no token: got %v, want UNAUTHENTICATED", err)
	}

	withRunner, err := agentstream.Dial(target, agentstream.WithToken(runner))
	if err != nil {
		t.Fatal(err)
	}
	defer withRunner.Close()
	runID, err := withRunner.StartRun(ctx, "hello", agentstream.RunOptions{})
	if err != nil {
		t.Fatalf("StartRun with a runner token: %v", err)
	}

	withReader, err := agentstream.Dial(target, agentstream.WithToken(reader))
	if err != nil {
		t.Fatal(err)
	}
	defer withReader.Close()
	if run, err := withReader.GetRun(ctx, runID); err != nil || run.GetRunId() != runID {
		t.Fatalf("GetRun with a reader token: %v", err)
	}
	_, err = withReader.StartRun(ctx, "hello", agentstream.RunOptions{})
	var typed *agentstream.Error
	if !errors.Is(err, agentstream.ErrPermissionDenied) || !errors.As(err, &typed) || typed.Metadata["required_role"] != "runner" {
		t.Fatalf("StartRun with a reader token: got %v, want PERMISSION_DENIED (required_role runner)", err)
	}
}
