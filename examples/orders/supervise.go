package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// readyTimeout bounds how long a child may take to say it listens: only a
// broken setup takes that long.
const readyTimeout = time.Minute

// child is a process started by startChild.
type child struct {
	cmd    *exec.Cmd
	url    string        // from its listening line
	exited chan struct{} // closed once it has exited and its output is read
	err    error         // cmd.Wait's, once exited is closed
	tail   *tailWriter   // its last lines of output
}

// startChild starts bin with args and waits until it prints a line that
// begins with marker, on stderr if markerOnStderr and on stdout otherwise:
// the rest of that line is the child's URL. Every line of both streams goes
// to log, and each line after the marker's on the marker's stream to
// onLine too, if it is not nil, from a goroutine of its own.
//
// The child is killed if this process dies (where the platform can do
// that; see setParentDeath), so that a test that times out leaves no
// child behind.
func startChild(bin string, args []string, marker string, markerOnStderr bool, log io.Writer,
	onLine func(string)) (*child, error) {
	cmd := exec.Command(bin, args...)
	setParentDeath(cmd)
	watchR, watchW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	otherR, otherW, err := os.Pipe()
	if err != nil {
		watchR.Close()
		watchW.Close()
		return nil, err
	}
	if markerOnStderr {
		cmd.Stdout, cmd.Stderr = otherW, watchW
	} else {
		cmd.Stdout, cmd.Stderr = watchW, otherW
	}
	err = cmd.Start()
	watchW.Close() // the child has its own copies
	otherW.Close()
	if err != nil {
		watchR.Close()
		otherR.Close()
		return nil, err
	}

	c := &child{cmd: cmd, exited: make(chan struct{}), tail: &tailWriter{max: 5}}
	lw := &lockedWriter{w: io.MultiWriter(log, c.tail)}
	ready := make(chan string, 1)
	var read sync.WaitGroup
	read.Add(2)
	go func() {
		defer read.Done()
		defer watchR.Close()
		sc := bufio.NewScanner(watchR)
		found := false
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(lw, line)
			switch {
			case !found:
				if url, ok := strings.CutPrefix(line, marker); ok {
					found = true
					ready <- url
				}
			case onLine != nil:
				onLine(line)
			}
		}
		io.Copy(io.Discard, watchR) // a line too long for the scanner
	}()
	go func() {
		defer read.Done()
		defer otherR.Close()
		io.Copy(lw, otherR)
	}()
	go func() {
		read.Wait()
		c.err = cmd.Wait()
		close(c.exited)
	}()

	timer := time.NewTimer(readyTimeout)
	defer timer.Stop()
	select {
	case c.url = <-ready:
		return c, nil
	case <-c.exited:
		return nil, fmt.Errorf("%s exited before it listened (%v), saying:\n%s", bin, c.err, c.tail)
	case <-timer.C:
		c.kill()
		return nil, fmt.Errorf("%s did not listen within %v", bin, readyTimeout)
	}
}

// kill kills the child (SIGKILL on Unix) and waits until it has exited.
func (c *child) kill() {
	c.cmd.Process.Kill()
	<-c.exited
}

// stop asks the child to shut down, kills it if it has not within
// timeout, and waits until it has exited.
func (c *child) stop(timeout time.Duration) {
	if err := c.cmd.Process.Signal(os.Interrupt); err != nil {
		c.kill() // Windows cannot send an interrupt
		return
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-c.exited:
	case <-timer.C:
		c.kill()
	}
}

// lockedWriter serialises the writes of several goroutines to w.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// tailWriter keeps the last max lines written to it. The writes must be
// serialised.
type tailWriter struct {
	max   int
	lines []string
	part  string // the unfinished last line
}

func (t *tailWriter) Write(p []byte) (int, error) {
	for line := range strings.Lines(t.part + string(p)) {
		if !strings.HasSuffix(line, "\n") {
			t.part = line
			return len(p), nil
		}
		t.lines = append(t.lines, line)
		if len(t.lines) > t.max {
			t.lines = t.lines[1:]
		}
	}
	t.part = ""
	return len(p), nil
}

// String returns the lines kept; it must not run during a write.
func (t *tailWriter) String() string { return strings.Join(t.lines, "") + t.part }

// kill is a kill the supervisor made.
type kill struct {
	point string // the crash point
	key   string // the Idempotency-Key of the request that reached it
}

// supervisor keeps the order service running: it starts `orders serve`,
// kills it (SIGKILL) when a request reaches the crash point it was given,
// and starts it again, on a new port, with the next crash point, until its
// context ends.
type supervisor struct {
	bin  string           // the orders binary
	args []string         // the arguments of `orders serve`, but -addr and -crash
	log  io.Writer        // the service's stdout and stderr
	next func() crashSpec // the crash point of the next start; the zero spec for none

	url     atomic.Pointer[string] // the service's URL now
	ready   chan struct{}          // closed once the service first listens
	stopped chan struct{}          // closed once run has returned
	err     error                  // run's, once stopped is closed
	kills   atomic.Int64

	mu       sync.Mutex
	killList []kill
}

func newSupervisor(bin string, args []string, log io.Writer, next func() crashSpec) *supervisor {
	return &supervisor{bin: bin, args: args, log: log, next: next, ready: make(chan struct{}), stopped: make(chan struct{})}
}

// errNotRunning is the error of [supervisor.URL] once the supervisor has
// stopped, on purpose or not.
var errNotRunning = errors.New("the order service is not running")

// URL returns the service's URL, waiting until it first listens or ctx
// ends. Once run has returned, the error wraps errNotRunning.
func (s *supervisor) URL(ctx context.Context) (string, error) {
	select {
	case <-s.stopped:
		return "", s.notRunning()
	default:
	}
	select {
	case <-s.ready:
		return *s.url.Load(), nil
	case <-s.stopped:
		return "", s.notRunning()
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

func (s *supervisor) notRunning() error {
	if s.err != nil {
		return fmt.Errorf("%w: %v", errNotRunning, s.err)
	}
	return errNotRunning
}

// Kills returns the kills made so far.
func (s *supervisor) Kills() []kill {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]kill(nil), s.killList...)
}

// run supervises the service until ctx ends, then stops it. It returns
// an error if the service fails to start, or exits when it was not killed.
// It must be called once.
func (s *supervisor) run(ctx context.Context) error {
	s.err = s.supervise(ctx)
	close(s.stopped)
	return s.err
}

func (s *supervisor) supervise(ctx context.Context) error {
	first := true
	for {
		spec := s.next()
		args := append([]string{"serve", "-addr", "127.0.0.1:0"}, s.args...)
		if spec.point != "" {
			args = append(args, "-crash", spec.String())
		}
		crashed := make(chan kill, 1)
		c, err := startChild(s.bin, args, listeningMarker, false, s.log, func(line string) {
			if point, key, ok := parseCrashLine(line); ok {
				crashed <- kill{point: point, key: key} // at most one per start
			}
		})
		if err != nil {
			return err
		}
		s.url.Store(&c.url)
		if first {
			close(s.ready)
			first = false
		}
		select {
		case k := <-crashed:
			c.kill()
			s.mu.Lock()
			s.killList = append(s.killList, k)
			s.mu.Unlock()
			s.kills.Add(1)
			fmt.Fprintf(s.log, "orders: killed at %s (%s); restarting\n", k.point, k.key)
		case <-c.exited:
			return fmt.Errorf("the service exited unasked: %v", c.err)
		case <-ctx.Done():
			c.stop(5 * time.Second)
			return nil
		}
	}
}
