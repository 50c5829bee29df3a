package testserver

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"testing"
	"time"
)

// BuildServer builds the real server binary (./cmd/deviceserver of this
// module) into a temporary directory and returns its path. The module root
// is found from the working directory, which go test sets to the package's
// folder. When the test binary was built with -race, so is the server: the
// packages are then already compiled, and the server is checked for races.
func BuildServer(t testing.TB) string {
	t.Helper()
	root, err := moduleRoot()
	if err != nil {
		t.Fatalf("build server: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "deviceserver")
	args := []string{"build", "-o", bin}
	if raceEnabled() {
		args = append(args, "-race")
	}
	cmd := exec.Command("go", append(args, "./cmd/deviceserver")...)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return bin
}

func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}

func raceEnabled() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" && s.Value == "true" {
			return true
		}
	}
	return false
}

// FreeAddrs returns a loopback TCP address for HTTP and a UDP address for
// CoAP that were free a moment ago (bound to port 0, then released), for a
// server that must come back on the same ports after being killed.
func FreeAddrs(t testing.TB) (httpAddr, coapAddr string) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	httpAddr = l.Addr().String()
	_ = l.Close()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	coapAddr = pc.LocalAddr().String()
	_ = pc.Close()
	return httpAddr, coapAddr
}

// ChildConfig is how a Child runs the server binary.
type ChildConfig struct {
	Bin      string // from BuildServer
	DataDir  string
	HTTPAddr string // host:port, fixed so that a restart reuses it
	CoAPAddr string
	Args     []string // further flags
}

// Child is the real server binary running as a child process, started with
// the administrator credentials AdminKey and AdminSecret, so that a test can
// SIGKILL it and start it again on the same store and ports.
type Child struct {
	URL string // http://HTTPAddr
	cfg ChildConfig

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{} // closed when the current process has exited
	log    *childLog
}

// StartChild starts the binary and waits for its ready log line. The
// process is killed when the test ends; its log is shown if the test failed.
func StartChild(t testing.TB, cfg ChildConfig) *Child {
	t.Helper()
	c := &Child{URL: "http://" + cfg.HTTPAddr, cfg: cfg, log: &childLog{}}
	t.Cleanup(func() {
		_ = c.Kill()
		c.mu.Lock()
		exited := c.exited
		c.mu.Unlock()
		if exited != nil {
			<-exited
		}
		if t.Failed() {
			t.Logf("server log:\n%s", c.log.String())
		}
	})
	c.start(t)
	return c
}

// startTimeout bounds a start, including SQLite recovery after a kill.
const startTimeout = 20 * time.Second

func (c *Child) start(t testing.TB) {
	t.Helper()
	args := append([]string{
		"--http", c.cfg.HTTPAddr, "--coap", c.cfg.CoAPAddr, "--data-dir", c.cfg.DataDir,
		"--admin-key", AdminKey, "--admin-secret", AdminSecret, "--log-level", "info",
	}, c.cfg.Args...)
	cmd := exec.Command(c.cfg.Bin, args...)
	ready := make(chan struct{})
	c.log.arm(ready)
	cmd.Stdout = c.log
	cmd.Stderr = c.log
	if err := cmd.Start(); err != nil {
		t.Fatalf("start server: %v", err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	c.mu.Lock()
	c.cmd, c.exited = cmd, exited
	c.mu.Unlock()
	select {
	case <-ready:
	case <-exited:
		t.Fatalf("server exited before it was ready: %v\n%s", cmd.ProcessState, c.log.String())
	case <-time.After(startTimeout):
		t.Fatalf("server not ready within %s\n%s", startTimeout, c.log.String())
	}
}

// Kill sends SIGKILL to the running process, without waiting; it is safe
// to call from any goroutine, and does nothing once the process has exited.
func (c *Child) Kill() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cmd == nil || c.cmd.Process == nil {
		return errors.New("not started")
	}
	select {
	case <-c.exited:
		return nil
	default:
	}
	return c.cmd.Process.Kill()
}

// WaitExit waits for the process to exit, failing the test after timeout.
func (c *Child) WaitExit(t testing.TB, timeout time.Duration) {
	t.Helper()
	select {
	case <-c.exitCh():
	case <-time.After(timeout):
		t.Fatalf("server still running after %s", timeout)
	}
}

// exitCh is closed when the current process has exited.
func (c *Child) exitCh() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.exited
}

// Restart starts the binary again, with the same flags, after it exited.
func (c *Child) Restart(t testing.TB) {
	t.Helper()
	select {
	case <-c.exitCh():
	default:
		t.Fatal("restart: the server is still running")
	}
	c.start(t)
}

// Log returns everything the server wrote, across restarts.
func (c *Child) Log() string { return c.log.String() }

// Token gets an access token with the administrator key.
func (c *Child) Token(t testing.TB) string {
	t.Helper()
	return token(t, c.URL, AdminKey, AdminSecret)
}

// readyLine is what the server logs once it serves (internal/deviceserver).
const readyLine = `msg="deviceserver ready"`

// childLog keeps the server's output and reports its ready line.
type childLog struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	partial []byte        // the current line so far
	ready   chan struct{} // closed at the next ready line; nil once closed
}

func (l *childLog) arm(ready chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ready = ready
	fmt.Fprintf(&l.buf, "--- start %s\n", time.Now().Format(time.RFC3339Nano))
}

func (l *childLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Write(p)
	l.partial = append(l.partial, p...)
	for {
		i := bytes.IndexByte(l.partial, '\n')
		if i < 0 {
			break
		}
		if l.ready != nil && bytes.Contains(l.partial[:i], []byte(readyLine)) {
			close(l.ready)
			l.ready = nil
		}
		l.partial = l.partial[i+1:]
	}
	return len(p), nil
}

func (l *childLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}
