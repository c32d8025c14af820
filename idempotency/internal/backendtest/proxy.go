package backendtest

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
)

// Proxy forwards TCP connections to a server, and can cut it off: while
// cut, it resets (TCP RST) every connection it carries and every new one it
// accepts, as a crashed server, a failover or a middlebox dropping state
// looks to the client: each read or write fails at once, with no orderly
// end of stream.
type Proxy struct {
	target string
	ln     net.Listener

	loseReply atomic.Bool

	mu    sync.Mutex
	cut   bool
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

// NewProxy starts a proxy on 127.0.0.1 to target (host:port), and closes it
// when the test ends.
func NewProxy(tb testing.TB, target string) *Proxy {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("proxy: %v", err)
	}
	p := &Proxy{target: target, ln: ln, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	tb.Cleanup(p.close)
	return p
}

// Addr returns the proxy's host:port.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Cut resets every connection, on both sides, and resets every new one
// until [Proxy.Restore].
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = true
	// Every connection lingers zero first: closing one side ends its
	// pipe, which closes the other side at once, and that must reset too.
	for c := range p.conns {
		noLinger(c)
	}
	for c := range p.conns {
		c.Close()
	}
}

// noLinger makes closing c reset it (TCP RST) instead of ending it in
// order (FIN): the kernel drops what is unsent.
func noLinger(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
}

// LoseNextReply makes the proxy swallow the next bytes that the server
// sends on any connection, and close that connection, as a network that
// fails after the server ran a command but before its answer arrived. The
// client then cannot know whether its command ran.
func (p *Proxy) LoseNextReply() { p.loseReply.Store(true) }

// Restore lets connections through again.
func (p *Proxy) Restore() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = false
}

func (p *Proxy) close() {
	p.ln.Close()
	p.Cut()
	p.wg.Wait()
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return // closed
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.pipe(client)
		}()
	}
}

// track registers c, or resets it and reports false if the proxy is cut.
func (p *Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cut {
		noLinger(c)
		c.Close()
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *Proxy) untrack(c net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.conns, c)
	c.Close()
}

func (p *Proxy) pipe(client net.Conn) {
	if !p.track(client) {
		return
	}
	defer p.untrack(client)
	server, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	if !p.track(server) {
		return
	}
	defer p.untrack(server)
	done := make(chan struct{}, 2)
	copyAndClose := func(dst, src net.Conn) {
		io.Copy(dst, src) // either side closing or failing ends both
		dst.Close()
		src.Close()
		done <- struct{}{}
	}
	go copyAndClose(server, client)
	go copyAndClose(client, replies{server, p})
	<-done
	<-done
}

// replies reads what the server answers, and ends the connection instead of
// passing the answer on when the proxy was told to lose it.
type replies struct {
	net.Conn
	p *Proxy
}

func (r replies) Read(b []byte) (int, error) {
	n, err := r.Conn.Read(b)
	if n > 0 && r.p.loseReply.CompareAndSwap(true, false) {
		return 0, io.ErrClosedPipe // copyAndClose closes both sides
	}
	return n, err
}
