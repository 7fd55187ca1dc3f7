package remote

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/pulumi/pulumi-go-provider/infer"
	"golang.org/x/crypto/ssh"
	keyring "golang.org/x/crypto/ssh/agent"
)

// Defaults of the 1.2.1 schema, applied by Check (and again here when a field is absent).
const (
	defaultUser           = "root"
	defaultPort           = 22
	defaultDialErrorLimit = 10
	defaultPerDialTimeout = 15 // seconds; 0 means no limit
)

// Backoff between failed dials: 100 ms, growing by half each time, at most 5 s.
const (
	firstRetryDelay = 100 * time.Millisecond
	maxRetryDelay   = 5 * time.Second
)

// endpoint holds the fields the target and the bastion have in common.
type endpoint struct {
	Host               *string  `pulumi:"host"`
	Port               *float64 `pulumi:"port,optional"`
	User               *string  `pulumi:"user,optional"`
	Password           *string  `pulumi:"password,optional"`
	PrivateKey         *string  `pulumi:"privateKey,optional"`
	PrivateKeyPassword *string  `pulumi:"privateKeyPassword,optional"`
	SocketPath         *string  `pulumi:"agentSocketPath,optional"`
	HostKey            *string  `pulumi:"hostKey,optional"`
	DialErrorLimit     *int     `pulumi:"dialErrorLimit,optional"`
	PerDialTimeout     *int     `pulumi:"perDialTimeout,optional"`
}

// Connection is `command:remote:Connection`: how to reach the host the command runs on.
type Connection struct {
	endpoint
	Proxy *ProxyConnection `pulumi:"proxy,optional"`
}

// ProxyConnection is `command:remote:ProxyConnection`: a bastion the connection goes through.
type ProxyConnection struct {
	endpoint
}

func (c *Connection) Annotate(a infer.Annotator) {
	a.Describe(&c, "How to reach the remote host over SSH.")
	c.endpoint.annotate(a, "remote host")
	a.Describe(&c.Proxy, "Bastion host the connection is made through.")
}

func (c *ProxyConnection) Annotate(a infer.Annotator) {
	a.Describe(&c, "How to reach the remote host through a bastion host.")
	c.endpoint.annotate(a, "bastion host")
}

// annotate describes the endpoint's fields, host naming the machine they reach ("remote host"
// or "bastion host"), and sets their defaults; the annotator matches fields by address, so the
// fields of the embedding struct are annotated.
func (e *endpoint) annotate(a infer.Annotator, host string) {
	a.Describe(&e.Host, "Address of the "+host+".")
	a.Describe(&e.Port, "SSH port of the "+host+". Defaults to 22.")
	a.SetDefault(&e.Port, defaultPort)
	a.Describe(&e.User, "SSH user on the "+host+". Defaults to root.")
	a.SetDefault(&e.User, defaultUser)
	a.Describe(&e.Password, "Password for the "+host+" (password or keyboard-interactive authentication).")
	a.Describe(&e.PrivateKey, "Private key (file contents) for public-key authentication to the "+host+".")
	a.Describe(&e.PrivateKeyPassword, "Passphrase of an encrypted private key.")
	a.Describe(&e.SocketPath, "Unix socket of an SSH key holder (the SSH_AUTH_SOCK protocol). Defaults to $SSH_AUTH_SOCK when set.")
	a.Describe(&e.HostKey, "Expected public key of the "+host+" (authorized_keys form). When absent it is not checked.")
	a.Describe(&e.DialErrorLimit, "Failed dials tolerated before giving up; -1 means no limit. Defaults to 10.")
	a.SetDefault(&e.DialErrorLimit, defaultDialErrorLimit)
	a.Describe(&e.PerDialTimeout, "Seconds one dial may take; 0 means no limit. Defaults to 15.")
	a.SetDefault(&e.PerDialTimeout, defaultPerDialTimeout)
}

func (e *endpoint) address() (string, error) {
	if e.Host == nil || *e.Host == "" {
		return "", errors.New("connection has no host")
	}
	port := defaultPort
	if e.Port != nil {
		port = int(*e.Port)
	}
	return net.JoinHostPort(*e.Host, strconv.Itoa(port)), nil
}

func (e *endpoint) dialErrorLimit() int {
	if e.DialErrorLimit == nil {
		return defaultDialErrorLimit
	}
	return *e.DialErrorLimit
}

func (e *endpoint) perDialTimeout() time.Duration {
	if e.PerDialTimeout == nil {
		return defaultPerDialTimeout * time.Second
	}
	if *e.PerDialTimeout <= 0 {
		return 0
	}
	return time.Duration(*e.PerDialTimeout) * time.Second
}

