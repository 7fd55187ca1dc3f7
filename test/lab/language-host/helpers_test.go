package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/emptypb"
)

// helperEnv makes the test binary act as a fake process: "child-host" (the v3.68.0 host
// run by run()) or "pack" (a policy pack started by the fake run-policy-pack module).
const helperEnv = "LH_TEST_HELPER"

func TestMain(m *testing.M) {
	switch os.Getenv(helperEnv) {
	case "child-host":
		os.Exit(fakeChildHostMain())
	case "pack":
		os.Exit(fakePackMain())
	}
	os.Exit(m.Run())
}

// serve starts srv on a free local port until the test ends and returns the port.
func serve(t *testing.T, srv *grpc.Server) int {
	t.Helper()
	port, err := serveLocal(srv)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	return port
}

func dial(t *testing.T, port int) *grpc.ClientConn {
	t.Helper()
	conn, err := dialLocal(port)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// startAdapter puts the adapter's server in front of child and returns a client
// connection to the adapter.
func startAdapter(t *testing.T, child *grpc.Server) *grpc.ClientConn {
	t.Helper()
	childConn := dial(t, serve(t, child))
	fwd := &forwarder{target: func(context.Context) (*grpc.ClientConn, error) { return childConn, nil }}
	return dial(t, serve(t, newServer(fwd, &pulumirpc.LanguageRuntime_ServiceDesc, newLanguageRuntime(), "RunPlugin")))
}

// adapterClient is a LanguageRuntime client of the adapter in front of a fake child host.
func adapterClient(t *testing.T) pulumirpc.LanguageRuntimeClient {
	t.Helper()
	return pulumirpc.NewLanguageRuntimeClient(startAdapter(t, childServer(newFakeRuntime())))
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// pluginStream gathers a RunPlugin stream in the background.
type pluginStream struct {
	mu        sync.Mutex
	stdout    bytes.Buffer
	stderr    bytes.Buffer
	exit      *int32
	afterExit int // messages that came after the exit code
	err       error
	done      chan struct{}
}

func readPlugin(stream grpc.ServerStreamingClient[pulumirpc.RunPluginResponse]) *pluginStream {
	p := &pluginStream{done: make(chan struct{})}
	go func() {
		defer close(p.done)
		for {
			msg, err := stream.Recv()
			p.mu.Lock()
			if err != nil {
				if !errors.Is(err, io.EOF) {
					p.err = err
				}
				p.mu.Unlock()
				return
			}
			if p.exit != nil {
				p.afterExit++
			}
			switch o := msg.GetOutput().(type) {
			case *pulumirpc.RunPluginResponse_Stdout:
				p.stdout.Write(o.Stdout)
			case *pulumirpc.RunPluginResponse_Stderr:
				p.stderr.Write(o.Stderr)
			case *pulumirpc.RunPluginResponse_Exitcode:
				code := o.Exitcode
				p.exit = &code
			}
			p.mu.Unlock()
		}
	}()
	return p
}

// startRunPlugin sends req to client's RunPlugin, fails the test if the call is refused, and
// gathers the stream.
func startRunPlugin(t *testing.T, ctx context.Context, client pulumirpc.LanguageRuntimeClient,
	req *pulumirpc.RunPluginRequest,
) *pluginStream {
	t.Helper()
	stream, err := client.RunPlugin(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	return readPlugin(stream)
}

// runPluginOutput runs req to its end, which must be clean, with exactly one exit code, last;
// it returns the stdout, the stderr and the exit code.
func runPluginOutput(t *testing.T, client pulumirpc.LanguageRuntimeClient, req *pulumirpc.RunPluginRequest) (
	stdout, stderr string, code int32,
) {
	t.Helper()
	p := startRunPlugin(t, testContext(t), client, req)
	p.wait(t)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil {
		t.Fatal(p.err)
	}
	if p.exit == nil {
		t.Fatalf("no exit code (stdout %q, stderr %q)", p.stdout.String(), p.stderr.String())
	}
	if p.afterExit != 0 {
		t.Errorf("%d messages after the exit code, want it last", p.afterExit)
	}
	return p.stdout.String(), p.stderr.String(), *p.exit
}

// waitLine returns the first stdout line containing substr.
func (p *pluginStream) waitLine(t *testing.T, substr string) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		p.mu.Lock()
		out := p.stdout.String()
		p.mu.Unlock()
		for _, line := range strings.SplitAfter(out, "\n") {
			if strings.HasSuffix(line, "\n") && strings.Contains(line, substr) {
				return strings.TrimSpace(line)
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	t.Fatalf("no stdout line with %q; stdout %q, stderr %q", substr, p.stdout.String(), p.stderr.String())
	return ""
}

func (p *pluginStream) wait(t *testing.T) {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		t.Fatal("the RunPlugin stream did not end")
	}
}

// pluginDirs makes root/node_modules with the fake @pulumi/pulumi and a plugin folder
// below root, so the module is resolved from the plugin folder upwards.
func pluginDirs(t *testing.T) (root, plugin string) {
	t.Helper()
	root = t.TempDir()
	nodeModules(t, root)
	plugin = filepath.Join(root, "plugins", "one")
	if err := os.MkdirAll(plugin, 0o755); err != nil {
		t.Fatal(err)
	}
	return root, plugin
}

func testBinary(t *testing.T) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return exe
}

func requireNode(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("node"); err != nil {
		t.Fatal("node is not on PATH: the RunPlugin tests start it")
	}
}

// processGone reports whether pid has exited (a zombie counts as gone).
func processGone(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && i+2 < len(s) && s[i+2] == 'Z'
}

func waitGone(t *testing.T, pids ...int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for _, pid := range pids {
		for !processGone(pid) {
			if time.Now().After(deadline) {
				t.Fatalf("process %d still running", pid)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// packReportOf is what the fake policy pack behind analyzer reports of itself.
func packReportOf(t *testing.T, ctx context.Context, analyzer pulumirpc.AnalyzerClient) packReport {
	t.Helper()
	info, err := analyzer.GetAnalyzerInfo(ctx, &emptypb.Empty{})
	if err != nil {
		t.Fatalf("GetAnalyzerInfo: %v", err)
	}
	var got packReport
	if err := json.Unmarshal([]byte(info.GetDescription()), &got); err != nil {
		t.Fatal(err)
	}
	return got
}
