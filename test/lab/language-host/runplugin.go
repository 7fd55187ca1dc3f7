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
	"strings"
	"sync"
	"syscall"
	"time"

	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

const (
	// Modules of @pulumi/pulumi that start a plugin written in Node.js: policy packs
	// (plugin kind "analyzer") and every other kind.
	runPolicyPackModule = "@pulumi/pulumi/cmd/run-policy-pack"
	runPluginModule     = "@pulumi/pulumi/cmd/run-plugin"
	// runPathEnv overrides runPluginModule, as in the upstream host.
	runPathEnv   = "PULUMI_LANGUAGE_NODEJS_RUN_PATH"
	analyzerKind = "analyzer"

	// resolveTimeout bounds the `node -e require.resolve(...)` call.
	resolveTimeout = 60 * time.Second
	// drainLimit bounds the wait for a plugin's output pipes after it has exited (a
	// process it started may still hold them).
	drainLimit = 2 * time.Second
)

// languageRuntime is the part of pulumirpc.LanguageRuntime the adapter answers itself:
// RunPlugin. Every other method is forwarded to the child host and never reaches it.
type languageRuntime struct {
	pulumirpc.UnimplementedLanguageRuntimeServer

	// lookNode finds the node binary; exec.LookPath("node") outside tests.
	lookNode func() (string, error)
	// running counts RunPlugin calls in progress, so shutdown can wait for their
	// process groups to be killed.
	running sync.WaitGroup
}

func newLanguageRuntime() *languageRuntime {
	return &languageRuntime{lookNode: func() (string, error) { return exec.LookPath("node") }}
}

// waitIdle waits up to limit for RunPlugin calls to return.
func (h *languageRuntime) waitIdle(limit time.Duration) {
	done := make(chan struct{})
	go func() { h.running.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(limit):
	}
}

// pluginCommand is the node command line RunPlugin starts.
type pluginCommand struct {
	node string
	args []string
	dir  string
	env  []string
}

// nodeOptions are the runtime options of PulumiPlugin.yaml / PulumiPolicy.yaml that
// RunPlugin reads, with the upstream host's defaults.
type nodeOptions struct {
	typescript bool
	tsconfig   string
	nodeargs   string
}

func parseNodeOptions(options map[string]any) (nodeOptions, error) {
	opts := nodeOptions{typescript: true}
	for _, err := range []error{
		setOption(options, "typescript", "a boolean", &opts.typescript),
		setOption(options, "tsconfig", "a string", &opts.tsconfig),
		setOption(options, "nodeargs", "a string", &opts.nodeargs),
	} {
		if err != nil {
			return opts, err
		}
	}
	return opts, nil
}

// setOption sets *dst to options[name] when it is there; kind names T in the error.
func setOption[T any](options map[string]any, name, kind string, dst *T) error {
	v, ok := options[name]
	if !ok {
		return nil
	}
	t, ok := v.(T)
	if !ok {
		return fmt.Errorf("runtime option %s must be %s", name, kind)
	}
	*dst = t
	return nil
}

// RunPlugin starts a plugin written in Node.js and streams its stdout, stderr and exit
// code back. Policy packs run `node <run-policy-pack> <args...> <program dir>` in the
// program directory behind a policy proxy (policyproxy.go); other kinds run
// `node <run-plugin> <program dir> <args...>` in req.Pwd.
func (h *languageRuntime) RunPlugin(req *pulumirpc.RunPluginRequest, stream pulumirpc.LanguageRuntime_RunPluginServer) error {
	h.running.Add(1)
	defer h.running.Done()
	ctx := stream.Context()
	out := newPluginOutput(stream.Send)
	defer out.close()

	cmd, missing, err := h.pluginCommand(ctx, req)
	if err != nil {
		return err
	}
	var code int32
	switch {
	case missing != nil:
		// Stream node's own "Cannot find module" text: the engine recognises it for policy
		// packs and then tells the user to install the pack's dependencies.
		_, _ = out.stderr().Write(missing.stderr)
		code = missing.code
	case req.GetKind() == analyzerKind:
		code, err = runPolicyPack(ctx, cmd, out)
	default:
		code, err = runPlugin(ctx, cmd, out)
	}
	if ctx.Err() != nil {
		return status.FromContextError(ctx.Err()).Err()
	}
	if err != nil {
		return err
	}
	return out.exit(code)
}

// resolveFailure is node's answer when it cannot resolve the run module.
type resolveFailure struct {
	stderr []byte
	code   int32
}

