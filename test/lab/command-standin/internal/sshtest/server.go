// Package sshtest is an in-process SSH server for tests. It listens on 127.0.0.1 only and runs
// each `exec` request with /bin/sh -c on the test machine, with the channel's environment and
// stdin, and reports the exit status. The server closes with the test.
package sshtest

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// commandTimeout bounds every command the server runs.
const commandTimeout = 30 * time.Second

// Options shape a server.
type Options struct {
	// AcceptEnv lists the variable names the server accepts (like sshd's AcceptEnv); "*"
	// accepts every name. Other `env` requests are refused.
	AcceptEnv []string
	// ExtraECDSAHostKey also gives the server an ECDSA host key, which x/crypto clients prefer.
	ExtraECDSAHostKey bool
	// Password, when set, is accepted for the user.
	Password string
}

// Server is a running test server.
type Server struct {
	Addr    string // 127.0.0.1:port
	Host    string
	Port    int
	User    string
	HostKey ssh.PublicKey // the Ed25519 host key
	// ClientKeyPEM is an authorised client private key (OpenSSH PEM).
	ClientKeyPEM string

	execs atomic.Int64
	mu    sync.Mutex
	last  []string // commands run, in order
}

// Start starts a server for t.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	hostSigner := signer(t, newEd25519Key(t))
	clientKey := newEd25519Key(t)
	clientPub := signer(t, clientKey).PublicKey()
	block, err := ssh.MarshalPrivateKey(clientKey, "")
	if err != nil {
		t.Fatal(err)
	}

	user := "tester"
	cfg := &ssh.ServerConfig{
		PublicKeyCallback: func(meta ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			if meta.User() == user && string(key.Marshal()) == string(clientPub.Marshal()) {
				return nil, nil
			}
			return nil, errors.New("unknown key")
		},
	}
	if opts.Password != "" {
		cfg.PasswordCallback = func(meta ssh.ConnMetadata, pw []byte) (*ssh.Permissions, error) {
			if meta.User() == user && string(pw) == opts.Password {
				return nil, nil
			}
			return nil, errors.New("wrong password")
		}
	}
	cfg.AddHostKey(hostSigner)
	if opts.ExtraECDSAHostKey {
		ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		cfg.AddHostKey(signer(t, ecKey))
	}

	s := &Server{
		Host:         "127.0.0.1",
		User:         user,
		HostKey:      hostSigner.PublicKey(),
		ClientKeyPEM: string(pem.EncodeToMemory(block)),
	}
	addr := Listen(t, func(conn net.Conn) { s.serve(conn, cfg, opts) })
	s.Addr, s.Port = addr.String(), addr.Port
	return s
}

func newEd25519Key(t testing.TB) ed25519.PrivateKey {
	t.Helper()
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

func signer(t testing.TB, key any) ssh.Signer {
	t.Helper()
	s, err := ssh.NewSignerFromKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Listen accepts TCP connections on 127.0.0.1 until the test ends and hands each to handle,
// in a goroutine of its own; after the test it closes the listener and waits (10 s at most)
// for the handlers to return.
func Listen(t testing.TB, handle func(net.Conn)) *net.TCPAddr {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				handle(conn)
			}()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Log("sshtest: connections still open 10 s after the test")
		}
	})
	return ln.Addr().(*net.TCPAddr)
}

// AuthorizedHostKey is the Ed25519 host key in authorized_keys form, as `hostKey` takes it.
func (s *Server) AuthorizedHostKey() string {
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(s.HostKey)))
}

// Execs is the number of commands the server has run.
func (s *Server) Execs() int { return int(s.execs.Load()) }

// Commands are the commands the server has run, in order.
func (s *Server) Commands() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.last...)
}

