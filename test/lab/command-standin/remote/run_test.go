package remote

import (
	"context"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"zerotouch.local/lab/command-standin/internal/sshtest"
)

func TestStdinIsFedAndOutputTrimmed(t *testing.T) {
	ctx := testContext(t)
	s := sshtest.Start(t, sshtest.Options{})
	log := &recorder{}
	stdout, stderr, err := execute(ctx, connectionTo(s), job{command: "cat; echo oops >&2", stdin: ptr("line one\nline two\n")}, log)
	if err != nil {
		t.Fatal(err)
	}
	if stdout != "line one\nline two" {
		t.Errorf("stdout = %q", stdout)
	}
	if stderr != "oops" {
		t.Errorf("stderr = %q", stderr)
	}
}

func TestEmptyStdinSendsNothing(t *testing.T) {
	ctx := testContext(t)
	s := sshtest.Start(t, sshtest.Options{})
	stdout := stdoutOf(t, ctx, connectionTo(s), job{command: "wc -c", stdin: ptr("")})
	if strings.TrimSpace(stdout) != "0" {
		t.Errorf("stdout = %q, want 0 bytes read", stdout)
	}
}

func TestEnvironmentIsSet(t *testing.T) {
	ctx := testContext(t)
	s := sshtest.Start(t, sshtest.Options{AcceptEnv: []string{"GREETING"}})
	stdout := stdoutOf(t, ctx, connectionTo(s), job{command: `printf '%s' "$GREETING"`, env: map[string]string{"GREETING": "hello world"}})
	if stdout != "hello world" {
		t.Errorf("stdout = %q", stdout)
	}
}

func TestEnvironmentRefusedByServerFails(t *testing.T) {
	ctx := testContext(t)
	s := sshtest.Start(t, sshtest.Options{})
	log := &recorder{}
	_, _, err := execute(ctx, connectionTo(s), job{command: "true", env: map[string]string{"NOPE": "x"}}, log)
	if err == nil || !strings.Contains(err.Error(), `could not set environment variable "NOPE"`) {
		t.Fatalf("err = %v", err)
	}
	if s.Execs() != 0 {
		t.Errorf("the command ran although its environment could not be set")
	}
	if len(log.errors) != 1 {
		t.Errorf("errors logged = %q", log.errors)
	}
}

func TestPreviousOutputInEnvironment(t *testing.T) {
	ctx := testContext(t)
	s := sshtest.Start(t, sshtest.Options{AcceptEnv: []string{"*"}})
	show := `printf '%s|%s' "${PULUMI_COMMAND_STDOUT-unset}" "${PULUMI_COMMAND_STDERR-unset}"`
	cases := []struct {
		name string
		pass bool
		want string
	}{
		{"passed", true, "old out|old err"},
		{"not passed", false, "unset|unset"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			stdout := stdoutOf(t, ctx, connectionTo(s), job{command: show, previousStdout: "old out", previousStderr: "old err", passPrevious: c.pass})
			if stdout != c.want {
				t.Errorf("stdout = %q, want %q", stdout, c.want)
			}
		})
	}
}

func TestPreviousOutputRefusedOnlyWarns(t *testing.T) {
	ctx := testContext(t)
	s := sshtest.Start(t, sshtest.Options{})
	log := &recorder{}
	stdout, _, err := execute(ctx, connectionTo(s), job{command: "echo ran", previousStdout: "x", passPrevious: true}, log)
	if err != nil {
		t.Fatal(err)
	}
	if stdout != "ran" || len(log.warnings) != 1 {
		t.Errorf("stdout = %q, warnings = %q", stdout, log.warnings)
	}
}

func TestNonZeroExitIsAnErrorWithOutput(t *testing.T) {
	ctx := testContext(t)
	s := sshtest.Start(t, sshtest.Options{})
	_, _, err := execute(ctx, connectionTo(s), job{command: "echo partial; echo broken >&2; exit 3"}, &recorder{})
	if err == nil {
		t.Fatal("no error for exit status 3")
	}
	msg := err.Error()
	for _, want := range []string{"Process exited with status 3", `running "echo partial; echo broken >&2; exit 3":`, "partial", "broken"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q lacks %q", msg, want)
		}
	}
}

