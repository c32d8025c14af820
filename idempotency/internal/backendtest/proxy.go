package backendtest

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
)

// Proxy forwards TCP connections to a server, and can fail in two ways
// until [Proxy.Restore]:
//   - [Proxy.Cut] resets (TCP RST) every connection it carries and every new
//     one it accepts, as a crashed server, a failover or a middlebox dropping
//     state looks to the client: each read or write fails at once, with no
//     orderly end of stream;
//   - [Proxy.Blackhole] keeps every connection open but forwards nothing, as
//     a network partition does: packets vanish, nothing is refused or reset,
//     and a client only finds out by its own deadlines.
type Proxy struct {
	target string
	ln     net.Listener

	loseReply atomic.Bool

	mu     sync.Mutex
	cut    bool
	healed chan struct{} // while black-holed, closed when that ends; nil otherwise
	conns  map[net.Conn]struct{}
	wg     sync.WaitGroup
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
// until [Proxy.Restore]. It ends a black hole.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = true
	p.resetLocked()
	p.healLocked()
}

// Blackhole stops forwarding, both ways, on every connection the proxy
// carries, and accepts new connections without forwarding anything on them
// either (the server never hears of them), until [Proxy.Restore] or
// [Proxy.Cut]. A client's writes succeed until its socket's buffers fill,
// and its reads wait: a call ends only by its own deadline.
//
// A short partition need not kill a TCP connection, but the connections a
// client gave up on have requests of theirs half sent or half answered, and
// in production a partition often comes with a failover or a middlebox
// that lost its state: so Restore resets every connection that was open
// during the black hole, and clients reconnect. What the black hole held
// back is never delivered.
func (p *Proxy) Blackhole() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = false
	if p.healed == nil {
		p.healed = make(chan struct{})
	}
}

// resetLocked resets every connection, on both sides.
func (p *Proxy) resetLocked() {
	// Every connection lingers zero first: closing one side ends its
	// pipe, which closes the other side at once, and that must reset too.
	for c := range p.conns {
		noLinger(c)
	}
	for c := range p.conns {
		c.Close()
	}
}

// healLocked ends a black hole, if one is in force: what waits on it wakes
// up to connections already reset.
func (p *Proxy) healLocked() {
	if p.healed != nil {
		close(p.healed)
		p.healed = nil
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

// Restore lets connections through again. After a black hole, it first
// resets every connection open during it (see [Proxy.Blackhole]).
func (p *Proxy) Restore() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = false
	if p.healed != nil {
		p.resetLocked()
		p.healLocked()
	}
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

// blackhole returns the channel that closes when the black hole in force
// ends, or nil if there is none.
func (p *Proxy) blackhole() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.healed
}

func (p *Proxy) pipe(client net.Conn) {
	if !p.track(client) {
		return
	}
	defer p.untrack(client)
	if healed := p.blackhole(); healed != nil {
		<-healed // which reset client
		return
	}
	server, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	if !p.track(server) {
		return
	}
	defer p.untrack(server)
	done := make(chan struct{}, 2)
	forwardAndClose := func(dst, src net.Conn) {
		p.forward(dst, src) // either side closing or failing ends both
		dst.Close()
		src.Close()
		done <- struct{}{}
	}
	go forwardAndClose(server, client)
	go forwardAndClose(client, replies{server, p})
	<-done
	<-done
}

// forward copies src to dst until either fails, or until a black hole
// ends: it holds back what it read during one, and reads no further, so
// that the sender's buffers fill as they would behind a partition.
func (p *Proxy) forward(dst io.Writer, src io.Reader) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if healed := p.blackhole(); healed != nil {
				<-healed // which reset both sides: drop buf
				return
			}
			if _, err := dst.Write(buf[:n]); err != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
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
		return 0, io.ErrClosedPipe // forwardAndClose closes both sides
	}
	return n, err
}
