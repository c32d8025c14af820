package mock_test

import (
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/payonce/payonce/mock"
)

func TestServer(t *testing.T) {
	srv := mock.NewServer()
	defer srv.Close()
	u, err := url.Parse(srv.URL)
	require.NoError(t, err)
	assert.Equal(t, "127.0.0.1", u.Hostname())
	assert.False(t, strings.HasSuffix(srv.URL, "/"))

	res, err := srv.Client().Get(srv.URL + "/healthz")
	require.NoError(t, err)
	res.Body.Close()
	assert.Equal(t, http.StatusOK, res.StatusCode)
}

func TestNewServerPanicsOnBadOptions(t *testing.T) {
	assert.Panics(t, func() { mock.NewServer(mock.WithTTL(-1)) })
	assert.Panics(t, func() { mock.NewServer(nil) })
}

func TestUnstartedServer(t *testing.T) {
	srv := mock.NewUnstartedServer()
	assert.Empty(t, srv.URL)
	srv.Config.MaxHeaderBytes = 1 << 16
	srv.Start()
	defer srv.Close()
	res, err := srv.Client().Get(srv.URL + "/healthz")
	require.NoError(t, err)
	res.Body.Close()
	assert.Equal(t, http.StatusOK, res.StatusCode)
}

// Close ends held requests and waits for them.
func TestServerCloseEndsHolds(t *testing.T) {
	srv := mock.NewServer()
	holding := make(chan struct{})
	require.NoError(t, srv.InjectFault(mock.Fault{Kind: mock.DelayAfter, Release: make(chan struct{}), Holding: holding}))
	h := &harness{t: t, srv: srv, c: srv.Client()}
	done := make(chan *resp)
	go func() { done <- h.post("/v1/charges", "k", chargeBody(100)) }()
	recv(t, holding)
	srv.Close()
	r := recv(t, done)
	assert.Equal(t, http.StatusOK, r.Status, "the held response was sent before Close returned")
}

// Two servers in one process never meet.
func TestServersAreIsolated(t *testing.T) {
	a, b := setup(t), setup(t)
	chA := a.post("/v1/charges", "k", chargeBody(100)).charge(t)
	rB := b.post("/v1/charges", "k", chargeBody(200))
	assert.False(t, rB.replayed())
	assert.NotEqual(t, chA.ID, rB.charge(t).ID)
	require.NoError(t, a.srv.InjectFault(mock.Fault{Kind: mock.FailBefore}))
	assert.Equal(t, 200, b.get("/v1/charges").Status)
	a.srv.AdvanceClock(1000000)
	assert.Len(t, a.srv.Charges(), 1)
	assert.Len(t, b.srv.Charges(), 1)
}

// Charges lists every account's charges in creation order.
func TestChargesOrder(t *testing.T) {
	h := setup(t)
	var want []string
	for i := range 6 {
		apiKey := []string{keyA, keyB, "sk_test_carol"}[i%3]
		r := h.send(req{method: "POST", path: "/v1/charges", apiKey: apiKey, idemKey: h.key(), body: chargeBody(100 + i)})
		want = append(want, r.charge(t).ID)
	}
	var got []string
	for _, c := range h.srv.Charges() {
		got = append(got, c.ID)
	}
	assert.Equal(t, want, got)
}

// A Server bounds slow clients, but gives a delay fault all the time it
// may hold.
func TestServerTimeouts(t *testing.T) {
	srv := mock.NewUnstartedServer()
	c := srv.Config
	assert.Positive(t, c.ReadHeaderTimeout)
	assert.Positive(t, c.ReadTimeout)
	assert.Positive(t, c.IdleTimeout)
	assert.Greater(t, c.WriteTimeout, mock.MaxFaultDelay, "a hold of MaxFaultDelay still answers")

	// Small values, to watch them work.
	c.ReadHeaderTimeout, c.ReadTimeout = 100*time.Millisecond, 200*time.Millisecond
	srv.Start()
	defer srv.Close()

	// A slowloris client never finishes its headers: it is disconnected.
	conn, err := net.Dial("tcp", strings.TrimPrefix(srv.URL, "http://"))
	require.NoError(t, err)
	defer conn.Close()
	_, err = io.WriteString(conn, "GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
	require.NoError(t, err)
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(10*time.Second))) // only for a broken server
	began := time.Now()
	_, err = conn.Read(make([]byte, 1))
	require.Error(t, err)
	var ne net.Error
	assert.False(t, errors.As(err, &ne) && ne.Timeout(), "the server hung up, the client did not time out: %v", err)
	assert.Less(t, time.Since(began), 5*time.Second)

	// ReadTimeout covers the request, not a hold that outlasts it.
	require.NoError(t, srv.InjectFault(mock.Fault{Kind: mock.Delay, Delay: 500 * time.Millisecond}))
	h := &harness{t: t, srv: srv, c: srv.Client()}
	assert.Equal(t, http.StatusOK, h.post("/v1/charges", "k", chargeBody(100)).Status)
	assert.Equal(t, mock.Delay, srv.Requests()[0].Fault)
}
