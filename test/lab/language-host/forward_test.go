package main

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
)

func TestForwardUnaryWithMetadata(t *testing.T) {
	client := adapterClient(t)
	ctx := testContext(t)

	var header, trailer metadata.MD
	info, err := client.GetPluginInfo(ctx, &emptypb.Empty{}, grpc.Header(&header), grpc.Trailer(&trailer))
	if err != nil {
		t.Fatal(err)
	}
	if info.GetVersion() == "" {
		t.Fatal("empty response from the child")
	}
	if got := header.Get("x-child"); len(got) != 1 || got[0] != "header" {
		t.Errorf("header x-child = %v, want [header]", got)
	}
	if got := trailer.Get("x-child-trailer"); len(got) != 1 || got[0] != "trailer" {
		t.Errorf("trailer x-child-trailer = %v, want [trailer]", got)
	}

	// Request fields, caller metadata and the deadline reach the child.
	ctx = metadata.AppendToOutgoingContext(ctx, "x-caller", "engine")
	resp, err := client.GetRequiredPlugins(ctx, &pulumirpc.GetRequiredPluginsRequest{Program: "/some/program"})
	if err != nil {
		t.Fatal(err)
	}
	p := resp.GetPlugins()[0]
	if p.GetName() != "engine" || p.GetVersion() != "/some/program" || p.GetServer() != "true" {
		t.Errorf("child saw caller=%q program=%q deadline=%q, want engine, /some/program, true",
			p.GetName(), p.GetVersion(), p.GetServer())
	}
}

func TestForwardKeepsStatus(t *testing.T) {
	client := adapterClient(t)
	ctx := testContext(t)

	_, err := client.Run(ctx, &pulumirpc.RunRequest{})
	st := status.Convert(err)
	if st.Code() != codes.FailedPrecondition || st.Message() != "fake run failed" {
		t.Errorf("Run: got %v %q, want FailedPrecondition %q", st.Code(), st.Message(), "fake run failed")
	}
	if d := st.Details(); len(d) != 1 || d[0].(*pulumirpc.PluginInfo).GetVersion() != "detail" {
		t.Errorf("Run: details %v, want the child's PluginInfo detail", d)
	}

	// Methods the child does not implement stay Unimplemented, with the child's message,
	// so the engine's fallbacks work as with the child alone.
	direct := pulumirpc.NewLanguageRuntimeClient(dial(t, serve(t, childServer(newFakeRuntime()))))
	_, wantErr := direct.Handshake(ctx, &pulumirpc.LanguageHandshakeRequest{})
	for name, call := range map[string]func() error{
		"Handshake": func() error { _, err := client.Handshake(ctx, &pulumirpc.LanguageHandshakeRequest{}); return err },
		"Pack":      func() error { _, err := client.Pack(ctx, &pulumirpc.PackRequest{}); return err },
	} {
		st := status.Convert(call())
		if st.Code() != codes.Unimplemented {
			t.Errorf("%s: code %v, want Unimplemented", name, st.Code())
		}
		if name == "Handshake" && st.Message() != status.Convert(wantErr).Message() {
			t.Errorf("Handshake: message %q, want the child's %q", st.Message(), status.Convert(wantErr).Message())
		}
	}
}

func TestForwardServerStream(t *testing.T) {
	stream, err := adapterClient(t).InstallDependencies(testContext(t),
		&pulumirpc.InstallDependenciesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for {
		msg, err := stream.Recv()
		if err != nil {
			if status.Code(err) != codes.Aborted {
				t.Errorf("stream ended with %v, want the child's Aborted", err)
			}
			break
		}
		got = append(got, string(msg.GetStdout()))
	}
	if len(got) != 3 || got[0] != "one" || got[1] != "two" || got[2] != "three" {
		t.Errorf("messages %q, want one two three", got)
	}
}

func TestForwardCancellation(t *testing.T) {
	fake := newFakeRuntime()
	conn := startAdapter(t, childServer(fake))
	ctx, cancel := context.WithCancel(testContext(t))
	errs := make(chan error, 1)
	go func() {
		_, err := pulumirpc.NewLanguageRuntimeClient(conn).GetProgramDependencies(ctx,
			&pulumirpc.GetProgramDependenciesRequest{})
		errs <- err
	}()
	time.Sleep(200 * time.Millisecond)
	cancel()
	select {
	case <-fake.cancelled:
	case <-time.After(10 * time.Second):
		t.Fatal("the child's call was not cancelled")
	}
	if err := <-errs; status.Code(err) != codes.Canceled {
		t.Errorf("caller got %v, want Canceled", err)
	}
}

// echoDesc is a bidirectional streaming service the forwarder has never heard of.
var echoDesc = grpc.ServiceDesc{
	ServiceName: "lab.test.Echo",
	HandlerType: (*any)(nil),
	Streams: []grpc.StreamDesc{{
		StreamName: "Echo", ServerStreams: true, ClientStreams: true,
		Handler: func(_ any, stream grpc.ServerStream) error {
			for {
				var m frame
				if err := stream.RecvMsg(&m); err != nil {
					if errors.Is(err, io.EOF) {
						return stream.SendMsg(&frame{payload: []byte("done")})
					}
					return err
				}
				if err := stream.SendMsg(&frame{payload: append([]byte("echo:"), m.payload...)}); err != nil {
					return err
				}
			}
		},
	}},
}

func TestForwardBidiStream(t *testing.T) {
	backend := grpc.NewServer(grpc.ForceServerCodec(frameCodec{}))
	backend.RegisterService(&echoDesc, struct{}{})
	conn := startAdapter(t, backend)

	stream, err := conn.NewStream(testContext(t), &echoDesc.Streams[0], "/lab.test.Echo/Echo",
		grpc.ForceCodec(frameCodec{}))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"a", "b"} {
		if err := stream.SendMsg(&frame{payload: []byte(s)}); err != nil {
			t.Fatal(err)
		}
		var m frame
		if err := stream.RecvMsg(&m); err != nil || string(m.payload) != "echo:"+s {
			t.Fatalf("got %q, %v; want echo:%s", m.payload, err, s)
		}
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	var m frame
	if err := stream.RecvMsg(&m); err != nil || string(m.payload) != "done" {
		t.Fatalf("after half-close got %q, %v; want done", m.payload, err)
	}
	if err := stream.RecvMsg(&m); !errors.Is(err, io.EOF) {
		t.Fatalf("stream end: %v, want EOF", err)
	}
}

func TestRunPluginIsNotForwarded(t *testing.T) {
	requireNode(t)
	p := startRunPlugin(t, testContext(t), adapterClient(t), &pulumirpc.RunPluginRequest{
		Info: &pulumirpc.ProgramInfo{ProgramDirectory: t.TempDir()},
		Kind: "resource",
	})
	p.wait(t)
	if p.err != nil {
		t.Fatalf("RunPlugin answered %v (the child's answer is \"not supported\")", p.err)
	}
	if p.exit == nil {
		t.Fatal("no exit code from the adapter's RunPlugin")
	}
}
