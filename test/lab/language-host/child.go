package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const (
	// childEnv names the v3.68.0 host binary; by default it is childName beside the
	// adapter's own executable.
	childEnv  = "ZEROTOUCH_LANGUAGE_NODEJS_CHILD"
	childName = "pulumi-language-nodejs-v3.68.0"
	// portTimeout bounds the wait for the child's port line.
	portTimeout = 60 * time.Second
)

// childHostPath returns the v3.68.0 host's path: $ZEROTOUCH_LANGUAGE_NODEJS_CHILD, else
// childName in the folder of the adapter's executable (symlinks resolved), else in the
// folder the adapter was started from.
func childHostPath() (string, error) {
	if p := os.Getenv(childEnv); p != "" {
		return p, nil
	}
	var dirs []string
	if exe, err := os.Executable(); err == nil {
		dirs = append(dirs, filepath.Dir(exe))
	}
	if p, err := exec.LookPath(os.Args[0]); err == nil {
		dirs = append(dirs, filepath.Dir(p))
	}
	for _, d := range dirs {
		p := filepath.Join(d, childName)
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p, nil
		}
	}
	return "", fmt.Errorf("no %s beside the adapter (looked in %s); set %s to the v3.68.0 nodejs language host",
		childName, strings.Join(dirs, ", "), childEnv)
}

// childHost is the v3.68.0 language host running as the adapter's child.
type childHost struct {
	cmd    *exec.Cmd
	port   int
	rest   *bufio.Reader // its stdout after the port line
	stdout *os.File
	exited chan struct{}
	err    error // cmd.Wait's result, set before exited is closed
}

// startChildHost starts the host with exactly the adapter's arguments and environment,
// in the adapter's process group (so the engine's interrupt and kill reach it as they
// would reach the host alone), and reads its port from its first stdout line.
func startChildHost(path string, args []string) (*childHost, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(path, args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, w, os.Stderr
	// If the adapter is killed outright, the host goes too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		_ = r.Close()
		_ = w.Close()
		return nil, fmt.Errorf("starting %s: %w", path, err)
	}
	_ = w.Close()
	c := &childHost{cmd: cmd, rest: bufio.NewReader(r), stdout: r, exited: make(chan struct{})}
	go func() {
		c.err = cmd.Wait()
		close(c.exited)
	}()

	type result struct {
		line string
		err  error
	}
	lines := make(chan result, 1)
	go func() {
		line, err := c.rest.ReadString('\n')
		lines <- result{line, err}
	}()
	var res result
	select {
	case res = <-lines:
	case <-time.After(portTimeout):
		res.err = fmt.Errorf("no port line within %s", portTimeout)
	}
	if res.err == nil {
		c.port, res.err = parsePort(res.line)
	}
	if res.err != nil {
		c.stop(5 * time.Second)
		return nil, fmt.Errorf("reading the port of %s: %w (exit: %v)", path, res.err, c.err)
	}
	return c, nil
}

func parsePort(line string) (int, error) {
	port, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		return 0, err
	}
	if port <= 0 || port > 65535 {
		return 0, fmt.Errorf("invalid port %d", port)
	}
	return port, nil
}

// copyStdout copies the host's remaining stdout (output of the programs it runs) to w
// until the host and everything it started have closed it.
func (c *childHost) copyStdout(w io.Writer) {
	_, _ = io.Copy(w, c.rest)
}

// exitCode is the host's exit status once it has exited (1 if a signal ended it).
func (c *childHost) exitCode() int {
	var exitErr *exec.ExitError
	if c.err == nil {
		return 0
	}
	if errors.As(c.err, &exitErr) && exitErr.ExitCode() > 0 {
		return exitErr.ExitCode()
	}
	return 1
}

// stop ends the host: SIGTERM, then SIGKILL if it is still there after grace.
func (c *childHost) stop(grace time.Duration) {
	select {
	case <-c.exited:
		return
	default:
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.exited:
	case <-time.After(grace):
		_ = c.cmd.Process.Kill()
		<-c.exited
	}
}