func TestErrorsKeepSecretsOut(t *testing.T) {
	ctx := testContext(t)
	s := sshtest.Start(t, sshtest.Options{})
	none := LogNone
	_, _, err := execute(ctx, connectionTo(s), job{command: "echo s3cr3t-token; exit 1", commandSecret: true, logging: &none}, &recorder{})
	if err == nil {
		t.Fatal("no error")
	}
	msg := err.Error()
	if strings.Contains(msg, "s3cr3t") {
		t.Errorf("error shows a secret: %q", msg)
	}
	if !strings.Contains(msg, "running [secret]") || !strings.Contains(msg, `logging is "none"`) {
		t.Errorf("error = %q", msg)
	}
}

func TestLoggingChoosesStreams(t *testing.T) {
	ctx := testContext(t)
	s := sshtest.Start(t, sshtest.Options{})
	cases := []struct {
		logging *Logging
		want    []string
	}{
		{nil, []string{"to-err", "to-out"}},
		{ptr(LogStdoutAndStderr), []string{"to-err", "to-out"}},
		{ptr(LogStdout), []string{"to-out"}},
		{ptr(LogStderr), []string{"to-err"}},
		{ptr(LogNone), nil},
	}
	for _, c := range cases {
		name := "unset"
		if c.logging != nil {
			name = string(*c.logging)
		}
		t.Run(name, func(t *testing.T) {
			log := &recorder{}
			stdout, stderr, err := execute(ctx, connectionTo(s), job{command: "echo to-out; echo to-err >&2", logging: c.logging}, log)
			if err != nil {
				t.Fatal(err)
			}
			if stdout != "to-out" || stderr != "to-err" {
				t.Errorf("captured %q/%q: logging must not change the outputs", stdout, stderr)
			}
			got := log.lines()
			if len(got) == 2 && got[0] > got[1] {
				got[0], got[1] = got[1], got[0]
			}
			if strings.Join(got, ",") != strings.Join(c.want, ",") {
				t.Errorf("logged %q, want %q", got, c.want)
			}
		})
	}
}

func TestHostKeyPinning(t *testing.T) {
	ctx := testContext(t)
	// The server also holds an ECDSA key, which an unrestricted x/crypto client would pick.
	s := sshtest.Start(t, sshtest.Options{ExtraECDSAHostKey: true})
	other := sshtest.Start(t, sshtest.Options{})
	cases := []struct {
		name    string
		hostKey string
		wantErr []string // none: the command runs
	}{
		{"pinned key accepted", s.AuthorizedHostKey() + " root@lab-cp-1", nil},
		{"other key refused at every dial", other.AuthorizedHostKey(), []string{"host key mismatch", "after 2 failed attempts"}},
		{"text that is no key rejected", "not-a-key", []string{"hostKey"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			conn := connectionTo(s)
			conn.HostKey = ptr(c.hostKey)
			conn.DialErrorLimit = ptr(1)
			execs := s.Execs()
			stdout, _, err := execute(ctx, conn, job{command: "echo pinned"}, &recorder{})
			if len(c.wantErr) == 0 {
				if err != nil || stdout != "pinned" {
					t.Errorf("stdout = %q, err = %v", stdout, err)
				}
				return
			}
			for _, want := range c.wantErr {
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Errorf("err = %v, want %q (dialErrorLimit 1)", err, want)
				}
			}
			if s.Execs() != execs {
				t.Errorf("a command ran on a host with the wrong key")
			}
		})
	}
}

func TestPasswordAuthentication(t *testing.T) {
	ctx := testContext(t)
	s := sshtest.Start(t, sshtest.Options{Password: "pw"})
	conn := connectionTo(s)
	conn.PrivateKey = nil
	conn.Password = ptr("pw")
	if stdout := stdoutOf(t, ctx, conn, job{command: "echo in"}); stdout != "in" {
		t.Fatalf("stdout = %q", stdout)
	}
}

// refusingListener accepts TCP connections and closes them at once, counting them.
func refusingListener(t *testing.T) (port int, accepted *atomic.Int64) {
	t.Helper()
	accepted = &atomic.Int64{}
	addr := sshtest.Listen(t, func(c net.Conn) {
		accepted.Add(1)
		_ = c.Close()
	})
	return addr.Port, accepted
}

