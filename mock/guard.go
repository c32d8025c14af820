package mock

import (
	"crypto/sha256"
	"crypto/subtle"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strings"
)

// The guard keeps a web page the tester visits from driving the control
// surface. A page can send a cross-origin POST without a CORS preflight
// only as a "simple" request (a form, or fetch with text/plain), and can
// read answers only through DNS rebinding, where its own name points at
// 127.0.0.1 and the Host header still carries that name. Nor may anyone
// who holds only an API key drive it through a webhook endpoint that
// points at it: the delivery client's request is a loopback POST of JSON.
// So every control request, /healthz included, is refused with 403
// webhook_delivery_refused if it carries the marker every delivery carries
// (Payonce-Mock-Delivery) or a Stripe-Signature, and every control request
// except GET /healthz then passes, in this order:
//
//   - a browser's cross-origin request of a method other than GET, HEAD
//     and OPTIONS is refused (see crossOrigin): 403 cross_origin_refused;
//   - with a control token ([WithControlToken]), the request must carry it
//     as Authorization: Bearer <token>: 401 control_token_invalid otherwise;
//     without one, the Host must be loopback: localhost, 127.0.0.1 (any
//     127.x.y.z) or [::1], with any port: 403 host_not_allowed otherwise;
//   - a request with a body, or with a Content-Type, must say
//     application/json: 415 unsupported_media_type otherwise, so no form or
//     text/plain fetch is ever read.

// checkControl applies the guard to a control request, and writes the
// refusal if there is one.
func (g *Gateway) checkControl(w http.ResponseWriter, r *http.Request) bool {
	if isDelivery(r) {
		writeError(w, &apiError{Status: http.StatusForbidden, Type: invalidRequest, Code: "webhook_delivery_refused",
			Message: "the control surface refuses webhook deliveries (" + deliveryMarker + ", Stripe-Signature)"})
		return false
	}
	if r.URL.Path == "/healthz" {
		return true
	}
	if crossOrigin(r) {
		writeError(w, &apiError{Status: http.StatusForbidden, Type: invalidRequest, Code: "cross_origin_refused",
			Message: "the control surface refuses cross-origin requests from a browser"})
		return false
	}
	if g.cfg.controlToken != nil {
		if !g.controlTokenMatches(r) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="payonce-mock control"`)
			writeError(w, &apiError{Status: http.StatusUnauthorized, Type: authError, Code: "control_token_invalid",
				Message: "the control surface needs Authorization: Bearer <control token>"})
			return false
		}
	} else if !loopbackHost(r.Host) {
		writeError(w, &apiError{Status: http.StatusForbidden, Type: invalidRequest, Code: "host_not_allowed",
			Message: "the control surface answers only a loopback Host (localhost, 127.0.0.1, [::1]) unless the mock has a control token"})
		return false
	}
	if !jsonOrNoBody(r) {
		writeError(w, &apiError{Status: http.StatusUnsupportedMediaType, Type: invalidRequest, Code: "unsupported_media_type",
			Message: "a control request with a body must have Content-Type: application/json"})
		return false
	}
	return true
}

// deliveryMarker is the header every webhook delivery carries, so that the
// control surface knows and refuses one, wherever it came from.
const deliveryMarker = "Payonce-Mock-Delivery"

// isDelivery reports whether r is, or looks like, a webhook delivery: it
// carries the mock's marker, or a Stripe signature.
func isDelivery(r *http.Request) bool {
	return len(r.Header[deliveryMarker]) > 0 || len(r.Header["Stripe-Signature"]) > 0
}

// crossOrigin reports whether r is a browser's cross-origin request of a
// method that is not safe, as net/http's CrossOriginProtection (Go 1.25)
// decides: by Sec-Fetch-Site if the browser sent it, else by an Origin
// whose host is not the Host. A request with neither comes from no browser,
// or from one so old that the other rules must hold alone.
func crossOrigin(r *http.Request) bool {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return false
	}
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" {
		return site != "same-origin" && site != "none"
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		return false
	}
	u, err := url.Parse(origin)
	return err != nil || !strings.EqualFold(u.Host, r.Host)
}

// controlTokenMatches reports whether r carries the control token. The
// digests are compared in constant time, so neither the token's bytes nor
// its length leak through timing.
func (g *Gateway) controlTokenMatches(r *http.Request) bool {
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	sum := sha256.Sum256([]byte(got))
	match := subtle.ConstantTimeCompare(sum[:], g.cfg.controlToken[:]) == 1
	return ok && match
}

// loopbackHost reports whether host, a Host header, names a loopback
// address: localhost, an IPv4 address in 127.0.0.0/8 or [::1], with or
// without a port. A name that merely resolves to one, as in DNS rebinding,
// is not.
func loopbackHost(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	} else {
		host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	}
	if strings.EqualFold(strings.TrimSuffix(host, "."), "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// jsonOrNoBody reports whether r's Content-Type is application/json, or r
// has neither a body nor a Content-Type.
func jsonOrNoBody(r *http.Request) bool {
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		return r.ContentLength == 0
	}
	mt, _, err := mime.ParseMediaType(ct)
	return err == nil && mt == "application/json"
}
