package main

import (
	"bufio"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestMain lets a test run the vouch command itself as a separate process:
// the test binary re-executed with VOUCH_TEST_MAIN=1 is vouch's main.
func TestMain(m *testing.M) {
	if os.Getenv("VOUCH_TEST_MAIN") == "1" {
		main()
	}
	os.Exit(m.Run())
}

// vouchProcess is a running `vouch serve` in its own process.
type vouchProcess struct {
	cmd  *exec.Cmd
	done chan struct{}
	mu   sync.Mutex
	out  strings.Builder
}

func (p *vouchProcess) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// startServe runs `vouch serve args…` and waits for its banner. It is
// stopped with SIGTERM when the test ends (or by stop).
func startServe(t *testing.T, args ...string) *vouchProcess {
	t.Helper()
	cmd := exec.Command(os.Args[0], append([]string{"serve"}, args...)...)
	cmd.Env = append(os.Environ(), "VOUCH_TEST_MAIN=1")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &vouchProcess{cmd: cmd, done: make(chan struct{})}
	cmd.Stderr = writerFunc(func(b []byte) (int, error) {
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.out.Write(b)
	})
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "Press Ctrl-C to stop.") {
				close(ready)
			}
		}
	}()
	go func() { cmd.Wait(); close(p.done) }()
	select {
	case <-ready:
	case <-p.done:
		t.Fatalf("vouch serve %v exited:\n%s", args, p.output())
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("vouch serve %v did not start:\n%s", args, p.output())
	}
	t.Cleanup(p.stop)
	return p
}

func (p *vouchProcess) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }
