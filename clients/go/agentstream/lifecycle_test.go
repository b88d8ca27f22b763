package agentstream_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/agentstream/agentstream/clients/go/agentstream"
	pb "github.com/agentstream/agentstream/clients/go/agentstreamv1"
)

func TestRunLifecycle(t *testing.T) {
	client, err := agentstream.Dial(target(t))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	runID, err := client.StartRun(ctx, "hello there", agentstream.RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	stream, err := client.SubscribeRun(ctx, runID, 0, pb.StreamingMode_STREAMING_MODE_ALL)
	if err != nil {
		t.Fatal(err)
	}
	var seqs []uint64
	var last *pb.Message
	if err := stream.Each(func(m *pb.Message) error { seqs = append(seqs, m.GetSeq()); last = m; return nil }); err != nil {
		t.Fatal(err)
	}
	for i, seq := range seqs {
		if seq != uint64(i+1) {
			t.Fatalf("seqs %v are not 1..n", seqs)
		}
	}
	if last.GetTask().GetAnswer() != "You said: hello there" {
		t.Fatalf("answer %q", last.GetTask().GetAnswer())
	}
	// Resume point: from the middle, the rest exactly.
	tail, err := client.SubscribeRun(ctx, runID, 3, pb.StreamingMode_STREAMING_MODE_ALL)
	if err != nil {
		t.Fatal(err)
	}
	first := uint64(0)
	for m, err := range tail.All() {
		if err != nil {
			t.Fatal(err)
		}
		if first == 0 {
			first = m.GetSeq()
		}
	}
	if first != 4 {
		t.Fatalf("resumed at %d, want 4", first)
	}
	resp, err := client.CancelRun(ctx, runID, "late")
	if err != nil {
		t.Fatal(err)
	}
	if !resp.GetAlreadyFinished() || resp.GetStatus() != pb.TaskStatus_TASK_STATUS_SUCCEEDED {
		t.Fatalf("cancel of a finished run: %v", resp)
	}
	_, err = client.GetRun(ctx, "no-such-run")
	if !errors.Is(err, agentstream.ErrRunNotFound) {
		t.Fatalf("GetRun of an unknown run: %v", err)
	}
	past, err := client.SubscribeRun(ctx, runID, seqs[len(seqs)-1]+1, pb.StreamingMode_STREAMING_MODE_CORE)
	if err == nil {
		for _, err = range past.All() {
		}
	}
	var typed *agentstream.Error
	if !errors.As(err, &typed) || !errors.Is(err, agentstream.ErrSeqOutOfRange) || typed.Metadata["last_seq"] == "" {
		t.Fatalf("subscribing past the end: %v", err)
	}
}

func TestOnDisconnectContinueLetsTheRunGoOnWithoutItsCaller(t *testing.T) {
	client, err := agentstream.Dial(target(t))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	callCtx, hangUp := context.WithCancel(ctx)
	stream, err := client.StreamingRun(callCtx, "bench: tokens=20 rate=100", agentstream.RunOptions{
		Mode: pb.StreamingMode_STREAMING_MODE_CHUNK, OnDisconnect: pb.OnDisconnect_ON_DISCONNECT_CONTINUE,
	})
	if err != nil {
		t.Fatal(err)
	}
	runID := ""
	for msg, err := range stream.All() {
		if err != nil {
			t.Fatal(err)
		}
		runID = msg.GetRunId()
		break
	}
	hangUp()
	tail, err := client.SubscribeRun(ctx, runID, 0, pb.StreamingMode_STREAMING_MODE_CHUNK)
	if err != nil {
		t.Fatal(err)
	}
	var last *pb.Message
	if err := tail.Each(func(m *pb.Message) error { last = m; return nil }); err != nil {
		t.Fatal(err)
	}
	if status := last.GetTask().GetStatus(); status != pb.TaskStatus_TASK_STATUS_SUCCEEDED {
		t.Fatalf("the run ended %v after its caller hung up, want SUCCEEDED", status)
	}
}
