package mock

import (
	"net/http"
	"net/http/httptest"
	"time"
)

// Server is a [Gateway] listening on a loopback port, like an
// [httptest.Server]. Its Gateway's methods are promoted, so
// srv.InjectFault(…) and srv.Charges() work directly.
type Server struct {
	*Gateway
	// URL is the base URL of the server, such as http://127.0.0.1:43567,
	// with no trailing slash. It is empty until the server starts.
	URL string
	// Config may be changed after NewUnstartedServer and before Start. It
	// comes with ReadHeaderTimeout 10 s, ReadTimeout 30 s (headers and
	// body), IdleTimeout 2 min, and WriteTimeout MaxFaultDelay plus a
	// minute, long enough for any Delay or DelayAfter fault's hold. A hold
	// on a Release channel that outlasts WriteTimeout sends its response
	// into a closed connection.
	Config *http.Server

	ts *httptest.Server
}

// NewServer starts and returns a gateway server configured by opts. The
// caller should call Close when finished, to shut it down.
//
// It panics if an option is invalid or no loopback port can be listened on:
// it is meant for tests, where that is a bug in the test.
func NewServer(opts ...Option) *Server {
	s := NewUnstartedServer(opts...)
	s.Start()
	return s
}

// NewUnstartedServer returns a gateway server that does not listen yet.
// Change its Config if needed, then call Start. It panics if an option is
// invalid.
func NewUnstartedServer(opts ...Option) *Server {
	g, err := New(opts...)
	if err != nil {
		panic(err)
	}
	ts := httptest.NewUnstartedServer(g)
	setTimeouts(ts.Config)
	return &Server{Gateway: g, Config: ts.Config, ts: ts}
}

// The timeouts of a Server's Config. ReadTimeout covers the headers and
// the body (at most 1 MiB), which the gateway reads before any hold, so it
// can be short. WriteTimeout runs from the end of the headers to the end of
// the response, so it must outlast the longest hold of a Delay or
// DelayAfter fault ([MaxFaultDelay]): net/http would fail the held
// response once it struck.
const (
	readHeaderTimeout = 10 * time.Second
	readTimeout       = 30 * time.Second
	writeTimeout      = MaxFaultDelay + time.Minute
	idleTimeout       = 2 * time.Minute
)

// setTimeouts bounds how long a client may take to send its headers, a
// request, and to come back on an idle connection, so that slow or stuck
// clients cannot hold connections open forever.
func setTimeouts(s *http.Server) {
	s.ReadHeaderTimeout = readHeaderTimeout
	s.ReadTimeout = readTimeout
	s.WriteTimeout = writeTimeout
	s.IdleTimeout = idleTimeout
}

// Start starts a server from NewUnstartedServer. It panics if the server
// has already started.
func (s *Server) Start() {
	s.ts.Start()
	s.URL = s.ts.URL
}

// Client returns an HTTP client configured for the server. Close closes its
// idle connections.
func (s *Server) Client() *http.Client {
	return s.ts.Client()
}

// Close ends every held Delay or DelayAfter fault, shuts the server down
// and waits for the requests in flight to finish.
func (s *Server) Close() {
	s.stopOnce.Do(func() { close(s.stop) })
	s.ts.Close()
	s.Gateway.Close()
}
