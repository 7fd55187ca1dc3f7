package main

import (
	"io"
	"sync"

	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
)

// pluginOutput sends a plugin's stdout and stderr to the engine as RunPluginResponse
// messages, one message per write, and its exit code as the last message. A gRPC stream
// takes one sender at a time, so sends are serialised. Once the stream has failed or the
// exit code is sent, further output is dropped so that the plugin's pipes keep draining.
type pluginOutput struct {
	mu     sync.Mutex
	send   func(*pulumirpc.RunPluginResponse) error
	closed bool
}

func newPluginOutput(send func(*pulumirpc.RunPluginResponse) error) *pluginOutput {
	return &pluginOutput{send: send}
}

func (o *pluginOutput) deliver(resp *pulumirpc.RunPluginResponse) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return io.ErrClosedPipe
	}
	if err := o.send(resp); err != nil {
		o.closed = true
		return err
	}
	return nil
}

// stdout and stderr return writers that never fail, see pluginOutput.
func (o *pluginOutput) stdout() io.Writer { return outputWriter{o, false} }
func (o *pluginOutput) stderr() io.Writer { return outputWriter{o, true} }

// exit sends the exit code and closes the output.
func (o *pluginOutput) exit(code int32) error {
	err := o.deliver(&pulumirpc.RunPluginResponse{Output: &pulumirpc.RunPluginResponse_Exitcode{Exitcode: code}})
	o.close()
	return err
}

func (o *pluginOutput) close() {
	o.mu.Lock()
	o.closed = true
	o.mu.Unlock()
}

type outputWriter struct {
	o      *pluginOutput
	stderr bool
}

func (w outputWriter) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	// Marshalling happens inside Send, so p is not retained.
	resp := &pulumirpc.RunPluginResponse{Output: &pulumirpc.RunPluginResponse_Stdout{Stdout: p}}
	if w.stderr {
		resp = &pulumirpc.RunPluginResponse{Output: &pulumirpc.RunPluginResponse_Stderr{Stderr: p}}
	}
	_ = w.o.deliver(resp)
	return len(p), nil
}
