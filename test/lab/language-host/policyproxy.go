package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// policyProxy stands in for a policy pack while it starts, as newer nodejs hosts do.
// Under the old pulumi-analyzer-policy shim the engine passed the stack (organization,
// project, stack, dry run, config) to the pack in its environment; with RunPlugin it
// sends them with the analyzer call ConfigureStack instead, after the pack has started.
// So the proxy tells the engine its own port, answers Handshake and ConfigureStack,
// then starts the pack with those values in PULUMI_NODEJS_* / PULUMI_CONFIG, passes the
// stack configuration on to it and forwards every other analyzer call to it.
type policyProxy struct {
	pulumirpc.UnimplementedAnalyzerServer

	srv  *grpc.Server
	port int

	configOnce sync.Once
	configured chan struct{}
	config     *pulumirpc.AnalyzerStackConfigureRequest

	attachOnce sync.Once
	attached   chan struct{}
	conn       *grpc.ClientConn
	attachErr  error
}

func startPolicyProxy() (*policyProxy, error) {
	p := &policyProxy{configured: make(chan struct{}), attached: make(chan struct{})}
	p.srv = newServer(&forwarder{target: p.packConn}, &pulumirpc.Analyzer_ServiceDesc, p, "Handshake", "ConfigureStack")
	port, err := serveLocal(p.srv)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "policy proxy: %v", err)
	}
	p.port = port
	return p, nil
}

// stop ends the proxy's server and its connection to the pack.
func (p *policyProxy) stop() {
	p.srv.Stop()
	p.attach(nil, errors.New("the plugin has stopped"))
	if p.conn != nil {
		_ = p.conn.Close()
	}
}

// setConfig records the stack configuration; nil means none will come.
func (p *policyProxy) setConfig(cfg *pulumirpc.AnalyzerStackConfigureRequest) {
	p.configOnce.Do(func() {
		p.config = cfg
		close(p.configured)
	})
}

