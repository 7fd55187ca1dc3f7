package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/structpb"
)

// collect reads a RunPlugin stream to its end.
func collect(stream grpc.ServerStreamingClient[pulumirpc.RunPluginResponse]) ([]*pulumirpc.RunPluginResponse, error) {
	var msgs []*pulumirpc.RunPluginResponse
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return msgs, nil
		}
		if err != nil {
			return msgs, err
		}
		msgs = append(msgs, msg)
	}
}

// split joins the stdout and stderr messages and checks that exactly one exit code
// came, last.
func split(t *testing.T, msgs []*pulumirpc.RunPluginResponse) (stdout, stderr string, code int32) {
	t.Helper()
	var out, errOut strings.Builder
	for i, m := range msgs {
		switch o := m.GetOutput().(type) {
		case *pulumirpc.RunPluginResponse_Stdout:
			out.Write(o.Stdout)
		case *pulumirpc.RunPluginResponse_Stderr:
			errOut.Write(o.Stderr)
		case *pulumirpc.RunPluginResponse_Exitcode:
			if i != len(msgs)-1 {
				t.Errorf("exit code is message %d of %d, want the last", i+1, len(msgs))
			}
			return out.String(), errOut.String(), o.Exitcode
		}
	}
	t.Fatalf("no exit code in %d messages (stdout %q, stderr %q)", len(msgs), out.String(), errOut.String())
	return "", "", 0
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

type pluginReport struct {
	Argv       []string `json:"argv"`
	Cwd        string   `json:"cwd"`
	Foo        *string  `json:"foo"`
	Typescript *string  `json:"typescript"`
	Tsconfig   *string  `json:"tsconfig"`
	ExecArgv   []string `json:"execArgv"`
}

func TestRunPluginCommandLine(t *testing.T) {
	requireNode(t)
	_, plugin := pluginDirs(t)
	pwd := t.TempDir()
	conn, _ := startAdapter(t, childServer(newFakeRuntime()))
	client := pulumirpc.NewLanguageRuntimeClient(conn)

	withOptions := func(m map[string]any) *structpb.Struct {
		s, err := structpb.NewStruct(m)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	cases := []struct {
		name           string
		options        *structpb.Struct
		exit           int32
		wantTypescript *string
		wantTsconfig   *string
		wantExecArgv   []string
	}{
		{name: "defaults", exit: 0, wantTypescript: ptr("true"), wantExecArgv: []string{}},
		{
			name:    "options",
			options: withOptions(map[string]any{"typescript": false, "tsconfig": "tsconfig.lab.json", "nodeargs": "--no-warnings --max-old-space-size=512"}),
			exit:    3, wantTsconfig: ptr("tsconfig.lab.json"),
			wantExecArgv: []string{"--no-warnings", "--max-old-space-size=512"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			stdout, stderr, code := runPluginOutput(t, client, &pulumirpc.RunPluginRequest{
				Pwd:  pwd,
				Args: []string{"x", "y z"},
				Env:  []string{"LH_FOO=bar", "LH_EXIT=" + strconv.Itoa(int(tc.exit))},
				Info: &pulumirpc.ProgramInfo{RootDirectory: plugin, ProgramDirectory: plugin, EntryPoint: ".", Options: tc.options},
				Kind: "resource",
			})
			var got pluginReport
			if err := json.Unmarshal([]byte(strings.TrimSpace(stdout)), &got); err != nil {
				t.Fatalf("stdout %q: %v", stdout, err)
			}
			if want := []string{plugin, "x", "y z"}; !slices.Equal(got.Argv, want) {
				t.Errorf("argv %q, want %q (program directory first, then the request's args)", got.Argv, want)
			}
			if got.Cwd != pwd {
				t.Errorf("cwd %q, want the request's pwd %q", got.Cwd, pwd)
			}
			if got.Foo == nil || *got.Foo != "bar" {
				t.Errorf("LH_FOO %v, want bar from the request's env", got.Foo)
			}
			if !equalPtr(got.Typescript, tc.wantTypescript) || !equalPtr(got.Tsconfig, tc.wantTsconfig) {
				t.Errorf("PULUMI_NODEJS_TYPESCRIPT %v, TSCONFIG_PATH %v; want %v, %v",
					deref(got.Typescript), deref(got.Tsconfig), deref(tc.wantTypescript), deref(tc.wantTsconfig))
			}
			if !slices.Equal(got.ExecArgv, tc.wantExecArgv) {
				t.Errorf("node options %q, want %q", got.ExecArgv, tc.wantExecArgv)
			}
			if stderr != "plugin stderr\n" {
				t.Errorf("stderr %q, want %q", stderr, "plugin stderr\n")
			}
			if code != tc.exit {
				t.Errorf("exit code %d, want %d", code, tc.exit)
			}
		})
	}
}

func ptr(s string) *string { return &s }

func deref(p *string) string {
	if p == nil {
		return "<unset>"
	}
	return *p
}

func equalPtr(a, b *string) bool { return deref(a) == deref(b) }

func TestRunPluginModuleMissing(t *testing.T) {
	requireNode(t)
	conn, _ := startAdapter(t, childServer(newFakeRuntime()))
	_, stderr, code := runPluginOutput(t, pulumirpc.NewLanguageRuntimeClient(conn), &pulumirpc.RunPluginRequest{
		Args: []string{"127.0.0.1:1"},
		Info: &pulumirpc.ProgramInfo{ProgramDirectory: t.TempDir()},
		Kind: "analyzer",
	})
	// The engine looks for this text to tell the user to install the pack's dependencies.
	if !strings.Contains(stderr, "Cannot find module '@pulumi/pulumi/cmd/run-policy-pack'") {
		t.Errorf("stderr %q lacks node's Cannot find module message", stderr)
	}
	if code == 0 {
		t.Error("exit code 0, want node's failure")
	}
}

func TestRunPluginRejectsBadRequests(t *testing.T) {
	conn, _ := startAdapter(t, childServer(newFakeRuntime()))
	client := pulumirpc.NewLanguageRuntimeClient(conn)
	options, _ := structpb.NewStruct(map[string]any{"typescript": "yes"})
	for name, req := range map[string]*pulumirpc.RunPluginRequest{
		"no program directory": {Kind: "resource"},
		"typescript not bool":  {Info: &pulumirpc.ProgramInfo{ProgramDirectory: t.TempDir(), Options: options}},
		"debugger":             {Info: &pulumirpc.ProgramInfo{ProgramDirectory: t.TempDir()}, AttachDebugger: true},
	} {
		stream, err := client.RunPlugin(testContext(t), req)
		if err == nil {
			_, err = collect(stream)
		}
		if code := status.Code(err); code != codes.InvalidArgument && code != codes.Unimplemented {
			t.Errorf("%s: %v, want InvalidArgument or Unimplemented", name, err)
		}
	}
}

// pluginStream gathers a RunPlugin stream in the background.
type pluginStream struct {
	mu     sync.Mutex
	stdout bytes.Buffer
	stderr bytes.Buffer
	exit   *int32
	err    error
	done   chan struct{}
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

func TestRunPluginCancelKillsProcessGroup(t *testing.T) {
	requireNode(t)
	_, plugin := pluginDirs(t)
	conn, _ := startAdapter(t, childServer(newFakeRuntime()))
	ctx, cancel := context.WithCancel(testContext(t))
	stream, err := pulumirpc.NewLanguageRuntimeClient(conn).RunPlugin(ctx, &pulumirpc.RunPluginRequest{
		Env:  []string{"LH_HANG=1"},
		Info: &pulumirpc.ProgramInfo{ProgramDirectory: plugin},
		Kind: "resource",
	})
	if err != nil {
		t.Fatal(err)
	}
	p := readPlugin(stream)
	var pids struct{ Pids []int }
	if err := json.Unmarshal([]byte(p.waitLine(t, `"pids"`)), &pids); err != nil || len(pids.Pids) != 2 {
		t.Fatalf("pids line: %v", err)
	}
	cancel()
	p.wait(t)
	waitGone(t, pids.Pids...)
	if status.Code(p.err) != codes.Canceled {
		t.Errorf("stream ended with %v, want Canceled", p.err)
	}
}

// startPack runs the fake policy pack through RunPlugin and returns the stream and an
// analyzer client connected to the port the stream announced.
func startPack(t *testing.T, ctx context.Context, packBin string) (*pluginStream, pulumirpc.AnalyzerClient, string) {
	t.Helper()
	requireNode(t)
	_, plugin := pluginDirs(t)
	conn, _ := startAdapter(t, childServer(newFakeRuntime()))
	stream, err := pulumirpc.NewLanguageRuntimeClient(conn).RunPlugin(ctx, &pulumirpc.RunPluginRequest{
		Pwd:  t.TempDir(),
		Args: []string{"127.0.0.1:4242"},
		Env:  []string{"LH_FAKE_PACK=" + packBin, "LH_FROM_REQUEST=yes"},
		Info: &pulumirpc.ProgramInfo{RootDirectory: plugin, ProgramDirectory: plugin, EntryPoint: "."},
		Kind: "analyzer",
	})
	if err != nil {
		t.Fatal(err)
	}
	p := readPlugin(stream)
	port, err := parsePort(p.waitLine(t, ""))
	if err != nil {
		t.Fatal(err)
	}
	return p, pulumirpc.NewAnalyzerClient(dial(t, port)), plugin
}

func testBinary(t *testing.T) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return exe
}

func TestRunPolicyPackWithStackConfiguration(t *testing.T) {
	ctx, cancel := context.WithCancel(testContext(t))
	p, analyzer, plugin := startPack(t, ctx, testBinary(t))

	if _, err := analyzer.Handshake(ctx, &pulumirpc.AnalyzerHandshakeRequest{EngineAddress: "127.0.0.1:4242"}); err != nil {
		t.Fatalf("Handshake: %v", err)
	}
	if _, err := analyzer.ConfigureStack(ctx, &pulumirpc.AnalyzerStackConfigureRequest{
		Organization: "org", Project: "zerotouch", Stack: "lab", DryRun: true,
		Config: map[string]string{"zerotouch:vpnCidr": "10.8.0.0/24"},
		Tags:   map[string]string{"team": "platform"},
	}); err != nil {
		t.Fatalf("ConfigureStack: %v", err)
	}
	got := packReportOf(t, ctx, analyzer)
	if want := []string{"127.0.0.1:4242", plugin}; !slices.Equal(got.Args, want) {
		t.Errorf("pack args %q, want %q (engine address, then the program directory last)", got.Args, want)
	}
	if got.Cwd != plugin {
		t.Errorf("pack cwd %q, want the program directory %q", got.Cwd, plugin)
	}
	want := map[string]string{
		"PULUMI_NODEJS_ORGANIZATION": "org", "PULUMI_NODEJS_PROJECT": "zerotouch", "PULUMI_NODEJS_STACK": "lab",
		"PULUMI_NODEJS_DRY_RUN": "true", "PULUMI_CONFIG": `{"zerotouch:vpnCidr":"10.8.0.0/24"}`,
		"PULUMI_NODEJS_TYPESCRIPT": "true", "LH_FROM_REQUEST": "yes",
	}
	for k, v := range want {
		if got.Env[k] != v {
			t.Errorf("pack env %s=%q, want %q", k, got.Env[k], v)
		}
	}
	if got.Tags["team"] != "platform" {
		t.Errorf("pack saw tags %v, want the ConfigureStack call passed on", got.Tags)
	}
	// Calls the pack does not implement keep their code through the proxy.
	if _, err := analyzer.Analyze(ctx, &pulumirpc.AnalyzeRequest{}); status.Code(err) != codes.Unimplemented {
		t.Errorf("Analyze: %v, want Unimplemented", err)
	}
	p.waitLine(t, "pack output after the port")

	cancel()
	p.wait(t)
	waitGone(t, got.Pid)
	p.mu.Lock()
	defer p.mu.Unlock()
	if !strings.Contains(p.stderr.String(), "pack started") {
		t.Errorf("stderr %q lacks the pack's own stderr", p.stderr.String())
	}
}

func TestRunPolicyPackWithoutStackConfiguration(t *testing.T) {
	ctx := testContext(t)
	_, analyzer, _ := startPack(t, ctx, testBinary(t))
	got := packReportOf(t, ctx, analyzer)
	if _, ok := got.Env["PULUMI_NODEJS_STACK"]; ok {
		t.Errorf("pack has PULUMI_NODEJS_STACK=%q without a ConfigureStack call", got.Env["PULUMI_NODEJS_STACK"])
	}
}

func TestRunPolicyPackExitsBeforeItsPort(t *testing.T) {
	ctx := testContext(t)
	p, analyzer, _ := startPack(t, ctx, "/bin/false")
	_, err := analyzer.GetAnalyzerInfo(ctx, &emptypb.Empty{})
	if status.Code(err) != codes.Unavailable {
		t.Errorf("GetAnalyzerInfo: %v, want Unavailable", err)
	}
	p.wait(t)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil || p.exit == nil || *p.exit != 1 {
		t.Errorf("stream ended with err %v, exit %v; want exit code 1", p.err, p.exit)
	}
}
