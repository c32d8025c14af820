package backendtest

import (
	"bufio"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// echo starts a server that answers every line with the same line, and
// returns its address.
func echo(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(c, c)
			}()
		}
	}()
	return ln.Addr().String()
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