func (s *Server) serve(conn net.Conn, cfg *ssh.ServerConfig, opts Options) {
	defer func() { _ = conn.Close() }()
	_ = conn.SetDeadline(time.Now().Add(commandTimeout))
	sconn, chans, reqs, err := ssh.NewServerConn(conn, cfg)
	if err != nil {
		return
	}
	defer func() { _ = sconn.Close() }()
	go ssh.DiscardRequests(reqs)
	for nc := range chans {
		if nc.ChannelType() == "direct-tcpip" {
			go forward(nc)
			continue
		}
		// Any other channel is treated as a shell channel: the client opens no other kind.
		ch, chReqs, err := nc.Accept()
		if err != nil {
			return
		}
		go s.shell(ch, chReqs, opts)
	}
}

func (s *Server) accepts(opts Options, name string) bool {
	for _, n := range opts.AcceptEnv {
		if n == "*" || n == name {
			return true
		}
	}
	return false
}

func (s *Server) shell(ch ssh.Channel, reqs <-chan *ssh.Request, opts Options) {
	defer func() { _ = ch.Close() }()
	env := []string{"PATH=" + os.Getenv("PATH"), "LANG=C"}
	for req := range reqs {
		switch req.Type {
		case "env":
			var kv struct{ Name, Value string }
			if err := ssh.Unmarshal(req.Payload, &kv); err != nil || !s.accepts(opts, kv.Name) {
				_ = req.Reply(false, nil)
				continue
			}
			env = append(env, kv.Name+"="+kv.Value)
			_ = req.Reply(true, nil)
		case "exec":
			var cmd struct{ Command string }
			if err := ssh.Unmarshal(req.Payload, &cmd); err != nil {
				_ = req.Reply(false, nil)
				return
			}
			_ = req.Reply(true, nil)
			s.execs.Add(1)
			s.mu.Lock()
			s.last = append(s.last, cmd.Command)
			s.mu.Unlock()
			code := run(ch, cmd.Command, env)
			status := make([]byte, 4)
			binary.BigEndian.PutUint32(status, uint32(code))
			_, _ = ch.SendRequest("exit-status", false, status)
			return
		default:
			_ = req.Reply(false, nil)
		}
	}
}

// forward serves a bastion's `direct-tcpip` channel, to 127.0.0.1 only.
func forward(nc ssh.NewChannel) {
	var target struct {
		Host       string
		Port       uint32
		OriginHost string
		OriginPort uint32
	}
	if err := ssh.Unmarshal(nc.ExtraData(), &target); err != nil || target.Host != "127.0.0.1" {
		_ = nc.Reject(ssh.Prohibited, "only 127.0.0.1")
		return
	}
	conn, err := net.DialTimeout("tcp", net.JoinHostPort(target.Host, strconv.Itoa(int(target.Port))), 5*time.Second)
	if err != nil {
		_ = nc.Reject(ssh.ConnectionFailed, err.Error())
		return
	}
	ch, reqs, err := nc.Accept()
	if err != nil {
		_ = conn.Close()
		return
	}
	go ssh.DiscardRequests(reqs)
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(ch, conn); _ = ch.CloseWrite(); done <- struct{}{} }()
	go func() { _, _ = io.Copy(conn, ch); done <- struct{}{} }()
	<-done
	_ = conn.Close()
	_ = ch.Close()
}

func run(ch ssh.Channel, command string, env []string) int {
	c := exec.Command("/bin/sh", "-c", command)
	c.Env = env
	c.Dir = os.TempDir()
	c.Stdout = ch
	c.Stderr = ch.Stderr()
	stdin, err := c.StdinPipe()
	if err != nil {
		return 255
	}
	if err := c.Start(); err != nil {
		return 127
	}
	go func() {
		_, _ = io.Copy(stdin, ch)
		_ = stdin.Close()
	}()
	timer := time.AfterFunc(commandTimeout, func() { _ = c.Process.Kill() })
	defer timer.Stop()
	if err := c.Wait(); err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			return exit.ExitCode()
		}
		return 255
	}
	return 0
}
