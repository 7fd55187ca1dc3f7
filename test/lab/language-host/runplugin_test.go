package main

import (
	"context"
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"testing"

	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/structpb"
)

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
	client := adapterClient(t)

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
	_, stderr, code := runPluginOutput(t, adapterClient(t), &pulumirpc.RunPluginRequest{
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
	client := adapterClient(t)
	options, _ := structpb.NewStruct(map[string]any{"typescript": "yes"})
	for name, req := range map[string]*pulumirpc.RunPluginRequest{
		"no program directory": {Kind: "resource"},
		"typescript not bool":  {Info: &pulumirpc.ProgramInfo{ProgramDirectory: t.TempDir(), Options: options}},
		"debugger":             {Info: &pulumirpc.ProgramInfo{ProgramDirectory: t.TempDir()}, AttachDebugger: true},
	} {
		stream, err := client.RunPlugin(testContext(t), req)
		if err == nil {
			p := readPlugin(stream)
			p.wait(t)
			err = p.err
		}
		if code := status.Code(err); code != codes.InvalidArgument && code != codes.Unimplemented {
			t.Errorf("%s: %v, want InvalidArgument or Unimplemented", name, err)
		}
	}
}

func TestRunPluginCancelKillsProcessGroup(t *testing.T) {
	requireNode(t)
	_, plugin := pluginDirs(t)
	ctx, cancel := context.WithCancel(testContext(t))
	p := startRunPlugin(t, ctx, adapterClient(t), &pulumirpc.RunPluginRequest{
		Env:  []string{"LH_HANG=1"},
		Info: &pulumirpc.ProgramInfo{ProgramDirectory: plugin},
		Kind: "resource",
	})
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
	p := startRunPlugin(t, ctx, adapterClient(t), &pulumirpc.RunPluginRequest{
		Pwd:  t.TempDir(),
		Args: []string{"127.0.0.1:4242"},
		Env:  []string{"LH_FAKE_PACK=" + packBin, "LH_FROM_REQUEST=yes"},
		Info: &pulumirpc.ProgramInfo{RootDirectory: plugin, ProgramDirectory: plugin, EntryPoint: "."},
		Kind: "analyzer",
	})
	port, err := parsePort(p.waitLine(t, ""))
	if err != nil {
		t.Fatal(err)
	}
	return p, pulumirpc.NewAnalyzerClient(dial(t, port)), plugin
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
