package remote

import (
	"context"
	"sync"
	"testing"
	"time"

	"zerotouch.local/lab/command-standin/internal/sshtest"
)

// recorder is a journal that keeps what it is told.
type recorder struct {
	mu       sync.Mutex
	statuses []string
	warnings []string
	errors   []string
}

func (r *recorder) keep(list *[]string, s string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	*list = append(*list, s)
}

func (r *recorder) status(line string) { r.keep(&r.statuses, line) }
func (r *recorder) warning(msg string) { r.keep(&r.warnings, msg) }
func (r *recorder) error(msg string)   { r.keep(&r.errors, msg) }

func (r *recorder) lines() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.statuses...)
}

func ptr[T any](v T) *T { return &v }

// endpointTo is an endpoint of s with the test key and quick retries.
func endpointTo(s *sshtest.Server) endpoint {
	return endpoint{
		Host:           ptr(s.Host),
		Port:           ptr(float64(s.Port)),
		User:           ptr(s.User),
		PrivateKey:     ptr(s.ClientKeyPEM),
		DialErrorLimit: ptr(0),
		PerDialTimeout: ptr(5),
	}
}

// connectionTo is a connection to s with the test key and quick retries.
func connectionTo(s *sshtest.Server) *Connection { return &Connection{endpoint: endpointTo(s)} }

// passwordConnection is a connection to port on 127.0.0.1 by password, for listeners that
// never complete an SSH handshake.
func passwordConnection(port, dialErrorLimit int) *Connection {
	c := &Connection{}
	c.Host = ptr("127.0.0.1")
	c.Port = ptr(float64(port))
	c.Password = ptr("x")
	c.DialErrorLimit = ptr(dialErrorLimit)
	return c
}

func testContext(t *testing.T) context.Context {
	t.Helper()
	t.Setenv("SSH_AUTH_SOCK", "") // never use keys held for the machine running the tests
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// stdoutOf runs j on conn, fails the test if it fails, and returns its standard output.
func stdoutOf(t *testing.T, ctx context.Context, conn *Connection, j job) string {
	t.Helper()
	stdout, _, err := execute(ctx, conn, j, &recorder{})
	if err != nil {
		t.Fatal(err)
	}
	return stdout
}
