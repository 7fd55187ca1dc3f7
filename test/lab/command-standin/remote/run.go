package remote

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"sync"

	"golang.org/x/crypto/ssh"
)

// Names of the variables that carry the previous run's output into update and delete.
const (
	envPreviousStdout = "PULUMI_COMMAND_STDOUT"
	envPreviousStderr = "PULUMI_COMMAND_STDERR"
)

// journal is where a run reports: status lines (the command's output, dial retries) and
// diagnostics. The provider writes to the engine; tests record.
type journal interface {
	status(line string)
	warning(msg string)
	error(msg string)
}

// job is one command to run on the remote host.
type job struct {
	command string
	// commandSecret hides the command text in errors (it came from a secret input).
	commandSecret bool
	stdin         *string
	env           map[string]string
	// previous output, passed as PULUMI_COMMAND_STDOUT/STDERR when passPrevious is set
	previousStdout, previousStderr string
	passPrevious                   bool
	logging                        *Logging
}

// execute dials the connection and runs the job. It returns the captured output with one
// trailing newline removed, as the official provider stores it.
func execute(ctx context.Context, conn *Connection, j job, log journal) (string, string, error) {
	if conn == nil {
		return "", "", fmt.Errorf("connection is required")
	}
	client, err := conn.dial(ctx, log.status)
	if err != nil {
		return "", "", err
	}
	defer func() { _ = client.Close() }()
	return runOn(ctx, client.Client, j, log)
}

// runOn runs the job on a new exec channel of an open client.
func runOn(ctx context.Context, client *ssh.Client, j job, log journal) (string, string, error) {
	shell, err := client.NewSession()
	if err != nil {
		return "", "", err
	}
	defer func() { _ = shell.Close() }()

	for name, value := range j.env {
		if err := shell.Setenv(name, value); err != nil {
			log.error(acceptEnvHint(name))
			return "", "", fmt.Errorf("could not set environment variable %q: %w", name, err)
		}
	}
	if j.passPrevious {
		// Best effort, as upstream: a server without AcceptEnv for these gets a warning only.
		for name, value := range map[string]string{envPreviousStdout: j.previousStdout, envPreviousStderr: j.previousStderr} {
			if value == "" {
				continue
			}
			if err := shell.Setenv(name, value); err != nil {
				log.warning(acceptEnvHint(name))
			}
		}
	}
	if j.stdin != nil && *j.stdin != "" {
		shell.Stdin = strings.NewReader(*j.stdin)
	}

	var stdout, stderr bytes.Buffer
	shown := &lockedBuffer{}
	outLines := &lineSplitter{emit: log.status}
	errLines := &lineSplitter{emit: log.status}
	outWriters := []io.Writer{&stdout}
	if j.logging.showsStdout() {
		outWriters = append(outWriters, shown, outLines)
	}
	errWriters := []io.Writer{&stderr}
	if j.logging.showsStderr() {
		errWriters = append(errWriters, shown, errLines)
	}
	shell.Stdout = io.MultiWriter(outWriters...)
	shell.Stderr = io.MultiWriter(errWriters...)

	finished := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			_ = shell.Signal(ssh.SIGTERM)
			_ = shell.Close()
			_ = client.Close()
		case <-finished:
		}
	}()
	err = shell.Run(j.command)
	close(finished)
	outLines.flush()
	errLines.flush()

	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%w)", ctx.Err(), err)
		}
		return "", "", fmt.Errorf("%w: running %s:\n%s", err, j.quoted(), j.shownOutput(shown))
	}
	return strings.TrimSuffix(stdout.String(), "\n"), strings.TrimSuffix(stderr.String(), "\n"), nil
}

// quoted is the command as errors name it: quoted like upstream, or hidden when secret.
func (j job) quoted() string {
	if j.commandSecret {
		return "[secret]"
	}
	return fmt.Sprintf("%q", j.command)
}

// shownOutput is what an error may carry: the streams logging lets through, in arrival order.
// Upstream puts both streams in the error whatever logging says; here `logging: none` (the
// setting for output that may hold a credential) keeps the output out of the error too.
func (j job) shownOutput(shown *lockedBuffer) string {
	if !j.logging.showsStdout() && !j.logging.showsStderr() {
		return "(output not shown: logging is \"none\")"
	}
	return shown.String()
}

func acceptEnvHint(name string) string {
	return fmt.Sprintf("Unable to set '%s'. This only works if the SSH server accepts the variable "+
		"(AcceptEnv); alternatively prefix the command with 'VAR=value'.", name)
}

// lockedBuffer is a buffer both output streams write to concurrently.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// lineSplitter passes each complete line of one stream to emit; flush passes the rest.
type lineSplitter struct {
	mu      sync.Mutex
	pending []byte
	emit    func(string)
}

func (s *lineSplitter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pending = append(s.pending, p...)
	for {
		i := bytes.IndexByte(s.pending, '\n')
		if i < 0 {
			break
		}
		s.emit(strings.TrimSuffix(string(s.pending[:i]), "\r"))
		s.pending = s.pending[i+1:]
	}
	return len(p), nil
}

func (s *lineSplitter) flush() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.pending) > 0 {
		s.emit(string(s.pending))
		s.pending = nil
	}
}
