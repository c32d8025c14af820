package mock

import (
	"net/http"
	"net/http/httptest"
)

// Server is a [Gateway] listening on a loopback port, like an
// [httptest.Server]. Its Gateway's methods are promoted, so
// srv.InjectFault(…) and srv.Charges() work directly.
type Server struct {
	*Gateway
	// URL is the base URL of the server, such as http://127.0.0.1:43567,
	// with no trailing slash. It is empty until the server starts.
	URL string
	// Config may be changed after NewUnstartedServer and before Start.
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
	return &Server{Gateway: g, Config: ts.Config, ts: ts}
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
}
