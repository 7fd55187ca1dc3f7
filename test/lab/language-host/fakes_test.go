package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
)

// The processes and servers the adapter talks to in the tests: the v3.68.0 child host, a
// policy pack, and the @pulumi/pulumi modules that start plugins.

// fakeRuntime plays the v3.68.0 host behind the forwarder.
type fakeRuntime struct {
	pulumirpc.UnimplementedLanguageRuntimeServer
	cancelled chan struct{} // closed when a GetProgramDependencies call sees its context end
	once      sync.Once
}

func newFakeRuntime() *fakeRuntime { return &fakeRuntime{cancelled: make(chan struct{})} }

func (f *fakeRuntime) GetPluginInfo(ctx context.Context, _ *emptypb.Empty) (*pulumirpc.PluginInfo, error) {
	_ = grpc.SetHeader(ctx, metadata.Pairs("x-child", "header"))
	_ = grpc.SetTrailer(ctx, metadata.Pairs("x-child-trailer", "trailer"))
	b, _ := json.Marshal(childReport{Args: os.Args[1:], Marker: os.Getenv("LH_MARKER"), Pid: os.Getpid()})
	return &pulumirpc.PluginInfo{Version: string(b)}, nil
}

type childReport struct {
	Args   []string `json:"args"`
	Marker string   `json:"marker"`
	Pid    int      `json:"pid"`
}

func (f *fakeRuntime) GetRequiredPlugins(ctx context.Context, req *pulumirpc.GetRequiredPluginsRequest) (
	*pulumirpc.GetRequiredPluginsResponse, error,
) {
	md, _ := metadata.FromIncomingContext(ctx)
	deadline, hasDeadline := ctx.Deadline()
	return &pulumirpc.GetRequiredPluginsResponse{Plugins: []*pulumirpc.PluginDependency{{
		Name:    strings.Join(md.Get("x-caller"), ","),
		Kind:    "resource",
		Version: req.GetProgram(),
		Server:  strconv.FormatBool(hasDeadline && time.Until(deadline) > 0),
	}}}, nil
}

func (f *fakeRuntime) Run(context.Context, *pulumirpc.RunRequest) (*pulumirpc.RunResponse, error) {
	st, _ := status.New(codes.FailedPrecondition, "fake run failed").WithDetails(&pulumirpc.PluginInfo{Version: "detail"})
	return nil, st.Err()
}

func (f *fakeRuntime) InstallDependencies(req *pulumirpc.InstallDependenciesRequest,
	stream grpc.ServerStreamingServer[pulumirpc.InstallDependenciesResponse],
) error {
	for _, s := range []string{"one", "two", "three"} {
		if err := stream.Send(&pulumirpc.InstallDependenciesResponse{Stdout: []byte(s)}); err != nil {
			return err
		}
	}
	return status.Error(codes.Aborted, "after three")
}

func (f *fakeRuntime) GetProgramDependencies(ctx context.Context, _ *pulumirpc.GetProgramDependenciesRequest) (
	*pulumirpc.GetProgramDependenciesResponse, error,
) {
	<-ctx.Done()
	f.once.Do(func() { close(f.cancelled) })
	return nil, ctx.Err()
}

// RunPlugin answers as the v3.68.0 host does.
func (f *fakeRuntime) RunPlugin(*pulumirpc.RunPluginRequest, pulumirpc.LanguageRuntime_RunPluginServer) error {
	return errors.New("not supported")
}

func childServer(fake *fakeRuntime) *grpc.Server {
	srv := grpc.NewServer()
	pulumirpc.RegisterLanguageRuntimeServer(srv, fake)
	return srv
}

// fakeChildHostMain is the fake v3.68.0 host for run(): it serves fakeRuntime, prints
// its port and one more stdout line, and exits on SIGTERM, or by itself with
// $LH_CHILD_EXIT after a moment.
func fakeChildHostMain() int {
	if !announce(childServer(newFakeRuntime()), "output of a program the host ran") {
		return 2
	}
	if code := os.Getenv("LH_CHILD_EXIT"); code != "" {
		time.Sleep(500 * time.Millisecond)
		n, _ := strconv.Atoi(code)
		return n
	}
	select {} // until a signal ends the process
}

