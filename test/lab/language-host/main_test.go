package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
	"google.golang.org/protobuf/types/known/emptypb"
)

// startRun runs the adapter's run() with the test binary as the child host.
func startRun(t *testing.T, ctx context.Context, args []string) (*bufio.Reader, <-chan int, *bytes.Buffer) {
	t.Helper()
	t.Setenv(childEnv, testBinary(t))
	t.Setenv(helperEnv, "child-host")
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close(); _ = w.Close() })
	var stderr bytes.Buffer
	codes := make(chan int, 1)
	go func() { codes <- run(ctx, args, w, &stderr) }()
	return bufio.NewReader(r), codes, &stderr
}

func waitCode(t *testing.T, codes <-chan int) int {
	t.Helper()
	select {
	case code := <-codes:
		return code
	case <-time.After(20 * time.Second):
		t.Fatal("run did not return")
		return 0
	}
}

func TestRunForwardsToTheChildAndStops(t *testing.T) {
	t.Setenv("LH_MARKER", "from-the-engine")
	ctx, cancel := context.WithCancel(testContext(t))
	defer cancel()
	out, codes, _ := startRun(t, ctx, []string{"-tracing", "", "127.0.0.1:9"})

	line, err := out.ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	port, err := parsePort(line)
	if err != nil {
		t.Fatalf("first stdout line %q is not a port: %v", line, err)
	}
	info, err := pulumirpc.NewLanguageRuntimeClient(dial(t, port)).GetPluginInfo(ctx, &emptypb.Empty{})
	if err != nil {
		t.Fatal(err)
	}
	var got childReport
	if err := json.Unmarshal([]byte(info.GetVersion()), &got); err != nil {
		t.Fatal(err)
	}
	if want := []string{"-tracing", "", "127.0.0.1:9"}; !slices.Equal(got.Args, want) {
		t.Errorf("child args %q, want %q", got.Args, want)
	}
	if got.Marker != "from-the-engine" {
		t.Errorf("child env LH_MARKER=%q, want the adapter's environment", got.Marker)
	}
	if line, _ := out.ReadString('\n'); !strings.Contains(line, "output of a program the host ran") {
		t.Errorf("second stdout line %q, want the child's output after its port", line)
	}

	cancel() // as SIGINT/SIGTERM would
	if code := waitCode(t, codes); code != 0 {
		t.Errorf("exit code %d, want 0", code)
	}
	waitGone(t, got.Pid)
}

func TestRunExitsWithTheChild(t *testing.T) {
	t.Setenv("LH_CHILD_EXIT", "7")
	_, codes, _ := startRun(t, testContext(t), nil)
	if code := waitCode(t, codes); code != 7 {
		t.Errorf("exit code %d, want the child's 7", code)
	}
}

func TestRunWithoutChild(t *testing.T) {
	t.Setenv(childEnv, "/nonexistent/pulumi-language-nodejs-v3.68.0")
	var stdout, stderr bytes.Buffer
	if code := run(testContext(t), nil, &stdout, &stderr); code != 1 {
		t.Errorf("exit code %d, want 1", code)
	}
	if stdout.Len() != 0 || !strings.Contains(stderr.String(), "/nonexistent/pulumi-language-nodejs-v3.68.0") {
		t.Errorf("stdout %q, stderr %q; want nothing on stdout and the path on stderr", stdout.String(), stderr.String())
	}
}

func TestChildHostPathBesideTheAdapter(t *testing.T) {
	t.Setenv(childEnv, "")
	dir := t.TempDir()
	adapter, child := dir+"/pulumi-language-nodejs", dir+"/"+childName
	for _, p := range []string{adapter, child} {
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	old := os.Args[0]
	os.Args[0] = adapter
	defer func() { os.Args[0] = old }()
	got, err := childHostPath()
	if err != nil || got != child {
		t.Errorf("childHostPath() = %q, %v; want %q", got, err, child)
	}
}