// clientConfig builds the SSH client settings. The returned release closes the key holder's
// socket (SSH_AUTH_SOCK), if one was opened; call it once the handshake is over.
func (e *endpoint) clientConfig() (*ssh.ClientConfig, func(), error) {
	release := func() {}
	user := defaultUser
	if e.User != nil {
		user = *e.User
	}
	cfg := &ssh.ClientConfig{User: user, HostKeyCallback: ssh.InsecureIgnoreHostKey()}

	if e.HostKey != nil && *e.HostKey != "" {
		check, algorithms, err := pinnedHostKey(*e.HostKey)
		if err != nil {
			return nil, release, err
		}
		cfg.HostKeyCallback = check
		cfg.HostKeyAlgorithms = algorithms
	}

	if e.PrivateKey != nil {
		var signer ssh.Signer
		var err error
		if e.PrivateKeyPassword != nil {
			signer, err = ssh.ParsePrivateKeyWithPassphrase([]byte(*e.PrivateKey), []byte(*e.PrivateKeyPassword))
		} else {
			signer, err = ssh.ParsePrivateKey([]byte(*e.PrivateKey))
		}
		if err != nil {
			// The x/crypto messages name the problem, never the key material.
			return nil, release, fmt.Errorf("private key: %w", err)
		}
		cfg.Auth = append(cfg.Auth, ssh.PublicKeys(signer))
	}

	if e.Password != nil {
		password := *e.Password
		cfg.Auth = append(cfg.Auth,
			ssh.Password(password),
			ssh.KeyboardInteractive(func(_, _ string, questions []string, _ []bool) ([]string, error) {
				answers := make([]string, len(questions))
				for i := range answers {
					answers[i] = password
				}
				return answers, nil
			}))
	}

	socket := os.Getenv("SSH_AUTH_SOCK")
	if e.SocketPath != nil {
		socket = *e.SocketPath
	}
	if socket != "" {
		conn, err := net.Dial("unix", socket)
		if err != nil {
			return nil, release, fmt.Errorf("key socket %s: %w", socket, err)
		}
		release = func() { _ = conn.Close() }
		cfg.Auth = append(cfg.Auth, ssh.PublicKeysCallback(keyring.NewClient(conn).Signers))
	}
	return cfg, release, nil
}

// pinnedHostKey accepts exactly one host key, given in authorized_keys form
// ("ssh-ed25519 AAAA… [comment]"). It also restricts the negotiated host key algorithms to
// that key's type: otherwise a server holding several host keys may present another one
// (x/crypto prefers ECDSA and RSA over Ed25519) and a correct pin would be refused.
func pinnedHostKey(text string) (ssh.HostKeyCallback, []string, error) {
	want, _, _, _, err := ssh.ParseAuthorizedKey([]byte(text))
	if err != nil {
		return nil, nil, fmt.Errorf("hostKey is not a public key in authorized_keys form: %w", err)
	}
	algorithms := []string{want.Type()}
	if want.Type() == ssh.KeyAlgoRSA {
		algorithms = []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA}
	}
	check := func(_ string, _ net.Addr, got ssh.PublicKey) error {
		if bytes.Equal(got.Marshal(), want.Marshal()) {
			return nil
		}
		return fmt.Errorf("host key mismatch: expected %s, the host presented %s",
			ssh.FingerprintSHA256(want), ssh.FingerprintSHA256(got))
	}
	return check, algorithms, nil
}

// link is an SSH client, possibly reached through a bastion that must be closed with it.
type link struct {
	*ssh.Client
	via *ssh.Client
}

func (l *link) Close() error {
	err := l.Client.Close()
	if l.via != nil {
		_ = l.via.Close()
	}
	return err
}

// dial opens the SSH connection, retrying failed dials as the official provider does:
// dialErrorLimit failures are tolerated (so at most dialErrorLimit+1 dials), a negative limit
// retries until the context ends, and every failure is reported as a status line.
func (c *Connection) dial(ctx context.Context, status func(string)) (*link, error) {
	target, release, err := c.hop()
	if err != nil {
		return nil, err
	}
	defer release()
	if c.Proxy == nil {
		client, err := withRetries(ctx, "Dial", target.limit, status, func() (*ssh.Client, error) {
			return target.dial(ctx, nil)
		})
		if err != nil {
			return nil, err
		}
		return &link{Client: client}, nil
	}

	proxy, proxyRelease, err := c.Proxy.hop()
	if err != nil {
		return nil, fmt.Errorf("proxy: %w", err)
	}
	defer proxyRelease()
	bastion, err := withRetries(ctx, "Dial proxy", proxy.limit, status, func() (*ssh.Client, error) {
		return proxy.dial(ctx, nil)
	})
	if err != nil {
		return nil, fmt.Errorf("proxy: %w", err)
	}
	client, err := withRetries(ctx, "Dial from proxy", target.limit, status, func() (*ssh.Client, error) {
		return target.dial(ctx, bastion)
	})
	if err != nil {
		_ = bastion.Close()
		return nil, fmt.Errorf("proxy: %w", err)
	}
	return &link{Client: client, via: bastion}, nil
}