// fakePack is the fake policy pack: an analyzer that reports what it was started with.
type fakePack struct {
	pulumirpc.UnimplementedAnalyzerServer
	mu   sync.Mutex
	tags map[string]string
}

func (p *fakePack) ConfigureStack(_ context.Context, req *pulumirpc.AnalyzerStackConfigureRequest) (
	*pulumirpc.AnalyzerStackConfigureResponse, error,
) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.tags = req.GetTags()
	return &pulumirpc.AnalyzerStackConfigureResponse{}, nil
}

func (p *fakePack) GetAnalyzerInfo(context.Context, *emptypb.Empty) (*pulumirpc.AnalyzerInfo, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	cwd, _ := os.Getwd()
	env := map[string]string{}
	for _, k := range []string{"PULUMI_NODEJS_ORGANIZATION", "PULUMI_NODEJS_PROJECT", "PULUMI_NODEJS_STACK",
		"PULUMI_NODEJS_DRY_RUN", "PULUMI_CONFIG", "PULUMI_NODEJS_TYPESCRIPT", "LH_FROM_REQUEST"} {
		if v, ok := os.LookupEnv(k); ok {
			env[k] = v
		}
	}
	b, _ := json.Marshal(packReport{Args: os.Args[1:], Cwd: cwd, Env: env, Pid: os.Getpid(), Tags: p.tags})
	return &pulumirpc.AnalyzerInfo{Name: "fake-pack", Description: string(b)}, nil
}

type packReport struct {
	Args []string          `json:"args"`
	Cwd  string            `json:"cwd"`
	Env  map[string]string `json:"env"`
	Pid  int               `json:"pid"`
	Tags map[string]string `json:"tags"`
}

func fakePackMain() int {
	srv := grpc.NewServer()
	pulumirpc.RegisterAnalyzerServer(srv, &fakePack{})
	fmt.Fprintln(os.Stderr, "pack started")
	if !announce(srv, "pack output after the port") {
		return 2
	}
	select {}
}

// announce serves srv as a plugin process does: on a local port, printed as the first stdout
// line, then next. It is false when no port could be had.
func announce(srv *grpc.Server, next string) bool {
	port, err := serveLocal(srv)
	if err != nil {
		return false
	}
	fmt.Printf("%d\n", port)
	fmt.Println(next)
	return true
}

// nodeModules writes a fake @pulumi/pulumi into root/node_modules: run-plugin reports
// its arguments, directory and environment as JSON and exits with $LH_EXIT, or with
// LH_HANG=1 starts a grandchild, prints both process ids and waits; run-policy-pack
// starts the test binary as the fake pack.
func nodeModules(t *testing.T, root string) {
	t.Helper()
	pkg := filepath.Join(root, "node_modules", "@pulumi", "pulumi")
	files := map[string]string{
		"package.json": `{"name": "@pulumi/pulumi", "version": "3.248.0"}`,
		"cmd/run-plugin/index.js": `
const report = {
  argv: process.argv.slice(2), cwd: process.cwd(), foo: process.env.LH_FOO || null,
  typescript: process.env.PULUMI_NODEJS_TYPESCRIPT || null, tsconfig: process.env.PULUMI_NODEJS_TSCONFIG_PATH || null,
  execArgv: process.execArgv,
};
process.stdout.write(JSON.stringify(report) + "\n");
process.stderr.write("plugin stderr\n");
if (process.env.LH_HANG) {
  const { spawn } = require("child_process");
  const g = spawn(process.execPath, ["-e", "setInterval(() => {}, 1000)"], { stdio: "ignore" });
  process.stdout.write(JSON.stringify({ pids: [process.pid, g.pid] }) + "\n");
  setInterval(() => {}, 1000);
} else {
  process.exitCode = Number(process.env.LH_EXIT || 0);
}
`,
		"cmd/run-policy-pack/index.js": `
const { spawn } = require("child_process");
const child = spawn(process.env.LH_FAKE_PACK, process.argv.slice(2), {
  stdio: "inherit", env: { ...process.env, LH_TEST_HELPER: "pack" },
});
child.on("exit", (code) => process.exit(code === null ? 1 : code));
`,
	}
	for name, text := range files {
		p := filepath.Join(pkg, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