func TestDialRetriesAreBounded(t *testing.T) {
	ctx := testContext(t)
	port, accepted := refusingListener(t)
	conn := passwordConnection(port, 3)
	log := &recorder{}
	start := time.Now()
	_, _, err := execute(ctx, conn, job{command: "true"}, log)
	elapsed := time.Since(start)
	if err == nil || !strings.Contains(err.Error(), "after 4 failed attempts") {
		t.Fatalf("err = %v", err)
	}
	if got := accepted.Load(); got != 4 {
		t.Errorf("dials = %d, want 4 (dialErrorLimit 3 tolerates 3 failures)", got)
	}
	// Backoff 100 + 150 + 225 ms between the four dials.
	if elapsed < 400*time.Millisecond || elapsed > 10*time.Second {
		t.Errorf("took %s", elapsed)
	}
	want := []string{"Dial 1/3 failed: retrying", "Dial 2/3 failed: retrying", "Dial 3/3 failed: retrying"}
	if strings.Join(log.lines(), ",") != strings.Join(want, ",") {
		t.Errorf("status lines = %q", log.lines())
	}
}

func TestUnlimitedDialsStopWithTheContext(t *testing.T) {
	port, accepted := refusingListener(t)
	t.Setenv("SSH_AUTH_SOCK", "")
	ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
	defer cancel()
	_, _, err := execute(ctx, passwordConnection(port, -1), job{command: "true"}, &recorder{})
	if err == nil || !strings.Contains(err.Error(), "cancelled") {
		t.Fatalf("err = %v", err)
	}
	if accepted.Load() < 3 {
		t.Errorf("dials = %d: -1 should keep retrying until the context ends", accepted.Load())
	}
}

func TestPerDialTimeoutCoversTheHandshake(t *testing.T) {
	ctx := testContext(t)
	// A listener that accepts and then says nothing, like a host whose sshd hangs; it holds
	// each connection until the client closes it.
	silent := sshtest.Listen(t, func(c net.Conn) {
		_, _ = io.Copy(io.Discard, c)
		_ = c.Close()
	})
	conn := passwordConnection(silent.Port, 0)
	conn.PerDialTimeout = ptr(1)
	start := time.Now()
	_, _, err := execute(ctx, conn, job{command: "true"}, &recorder{})
	if err == nil || !strings.Contains(err.Error(), "per-dial timeout") {
		t.Fatalf("err = %v", err)
	}
	if elapsed := time.Since(start); elapsed > 5*time.Second {
		t.Errorf("a 1 s per-dial timeout took %s", elapsed)
	}
}

func TestCommandStopsWithTheContext(t *testing.T) {
	s := sshtest.Start(t, sshtest.Options{})
	t.Setenv("SSH_AUTH_SOCK", "")
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	start := time.Now()
	_, _, err := execute(ctx, connectionTo(s), job{command: "sleep 20"}, &recorder{})
	if err == nil || !strings.Contains(err.Error(), context.DeadlineExceeded.Error()) {
		t.Fatalf("err = %v", err)
	}
	if elapsed := time.Since(start); elapsed > 10*time.Second {
		t.Errorf("took %s", elapsed)
	}
}

func TestProxyConnection(t *testing.T) {
	ctx := testContext(t)
	target := sshtest.Start(t, sshtest.Options{})
	bastion := sshtest.Start(t, sshtest.Options{})
	conn := connectionTo(target)
	conn.HostKey = ptr(target.AuthorizedHostKey())
	conn.Proxy = &ProxyConnection{endpoint: endpointTo(bastion)}
	conn.Proxy.HostKey = ptr(bastion.AuthorizedHostKey())
	if stdout := stdoutOf(t, ctx, conn, job{command: "echo through"}); stdout != "through" {
		t.Fatalf("stdout = %q", stdout)
	}
	if target.Execs() != 1 || bastion.Execs() != 0 {
		t.Errorf("execs: target %d, bastion %d", target.Execs(), bastion.Execs())
	}
}
