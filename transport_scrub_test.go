package payonce

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// NewHTTPClient has no key of its own: the SDK's is in each request's
// Authorization header, and a hostile server that echoes it must not get it
// into the errors, the log or what a RetryPolicy sees.

func TestHTTPClientScrubsTheSDKsKey(t *testing.T) {
	responses := malformedResponses()
	bearer := "Bearer " + testAPIKey
	responses["5xx echoing the key"] = withBody("HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"+
		"Request-Id: "+bearer+"\r\n", `{"error":{"type":"api_error","message":"no `+bearer+`"}}`)
	responses["body read error"] = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n" +
		"2\r\n{}\r\n0\r\n" + bearer + "\r\n\r\n"
	auths := map[string]string{
		"bearer":     bearer,
		"basic":      "Basic " + base64.StdEncoding.EncodeToString([]byte(testAPIKey+":")),
		"bare token": testAPIKey,
	}
	for authName, auth := range auths {
		for name, raw := range responses {
			t.Run(authName+"/"+name, func(t *testing.T) {
				var lb logBuffer
				var mu sync.Mutex
				var seen []string
				policy := func(a *Attempt) (bool, string) {
					mu.Lock()
					if a.Err != nil {
						seen = append(seen, fmt.Sprintf("%v %+v", a.Err, a.Err))
					}
					if a.APIError != nil {
						seen = append(seen, fmt.Sprintf("%#v", *a.APIError))
					}
					mu.Unlock()
					retry, reason := DefaultRetryPolicy(a)
					if a.Err != nil {
						reason = "retrying after: " + a.Err.Error() // a policy that explains itself
					}
					return retry, reason
				}
				hc, err := NewHTTPClient(WithLogger(lb.logger()), WithRetryPolicy(policy), WithMaxRetries(1),
					WithBackoff(time.Millisecond, time.Millisecond), WithoutRetryBudget())
				require.NoError(t, err)
				url := hostileServer(t, raw)
				for _, method := range []string{http.MethodPost, http.MethodGet} {
					var body *strings.Reader
					if method == http.MethodPost {
						body = strings.NewReader("amount=100")
					} else {
						body = strings.NewReader("")
					}
					req, err := http.NewRequest(method, url+"/v1/charges", body)
					require.NoError(t, err)
					req.Header.Set("Authorization", auth)
					resp, err := hc.Do(req)
					if err != nil {
						assertErrNoKey(t, err)
						var unknown *OutcomeUnknownError
						if errors.As(err, &unknown) {
							assertErrNoKey(t, unknown)
							assert.NotEmpty(t, unknown.IdempotencyKey, "the generated key survives the scrub")
						}
						continue
					}
					resp.Body.Close() // a definite answer: the SDK reads the server's bytes as they are
				}
				assertNoKey(t, "log", lb.String())
				mu.Lock()
				defer mu.Unlock()
				for _, s := range seen {
					assertNoKey(t, "what the policy saw", s)
				}
			})
		}
	}
}

func TestHTTPClientScrubberIsPerAuthorization(t *testing.T) {
	hc, err := NewHTTPClient()
	require.NoError(t, err)
	e := hc.Transport.(*engine)
	a := e.scrubberFor("Bearer sk_test_first_key_1234")
	assert.Same(t, a, e.scrubberFor("Bearer sk_test_first_key_1234"), "built once per header value")
	b := e.scrubberFor("Bearer sk_live_other_key_5678")
	assert.NotSame(t, a, b)
	assert.Equal(t, "x "+redacted+" y", a.scrub("x sk_test_first_key_1234 y"))
	assert.Equal(t, "x sk_live_other_key_5678 y", a.scrub("x sk_live_other_key_5678 y"), "one key's scrubber spares another")
	assert.Equal(t, "x "+redacted+" y", b.scrub("x sk_live_other_key_5678 y"))
	assert.Nil(t, e.scrubberFor(""), "no header, nothing to redact")
	for i := range 3 * maxScrubbers {
		e.scrubberFor(fmt.Sprintf("Bearer rotating_token_%04d", i))
	}
	assert.LessOrEqual(t, len(e.scrubbers), maxScrubbers, "the cache is bounded")
}

func TestAuthScrubber(t *testing.T) {
	basic := base64.StdEncoding.EncodeToString([]byte("merchant_user:hunter2_longer"))
	sc := authScrubber("Basic " + basic)
	for _, s := range []string{basic, "merchant_user:hunter2_longer", "merchant_user", "hunter2_longer"} {
		assert.NotContains(t, sc.scrub("<"+s+">"), s)
	}
	short := authScrubber("Basic " + base64.StdEncoding.EncodeToString([]byte("sk_test_abcdefgh:x")))
	assert.Equal(t, "an x stays", short.scrub("an x stays"), "a one-byte password is not redacted alone")
	assert.Equal(t, "<"+redacted+">", short.scrub("<sk_test_abcdefgh>"))
	assert.Nil(t, authScrubber("  "))
}