// hop is what dialling one endpoint takes: its address, SSH client settings, per-dial timeout
// and limit of failed dials.
type hop struct {
	addr    string
	cfg     *ssh.ClientConfig
	timeout time.Duration
	limit   int
}

// hop reads the endpoint's settings. The returned release closes the key holder's socket, if
// one was opened; call it once the handshakes are over.
func (e *endpoint) hop() (hop, func(), error) {
	addr, err := e.address()
	if err != nil {
		return hop{}, func() {}, err
	}
	cfg, release, err := e.clientConfig()
	if err != nil {
		return hop{}, release, err
	}
	return hop{addr: addr, cfg: cfg, timeout: e.perDialTimeout(), limit: e.dialErrorLimit()}, release, nil
}

// dial makes one TCP connection, directly or from the bastion via when it is not nil, and the
// SSH handshake, both within one per-dial timeout.
func (h hop) dial(ctx context.Context, via *ssh.Client) (*ssh.Client, error) {
	deadline := deadlineFor(h.timeout)
	var conn net.Conn
	var err error
	if via == nil {
		dialer := net.Dialer{Deadline: deadline}
		conn, err = dialer.DialContext(ctx, "tcp", h.addr)
	} else {
		dctx, cancel := contextUntil(ctx, deadline)
		defer cancel()
		conn, err = via.DialContext(dctx, "tcp", h.addr)
	}
	if err != nil {
		return nil, err
	}
	return handshake(ctx, conn, h.addr, h.cfg, deadline)
}

// withRetries calls once until it succeeds, the limit of failures is passed, or ctx ends.
func withRetries[T any](ctx context.Context, what string, limit int, status func(string), once func() (T, error)) (T, error) {
	var zero T
	delay := firstRetryDelay
	for dials := 1; ; dials++ {
		result, err := once()
		if err == nil {
			return result, nil
		}
		if limit >= 0 && dials > limit {
			return zero, fmt.Errorf("after %d failed attempts: %w", dials, err)
		}
		of := "inf"
		if limit >= 0 {
			of = strconv.Itoa(limit)
		}
		status(fmt.Sprintf("%s %d/%s failed: retrying", what, dials, of))
		timer := time.NewTimer(delay)
		select {
		case <-timer.C:
		case <-ctx.Done():
			timer.Stop()
			return zero, fmt.Errorf("%s cancelled after %d failed attempts (%w): %w", what, dials, ctx.Err(), err)
		}
		delay = min(delay*3/2, maxRetryDelay)
	}
}

func deadlineFor(timeout time.Duration) time.Time {
	if timeout <= 0 {
		return time.Time{}
	}
	return time.Now().Add(timeout)
}

func contextUntil(ctx context.Context, deadline time.Time) (context.Context, context.CancelFunc) {
	if deadline.IsZero() {
		return context.WithCancel(ctx)
	}
	return context.WithDeadline(ctx, deadline)
}

// handshake runs the SSH handshake on conn. Unlike x/crypto's own Timeout (which covers only
// the TCP connect), the deadline covers the handshake too, so a host that accepts the
// connection but never speaks SSH cannot hold the dial forever.
func handshake(ctx context.Context, conn net.Conn, addr string, cfg *ssh.ClientConfig, deadline time.Time) (*ssh.Client, error) {
	type result struct {
		conn  ssh.Conn
		chans <-chan ssh.NewChannel
		reqs  <-chan *ssh.Request
		err   error
	}
	done := make(chan result, 1)
	go func() {
		c, chans, reqs, err := ssh.NewClientConn(conn, addr, cfg)
		done <- result{c, chans, reqs, err}
	}()
	var expired <-chan time.Time
	if !deadline.IsZero() {
		timer := time.NewTimer(time.Until(deadline))
		defer timer.Stop()
		expired = timer.C
	}
	select {
	case r := <-done:
		if r.err != nil {
			_ = conn.Close()
			return nil, r.err
		}
		return ssh.NewClient(r.conn, r.chans, r.reqs), nil
	case <-expired:
		_ = conn.Close()
		<-done
		return nil, fmt.Errorf("ssh: handshake with %s did not finish within the per-dial timeout", addr)
	case <-ctx.Done():
		_ = conn.Close()
		<-done
		return nil, ctx.Err()
	}
}
