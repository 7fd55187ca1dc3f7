// Command pulumi-language-nodejs is the lab's nodejs language host adapter: it runs the
// v3.68.0 nodejs language host as a child, forwards every LanguageRuntime call to it and
// answers RunPlugin itself, so that a v3.248 CLI can start policy packs written in
// TypeScript. See README.md.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
	"google.golang.org/grpc"
)

// shutdownGrace bounds each shutdown step: RunPlugin calls returning after their
// process groups are killed, and the child host's exit after SIGTERM.
const shutdownGrace = 5 * time.Second

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// run serves until ctx ends or the child host exits and returns the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fail := func(err error) int {
		fmt.Fprintf(stderr, "pulumi-language-nodejs (adapter): %v\n", err)
		return 1
	}
	path, err := childHostPath()
	if err != nil {
		return fail(err)
	}
	child, err := startChildHost(path, args)
	if err != nil {
		return fail(err)
	}
	defer child.stop(shutdownGrace)

	conn, err := dialLocal(child.port)
	if err != nil {
		return fail(err)
	}
	defer conn.Close()

	runtime := newLanguageRuntime()
	fwd := &forwarder{target: func(context.Context) (*grpc.ClientConn, error) { return conn, nil }}
	srv := newServer(fwd, &pulumirpc.LanguageRuntime_ServiceDesc, runtime, "RunPlugin")
	port, err := serveLocal(srv)
	if err != nil {
		return fail(err)
	}

	// Like every plugin: the port first, then whatever the child's programs print.
	if _, err := fmt.Fprintf(stdout, "%d\n", port); err != nil {
		srv.Stop()
		return fail(err)
	}
	copied := make(chan struct{})
	go func() {
		child.copyStdout(stdout)
		close(copied)
	}()

	code := 0
	select {
	case <-ctx.Done():
	case <-child.exited:
		code = child.exitCode()
	}

	// The engine asks a plugin to go by signal and gives it 5 s; calls still running are
	// cancelled now, which kills the RunPlugin process groups.
	srv.Stop()
	runtime.waitIdle(shutdownGrace)
	child.stop(shutdownGrace)
	select {
	case <-copied:
	case <-time.After(time.Second):
	}
	return code
}
