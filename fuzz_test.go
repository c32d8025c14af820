package payonce

import (
	"encoding/json"
	"net/http"
	"strconv"
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
	f.Add(503, []byte(`{"error":{"message":"`+testAPIKey[:20]+`"}}`), strings.Repeat("x", maxHeaderLen-16)+"Bearer "+testAPIKey)
	f.Add(302, []byte(nil), "req_r")
	f.Fuzz(func(t *testing.T, status int, body []byte, reqID string) {
		h := http.Header{"Request-Id": {reqID}, "Content-Type": {"application/json"}}
		e := newAPIError(status, h, body, false, nil, "order_1", newScrubber(testAPIKey))
		s := e.Error()
		if e.StatusCode != status {
			t.Fatalf("status %d, want %d", e.StatusCode, status)
		}
		if !utf8.ValidString(s) {
			t.Fatalf("invalid UTF-8: %q", s)
		}
		for i := 0; i+minKeyFragment <= len(testAPIKey); i++ {
			if strings.Contains(s, testAPIKey[i:i+minKeyFragment]) {
				t.Fatalf("%q of the API key leaked: %q", testAPIKey[i:i+minKeyFragment], s)
			}
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

// FuzzScrub checks the scrubber against a naive reference: every run of
// minKeyFragment or more bytes of the key (or of its quoted forms) is
// redacted, overlapping and adjacent runs under one marker, and nothing
// else changes; and clean, which clips after scrubbing, keeps that rule.
// Seeds: f.Add below and testdata/fuzz/FuzzScrub.
func FuzzScrub(f *testing.F) {
	f.Add(testAPIKey, "Bearer "+testAPIKey, 16)
	f.Add(testAPIKey, strings.Repeat("x", 112)+"Bearer "+testAPIKey, 128)
	f.Add(testAPIKey, testAPIKey[:20]+" and "+testAPIKey[5:], 10)
	f.Add("sk_test_abc", "no key here", 4)
	f.Add("k", "kkk", 1)
	f.Add(`sk_"q\uote`, `malformed "sk_\"q\\uote"`, 64)
	f.Add("aaaaaaaaaa", "aaaaaaaaaaaaaaaaaaaaaaaaa", 3)
	f.Fuzz(func(t *testing.T, key, s string, n int) {
		if key == "" || len(key) > 64 || len(s) > 512 || n < 1 || n > 256 {
			return
		}
		for i := 0; i < len(key); i++ {
			if key[i] < 0x21 || key[i] > 0x7e {
				return // NewClient refuses such keys
			}
		}
		sc := newScrubber(key)
		got := sc.scrub(s)
		if want := referenceScrub(key, s); got != want {
			t.Fatalf("scrub(%q) with key %q = %q, want %q", s, key, got, want)
		}
		if sc.contains(s) != (got != s) {
			t.Fatalf("contains(%q) = %v, but scrub gives %q", s, sc.contains(s), got)
		}
		c := sc.clean(s, n)
		if !utf8.ValidString(c) {
			t.Fatalf("clean gives invalid UTF-8: %q", c)
		}
		// What clean shows of the server's text holds no run of the key:
		// cut at the markers, no piece holds a fragment.
		k := min(minKeyFragment, len(key))
		for _, piece := range strings.Split(c, redacted) {
			for i := 0; i+k <= len(key); i++ {
				if strings.Contains(piece, key[i:i+k]) && !strings.Contains(redacted, key[i:i+k]) {
					t.Fatalf("clean(%q, %d) = %q holds %q of key %q", s, n, c, key[i:i+k], key)
				}
			}
		}
	})
}

// referenceScrub marks every byte of s inside a run of at least
// min(minKeyFragment, len(key)) bytes that occurs in a form of the key, the
// slow way, and replaces each maximal marked span by the marker.
func referenceScrub(key, s string) string {
	q := strconv.Quote(key)
	forms := []string{key, q[1 : len(q)-1]}
	if j, err := json.Marshal(key); err == nil {
		forms = append(forms, string(j[1:len(j)-1]))
	}
	k := min(minKeyFragment, len(key))
	marked := make([]bool, len(s))
	for i := range s {
		for j := i + k; j <= len(s); j++ {
			for _, f := range forms {
				if strings.Contains(f, s[i:j]) {
					for m := i; m < j; m++ {
						marked[m] = true
					}
				}
			}
		}
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if !marked[i] {
			b.WriteByte(s[i])
			continue
		}
		b.WriteString(redacted)
		for i+1 < len(s) && marked[i+1] {
			i++
		}
	}
	return b.String()
}
