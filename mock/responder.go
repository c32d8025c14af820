package mock

import (
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/jarcoal/httpmock"
)

// Responder returns the gateway as a responder for
// github.com/jarcoal/httpmock, for suites that already mock their HTTP
// transport with it:
//
//	httpmock.RegisterResponder("POST", "=~^https://api\\.example\\.com/", gw.Responder())
//
// Register it for every method and path the code under test calls. Requests
// reach the gateway as if sent to it directly, faults and chaos included. A
// dropped connection (DropBefore, DropAfter) becomes an error wrapping
// [io.ErrUnexpectedEOF], which http.Client wraps in a *url.Error, as it
// would a connection closed mid-request. The control surface's rules hold
// here too: without [WithControlToken], a control request through the
// responder needs a loopback URL, such as http://localhost/_mock/reset.
func (g *Gateway) Responder() httpmock.Responder {
	return func(req *http.Request) (resp *http.Response, err error) {
		// The request was made for a client: make it look as a server sees it.
		sreq := req.Clone(req.Context())
		if sreq.Body == nil {
			sreq.Body = http.NoBody
		}
		sreq.RequestURI = req.URL.RequestURI()
		rec := newRecorder()
		defer func() {
			if p := recover(); p != nil {
				if e, ok := p.(error); !ok || !errors.Is(e, http.ErrAbortHandler) {
					panic(p)
				}
				resp, err = nil, fmt.Errorf("mock: connection dropped by an injected fault: %w", io.ErrUnexpectedEOF)
			}
		}()
		g.ServeHTTP(rec, sreq)
		return rec.response(req), nil
	}
}