func (p *policyProxy) awaitConfig(ctx context.Context) (*pulumirpc.AnalyzerStackConfigureRequest, error) {
	select {
	case <-p.configured:
		return p.config, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// attach opens the gate for forwarded calls, with the pack's connection or an error; it
// reports whether this call opened it.
func (p *policyProxy) attach(conn *grpc.ClientConn, err error) bool {
	won := false
	p.attachOnce.Do(func() {
		p.conn, p.attachErr = conn, err
		close(p.attached)
		won = true
	})
	return won
}

// packConn is the forwarder's target: it waits until the pack is attached.
func (p *policyProxy) packConn(ctx context.Context) (*grpc.ClientConn, error) {
	// The engine calls ConfigureStack first when it has a stack; any other call first
	// (e.g. `pulumi policy publish`) means there is no stack configuration.
	p.setConfig(nil)
	select {
	case <-p.attached:
		if p.attachErr != nil {
			return nil, status.Errorf(codes.Unavailable, "policy pack not started: %v", p.attachErr)
		}
		return p.conn, nil
	case <-ctx.Done():
		return nil, status.FromContextError(ctx.Err()).Err()
	}
}

func (p *policyProxy) Handshake(context.Context, *pulumirpc.AnalyzerHandshakeRequest) (
	*pulumirpc.AnalyzerHandshakeResponse, error,
) {
	return &pulumirpc.AnalyzerHandshakeResponse{}, nil
}

func (p *policyProxy) ConfigureStack(ctx context.Context, req *pulumirpc.AnalyzerStackConfigureRequest) (
	*pulumirpc.AnalyzerStackConfigureResponse, error,
) {
	select {
	case <-p.attached:
		// A later call, once the pack runs: it is the pack's to answer.
		if p.attachErr == nil {
			return pulumirpc.NewAnalyzerClient(p.conn).ConfigureStack(ctx, req)
		}
	default:
	}
	p.setConfig(req)
	return &pulumirpc.AnalyzerStackConfigureResponse{}, nil
}

// stackEnv is the environment the pack starts with for cfg, as in the upstream host.
func stackEnv(cfg *pulumirpc.AnalyzerStackConfigureRequest) ([]string, error) {
	if cfg == nil {
		return nil, nil
	}
	var env []string
	add := func(k, v string) {
		if v != "" {
			env = append(env, k+"="+v)
		}
	}
	add("PULUMI_NODEJS_ORGANIZATION", cfg.GetOrganization())
	add("PULUMI_NODEJS_PROJECT", cfg.GetProject())
	add("PULUMI_NODEJS_STACK", cfg.GetStack())
	add("PULUMI_NODEJS_DRY_RUN", strconv.FormatBool(cfg.GetDryRun()))
	if cfg.GetConfig() != nil {
		b, err := json.Marshal(cfg.GetConfig())
		if err != nil {
			return nil, status.Errorf(codes.Internal, "encoding the stack configuration: %v", err)
		}
		add("PULUMI_CONFIG", string(b))
	}
	return env, nil
}

// runPolicyPack runs a policy pack behind a policyProxy and returns its exit code.
func runPolicyPack(ctx context.Context, c pluginCommand, out *pluginOutput) (int32, error) {
	proxy, err := startPolicyProxy()
	if err != nil {
		return 0, err
	}
	defer proxy.stop()

	// The engine reads the first stdout line as the plugin's port.
	if _, err := fmt.Fprintf(out.stdout(), "%d\n", proxy.port); err != nil {
		return 0, err
	}
	cfg, err := proxy.awaitConfig(ctx)
	if err != nil {
		return 0, status.FromContextError(err).Err()
	}
	env, err := stackEnv(cfg)
	if err != nil {
		return 0, err
	}
	c.env = append(c.env, env...)

	// The pack's first stdout line is its own port; the rest is output for the engine.
	r, w, err := os.Pipe()
	if err != nil {
		return 0, status.Errorf(codes.Internal, "pipe: %v", err)
	}
	cmd, err := startPlugin(ctx, c, w, out.stderr())
	_ = w.Close()
	if err != nil {
		_ = r.Close()
		return 0, err
	}

	ports := make(chan string, 1)
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		br := bufio.NewReader(r)
		line, err := br.ReadString('\n')
		if err != nil && line == "" {
			line = "error: " + err.Error()
		}
		ports <- line
		_, _ = io.Copy(out.stdout(), br)
	}()
	go func() {
		select {
		case line := <-ports:
			conn, err := connectPack(ctx, line, cfg)
			if !proxy.attach(conn, err) && conn != nil {
				_ = conn.Close()
			}
		case <-ctx.Done():
			proxy.attach(nil, ctx.Err())
		}
	}()

	waitErr := cmd.Wait()
	select {
	case <-drained:
	case <-time.After(drainLimit):
	}
	_ = r.Close()
	return exitCode(cmd, waitErr)
}

// connectPack connects to the pack at the port it printed and passes the stack
// configuration on; packs that do not implement ConfigureStack are fine.
func connectPack(ctx context.Context, portLine string, cfg *pulumirpc.AnalyzerStackConfigureRequest) (
	*grpc.ClientConn, error,
) {
	port, err := strconv.Atoi(strings.TrimSpace(portLine))
	if err != nil || port <= 0 || port > 65535 {
		return nil, fmt.Errorf("could not read the policy pack's port from %q", strings.TrimSpace(portLine))
	}
	conn, err := dialLocal(port)
	if err != nil {
		return nil, err
	}
	if cfg != nil {
		_, err := pulumirpc.NewAnalyzerClient(conn).ConfigureStack(ctx, cfg)
		if err != nil && status.Code(err) != codes.Unimplemented {
			_ = conn.Close()
			return nil, fmt.Errorf("policy pack configuration failed: %w", err)
		}
	}
	return conn, nil
}
