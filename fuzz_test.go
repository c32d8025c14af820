package payonce

import (
	"net/http"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// FuzzErrorBody feeds arbitrary statuses, bodies and request ids to the
// error-body parser: it must never panic, never echo the API key, and keep
// its message bounded and valid UTF-8. Seeds: f.Add below and
// testdata/fuzz/FuzzErrorBody.
func FuzzErrorBody(f *testing.F) {
	f.Add(402, []byte(`{"error":{"type":"card_error","code":"card_declined","decline_code":"generic_decline","message":"Your card was declined."}}`), "req_1")
	f.Add(422, []byte(`{"error":{"type":"idempotency_error","code":"idempotency_key_reused"}}`), "req_2")
	f.Add(502, []byte("<html>Bad Gateway</html>"), "")
	f.Add(500, []byte(`{"error":`), "req_3")
	f.Add(401, []byte(`{"error":{"message":"`+testAPIKey+`"}}`), testAPIKey)
	f.Add(400, []byte(`{"error":null}`), "\xff\xfe")
	f.Fuzz(func(t *testing.T, status int, body []byte, reqID string) {
		h := http.Header{"Request-Id": {reqID}, "Content-Type": {"application/json"}}
		e := newAPIError(status, h, body, false, nil, "order_1", testAPIKey)
		s := e.Error()
		if e.StatusCode != status {
			t.Fatalf("status %d, want %d", e.StatusCode, status)
		}
		if !utf8.ValidString(s) {
			t.Fatalf("invalid UTF-8: %q", s)
		}
		if strings.Contains(s, testAPIKey) {
			t.Fatalf("the API key leaked: %q", s)
		}
		if len(s) > 2*maxMessageLen+8*maxHeaderLen {
			t.Fatalf("unbounded message: %d bytes", len(s))
		}
		for _, target := range sentinels {
			_ = e.Is(target)
		}
	})
}

// FuzzRetryAfter checks that no Retry-After value can make the client wait
// a negative time or longer than its cap.
func FuzzRetryAfter(f *testing.F) {
	for _, s := range []string{"0", "1", "120", "-1", "1.5", "", " 7 ", "99999999999999999999",
		"Wed, 21 Oct 2015 07:28:00 GMT", "Sunday, 06-Nov-94 08:49:37 GMT", "Sun Nov  6 08:49:37 1994",
		"Fri, 31 Dec 9999 23:59:59 GMT"} {
		f.Add(s)
	}
	c, err := NewClient(testAPIKey, WithBaseURL("https://gw.test"), WithMaxRetryAfter(10*time.Second))
	if err != nil {
		f.Fatal(err)
	}
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, v string) {
		d, ok := ParseRetryAfter(v, now)
		if d < 0 || (!ok && d != 0) {
			t.Fatalf("ParseRetryAfter(%q) = %v, %v", v, d, ok)
		}
		w := c.retryWait(0, http.Header{"Retry-After": {v}}, now)
		if w < 0 || w > 10*time.Second {
			t.Fatalf("wait %v for %q", w, v)
		}
	})
}