func (h *languageRuntime) pluginCommand(ctx context.Context, req *pulumirpc.RunPluginRequest) (
	pluginCommand, *resolveFailure, error,
) {
	if req.GetAttachDebugger() {
		return pluginCommand{}, nil, status.Error(codes.Unimplemented,
			"attaching a debugger to a plugin is not supported by this language host")
	}
	dir := req.GetInfo().GetProgramDirectory()
	if dir == "" {
		return pluginCommand{}, nil, status.Error(codes.InvalidArgument, "RunPlugin needs info.program_directory")
	}
	opts, err := parseNodeOptions(req.GetInfo().GetOptions().AsMap())
	if err != nil {
		return pluginCommand{}, nil, status.Error(codes.InvalidArgument, err.Error())
	}
	node, err := h.lookNode()
	if err != nil {
		return pluginCommand{}, nil, status.Errorf(codes.FailedPrecondition, "could not find node on the $PATH: %v", err)
	}

	analyzer := req.GetKind() == analyzerKind
	module := runPolicyPackModule
	if !analyzer {
		module = os.Getenv(runPathEnv)
		if module == "" {
			module = runPluginModule
		}
	}
	script, failure, err := resolveModule(ctx, node, module, dir)
	if err != nil || failure != nil {
		return pluginCommand{}, failure, err
	}

	env := append(os.Environ(), req.GetEnv()...)
	if opts.typescript {
		env = append(env, "PULUMI_NODEJS_TYPESCRIPT=true")
	}
	if opts.tsconfig != "" {
		env = append(env, "PULUMI_NODEJS_TSCONFIG_PATH="+opts.tsconfig)
	}

	// nodeargs are options for node itself, so they go before the script.
	args := append(strings.Fields(opts.nodeargs), script)
	workdir := req.GetPwd()
	if analyzer {
		// Policy packs take the engine address first and their directory last, and run in
		// their own directory, as they did under the pulumi-analyzer-policy shim.
		args = append(append(args, req.GetArgs()...), dir)
		workdir = dir
	} else {
		args = append(append(args, dir), req.GetArgs()...)
	}
	return pluginCommand{node: node, args: args, dir: workdir, env: env}, nil, nil
}

// resolveModule resolves module from dir upwards with node's own resolver.
func resolveModule(ctx context.Context, node, module, dir string) (string, *resolveFailure, error) {
	lit, err := json.Marshal(module)
	if err != nil {
		return "", nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, resolveTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "-e", "process.stdout.write(require.resolve("+string(lit)+"))")
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	var exitErr *exec.ExitError
	switch {
	case ctx.Err() != nil:
		return "", nil, status.Errorf(codes.DeadlineExceeded, "resolving %s from %s: %v", module, dir, ctx.Err())
	case errors.As(err, &exitErr):
		return "", &resolveFailure{stderr: stderr.Bytes(), code: int32(exitErr.ExitCode())}, nil
	case err != nil:
		return "", nil, status.Errorf(codes.FailedPrecondition, "resolving %s from %s: %v", module, dir, err)
	}
	path := strings.TrimSpace(stdout.String())
	if path == "" {
		return "", nil, status.Errorf(codes.FailedPrecondition, "node resolved %s from %s to an empty path", module, dir)
	}
	return path, nil, nil
}

// startPlugin starts the command in a process group of its own; the group is killed when
// ctx ends, and dies with the adapter (SIGKILL as parent-death signal).
func startPlugin(ctx context.Context, c pluginCommand, stdout, stderr io.Writer) (*exec.Cmd, error) {
	cmd := exec.CommandContext(ctx, c.node, c.args...)
	cmd.Dir, cmd.Env = c.dir, c.env
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = drainLimit
	if err := cmd.Start(); err != nil {
		return nil, status.Errorf(codes.Internal, "starting %s: %v", c.node, err)
	}
	return cmd, nil
}

// exitCode turns cmd.Wait's result into the code sent to the engine: the process's exit
// status, or -1 when a signal ended it.
func exitCode(cmd *exec.Cmd, waitErr error) (int32, error) {
	var exitErr *exec.ExitError
	if waitErr == nil || errors.As(waitErr, &exitErr) || errors.Is(waitErr, exec.ErrWaitDelay) {
		return int32(cmd.ProcessState.ExitCode()), nil
	}
	return 0, status.Errorf(codes.Internal, "waiting for the plugin: %v", waitErr)
}

// runPlugin runs a plugin of any kind but analyzer, streaming its output as it comes.
func runPlugin(ctx context.Context, c pluginCommand, out *pluginOutput) (int32, error) {
	cmd, err := startPlugin(ctx, c, out.stdout(), out.stderr())
	if err != nil {
		return 0, err
	}
	// Wait returns once both pipes are drained (bounded by WaitDelay), so all output is
	// sent before the exit code.
	return exitCode(cmd, cmd.Wait())
}
