package backendtest

import (
	"bufio"
	"io"
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// echo starts a server that answers every line with the same line, and
// returns its address.
func echo(t *testing.T) string {
	addr, _ := countingEcho(t)
	return addr
}

// countingEcho is echo, and also returns what the server has heard: how
// many connections, and how many bytes over all of them.
func countingEcho(t *testing.T) (addr string, heard *echoCounts) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	heard = &echoCounts{}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			heard.conns.Add(1)
			go func() {
				defer c.Close()
				io.Copy(c, io.TeeReader(c, heard))
			}()
		}
	}()
	return ln.Addr().String(), heard
}

// echoCounts is what an echo server has heard.
type echoCounts struct{ conns, bytes atomic.Int64 }

func (h *echoCounts) Write(p []byte) (int, error) {
	h.bytes.Add(int64(len(p)))
	return len(p), nil
}

// dial connects to addr and checks that a line goes there and back.
func dial(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	r := bufio.NewReader(c)
	roundTrip(t, c, r)
	return c, r
}

func roundTrip(t *testing.T, c net.Conn, r *bufio.Reader) {
	t.Helper()
	_, err := io.WriteString(c, "ping\n")
	require.NoError(t, err)
	require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
	line, err := r.ReadString('\n')
	require.NoError(t, err)
	assert.Equal(t, "ping\n", line)
}

// TestProxyCutResets: a cut resets the connections it carries and every
// new one, so that a client sees ECONNRESET, not an orderly end of stream;
// a restored proxy carries new connections again.
func TestProxyCutResets(t *testing.T) {
	p := NewProxy(t, echo(t))
	c, r := dial(t, p.Addr())

	p.Cut()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
	_, err := r.ReadByte()
	assert.ErrorIs(t, err, syscall.ECONNRESET, "a carried connection is reset")

	// The reset of a new connection may come before the dial returns.
	c2, err := net.Dial("tcp", p.Addr())
	if err == nil {
		defer c2.Close()
		require.NoError(t, c2.SetReadDeadline(time.Now().Add(5*time.Second)))
		_, err = c2.Read(make([]byte, 1))
	}
	assert.ErrorIs(t, err, syscall.ECONNRESET, "a new connection is reset")

	p.Restore()
	dial(t, p.Addr())
}

// TestProxyLoseNextReply: the next answer is swallowed and its connection
// ended; the next connection works.
func TestProxyLoseNextReply(t *testing.T) {
	p := NewProxy(t, echo(t))
	c, r := dial(t, p.Addr())
	p.LoseNextReply()
	_, err := io.WriteString(c, "lost\n")
	require.NoError(t, err)
	require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
	_, err = r.ReadString('\n')
	assert.Error(t, err, "the answer never comes")
	dial(t, p.Addr())
}

// TestProxyBlackhole: while black-holed, a carried connection stays open
// but nothing goes through it, either way, and a new one is accepted but
// never reaches the server: reads only end by their deadline. Restore
// resets both, and new connections work again.
func TestProxyBlackhole(t *testing.T) {
	addr, heard := countingEcho(t)
	p := NewProxy(t, addr)
	c, r := dial(t, p.Addr())
	require.Equal(t, int64(len("ping\n")), heard.bytes.Load(), "the server heard the ping before echoing it")

	p.Blackhole()
	_, err := io.WriteString(c, "lost\n")
	require.NoError(t, err, "a write succeeds: the bytes wait in the buffers")
	start := time.Now()
	require.NoError(t, c.SetReadDeadline(start.Add(300*time.Millisecond)))
	_, err = r.ReadByte()
	assert.ErrorIs(t, err, os.ErrDeadlineExceeded, "a read on a carried connection waits until its deadline")
	assert.GreaterOrEqual(t, time.Since(start), 300*time.Millisecond)

	c2, err := net.Dial("tcp", p.Addr())
	require.NoError(t, err, "a new connection is accepted")
	defer c2.Close()
	_, err = io.WriteString(c2, "lost too\n")
	require.NoError(t, err)
	require.NoError(t, c2.SetReadDeadline(time.Now().Add(300*time.Millisecond)))
	_, err = c2.Read(make([]byte, 1))
	assert.ErrorIs(t, err, os.ErrDeadlineExceeded, "a read on a new connection waits until its deadline")
	assert.Equal(t, int64(1), heard.conns.Load(), "the new connection never reached the server")
	assert.Equal(t, int64(len("ping\n")), heard.bytes.Load(), "nothing written during the black hole reached the server")

	p.Restore()
	for name, c := range map[string]net.Conn{"carried": c, "new": c2} {
		require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
		_, err := c.Read(make([]byte, 1))
		assert.ErrorIs(t, err, syscall.ECONNRESET, "the %s connection is reset on Restore", name)
	}
	assert.Equal(t, int64(len("ping\n")), heard.bytes.Load(), "what the black hole held back is never delivered")
	dial(t, p.Addr())
}
