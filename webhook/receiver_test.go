package webhook_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/payonce/payonce/idempotency"
	"github.com/payonce/payonce/webhook"
)

// countingStore is a MemoryStore that counts the claims made in it: a
// delivery that never claims is one the store never heard of.
type countingStore struct {
	*idempotency.MemoryStore
	claims atomic.Int64
}

func newCountingStore() *countingStore {
	return &countingStore{MemoryStore: idempotency.NewMemoryStore()}
}

func (s *countingStore) Claim(ctx context.Context, c idempotency.Claim) (idempotency.Result, error) {
	s.claims.Add(1)
	return s.MemoryStore.Claim(ctx, c)
}

// shipper is a handler with a side effect to count: it ships an order per
// call, and answers which.
type shipper struct {
	mu      sync.Mutex
	shipped []webhook.Delivery
	bodies  []string
}

func (s *shipper) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	d, _ := webhook.DeliveryFrom(r.Context())
	s.mu.Lock()
	s.shipped = append(s.shipped, d)
	s.bodies = append(s.bodies, string(body))
	n := len(s.shipped)
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"shipment":"shp_%d"}`, n)
}

func (s *shipper) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.shipped)
}

// observed collects the middleware's events.
type observed struct {
	mu     sync.Mutex
	events []idempotency.Event
}

func (o *observed) observe(_ *http.Request, ev idempotency.Event) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.events = append(o.events, ev)
}

func (o *observed) outcomes() []idempotency.Outcome {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []idempotency.Outcome
	for _, ev := range o.events {
		out = append(out, ev.Outcome)
	}
	return out
}

func newStripeReceiver(t *testing.T, store idempotency.Store, next http.Handler, opts ...webhook.ReceiverOption) *webhook.Receiver {
	t.Helper()
	rc, err := webhook.NewReceiver(stripeVerifier(t, []string{stripeSecret}), store, next, opts...)
	require.NoError(t, err)
	return rc
}

// stripeDelivery is a delivery of payload signed with secret at t, to
// /webhooks/stripe.
func stripeDelivery(t *testing.T, payload string, at time.Time, secret string) *http.Request {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, "/webhooks/stripe", strings.NewReader(payload))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(webhook.HeaderStripeSignature, signStripe(t, payload, at, secret))
	return req
}

func serve(h http.Handler, req *http.Request) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w
}

func errorCode(t *testing.T, w *httptest.ResponseRecorder) string {
	t.Helper()
	var body struct {
		Error struct{ Type, Code, Message string }
	}
	require.NoError(t, json.Unmarshal(w.Body.Bytes(), &body), w.Body.String())
	assert.Equal(t, "application/json", w.Header().Get("Content-Type"))
	return body.Error.Code
}

func TestReceiverProcessesOnceAndReplays(t *testing.T) {
	store, ship, obs := newCountingStore(), &shipper{}, &observed{}
	rc := newStripeReceiver(t, store, ship, webhook.WithIdempotencyOptions(idempotency.WithObserver(obs.observe)))

	first := serve(rc, stripeDelivery(t, stripePayload, epoch, stripeSecret))
	require.Equal(t, http.StatusOK, first.Code, first.Body.String())
	assert.Equal(t, `{"shipment":"shp_1"}`, first.Body.String())
	assert.Empty(t, first.Header().Get("Idempotent-Replayed"))

	// The sender signs its retry anew, a minute later; the body is the same.
	again := serve(rc, stripeDelivery(t, stripePayload, epoch.Add(time.Minute), stripeSecret))
	require.Equal(t, http.StatusOK, again.Code)
	assert.Equal(t, first.Body.String(), again.Body.String())
	assert.Equal(t, "true", again.Header().Get("Idempotent-Replayed"))

	assert.Equal(t, 1, ship.count())
	assert.Equal(t, []idempotency.Outcome{idempotency.Executed, idempotency.Replayed}, obs.outcomes())
	assert.Equal(t, "evt_1", obs.events[0].Key)
	assert.Equal(t, "webhook:stripe:/webhooks/stripe", obs.events[0].Scope)

	// Another event is another operation.
	other := serve(rc, stripeDelivery(t, `{"id":"evt_2","object":"event"}`, epoch, stripeSecret))
	require.Equal(t, http.StatusOK, other.Code)
	assert.Equal(t, `{"shipment":"shp_2"}`, other.Body.String())
}

// The handler gets the verified delivery in its context and the body as it
// came, white space and all.
func TestReceiverPassesDeliveryAndBody(t *testing.T) {
	ship := &shipper{}
	rc := newStripeReceiver(t, newCountingStore(), ship)
	payload := "{ \"object\" : \"event\",\n  \"id\" : \"evt_ws\" }\n"
	w := serve(rc, stripeDelivery(t, payload, epoch, stripeSecret))
	require.Equal(t, http.StatusOK, w.Code, w.Body.String())
	require.Equal(t, 1, ship.count())
	assert.Equal(t, webhook.Delivery{Scheme: webhook.Stripe, ID: "evt_ws", Timestamp: epoch}, ship.shipped[0])
	assert.Equal(t, payload, ship.bodies[0])

	_, ok := webhook.DeliveryFrom(context.Background())
	assert.False(t, ok)
}

// Forged, stale and unsigned deliveries are refused before anything is
// claimed, so the real delivery that follows is processed.
func TestReceiverRefusesForgeriesWithoutClaiming(t *testing.T) {
	forged := `{"id":"evt_1","object":"event","type":"payout.paid"}`
	tests := []struct {
		name string
		req  func() *http.Request
		code string
	}{
		{"wrong secret", func() *http.Request { return stripeDelivery(t, forged, epoch, "whsec_forger") }, "webhook_signature_mismatch"},
		{"real signature, forged body", func() *http.Request {
			req := stripeDelivery(t, stripePayload, epoch, stripeSecret)
			req.Body = io.NopCloser(strings.NewReader(forged))
			req.ContentLength = int64(len(forged))
			return req
		}, "webhook_signature_mismatch"},
		{"real delivery, replayed late", func() *http.Request {
			return stripeDelivery(t, stripePayload, epoch.Add(-time.Hour), stripeSecret)
		}, "webhook_timestamp_too_old"},
		{"signed in the future", func() *http.Request {
			return stripeDelivery(t, stripePayload, epoch.Add(time.Hour), stripeSecret)
		}, "webhook_timestamp_too_new"},
		{"unsigned", func() *http.Request {
			req := stripeDelivery(t, forged, epoch, stripeSecret)
			req.Header.Del(webhook.HeaderStripeSignature)
			return req
		}, "webhook_signature_missing"},
		{"malformed", func() *http.Request {
			req := stripeDelivery(t, forged, epoch, stripeSecret)
			req.Header.Set(webhook.HeaderStripeSignature, "v1=00")
			return req
		}, "webhook_signature_malformed"},
		{"signed, without an id", func() *http.Request {
			return stripeDelivery(t, `{"object":"event"}`, epoch, stripeSecret)
		}, "webhook_id_missing"},
		{"signed, not JSON", func() *http.Request { return stripeDelivery(t, `evt_1`, epoch, stripeSecret) }, "webhook_payload_invalid"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			store, ship := newCountingStore(), &shipper{}
			var refused []error
			rc := newStripeReceiver(t, store, ship, webhook.WithRefused(func(_ *http.Request, err error) { refused = append(refused, err) }))

			for range 3 {
				w := serve(rc, tt.req())
				require.Equal(t, http.StatusBadRequest, w.Code)
				assert.Equal(t, tt.code, errorCode(t, w))
			}
			assert.Zero(t, store.claims.Load(), "an unverified delivery claimed an id")
			assert.Zero(t, ship.count())
			assert.Len(t, refused, 3)

			w := serve(rc, stripeDelivery(t, stripePayload, epoch, stripeSecret))
			require.Equal(t, http.StatusOK, w.Code, w.Body.String())
			assert.Empty(t, w.Header().Get("Idempotent-Replayed"))
			assert.Equal(t, 1, ship.count())
			assert.Equal(t, stripePayload, ship.bodies[0])
		})
	}
}

// Whatever Idempotency-Key a sender puts on a delivery, the key is the
// event's id.
func TestReceiverOverridesIdempotencyKey(t *testing.T) {
	ship, obs := &shipper{}, &observed{}
	rc := newStripeReceiver(t, newCountingStore(), ship, webhook.WithIdempotencyOptions(idempotency.WithObserver(obs.observe)))
	for _, payload := range []string{`{"id":"evt_a"}`, `{"id":"evt_b"}`, `{"id":"evt_\"quoted\\"}`} {
		req := stripeDelivery(t, payload, epoch, stripeSecret)
		req.Header.Set("Idempotency-Key", "same-for-all")
		w := serve(rc, req)
		require.Equal(t, http.StatusOK, w.Code, w.Body.String())
		assert.Equal(t, "same-for-all", req.Header.Get("Idempotency-Key"), "the caller's request is left alone")
	}
	assert.Equal(t, 3, ship.count())
	var keys []string
	for _, ev := range obs.events {
		keys = append(keys, ev.Key)
	}
	assert.Equal(t, []string{"evt_a", "evt_b", `evt_"quoted\`}, keys)

	w := serve(rc, stripeDelivery(t, `{"id":"evt_\"quoted\\"}`, epoch, stripeSecret))
	assert.Equal(t, "true", w.Header().Get("Idempotent-Replayed"))
}

// However many deliveries of one event race, the handler runs once: the
// others get 409 with Retry-After while it runs, and its answer after.
func TestReceiverConcurrentDeliveries(t *testing.T) {
	const n = 16
	entered, release := make(chan struct{}), make(chan struct{})
	var runs atomic.Int64
	slow := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		runs.Add(1)
		close(entered) // a second run would panic here, too
		<-release
		fmt.Fprint(w, `{"shipped":true}`)
	})
	rc := newStripeReceiver(t, newCountingStore(), slow)

	first := make(chan *httptest.ResponseRecorder, 1)
	req := stripeDelivery(t, stripePayload, epoch, stripeSecret)
	go func() { first <- serve(rc, req) }()
	<-entered

	var wg sync.WaitGroup
	codes := make(chan *httptest.ResponseRecorder, n)
	for range n {
		req := stripeDelivery(t, stripePayload, epoch, stripeSecret)
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes <- serve(rc, req)
		}()
	}
	wg.Wait()
	close(codes)
	for w := range codes {
		require.Equal(t, http.StatusConflict, w.Code)
		assert.Equal(t, "idempotency_key_in_use", errorCode(t, w))
		assert.NotEmpty(t, w.Header().Get("Retry-After"))
	}

	close(release)
	w := <-first
	require.Equal(t, http.StatusOK, w.Code)
	after := serve(rc, stripeDelivery(t, stripePayload, epoch, stripeSecret))
	assert.Equal(t, "true", after.Header().Get("Idempotent-Replayed"))
	assert.Equal(t, `{"shipped":true}`, after.Body.String())
	assert.Equal(t, int64(1), runs.Load())
}

// The same race without the receiver's claim: verifying alone does not
// stop a redelivery from shipping again.
func TestConcurrentDeliveriesWithoutReceiverShipTwice(t *testing.T) {
	const n = 16
	v := stripeVerifier(t, []string{stripeSecret})
	var runs atomic.Int64
	arrived := make(chan struct{}, n)
	release := make(chan struct{})
	verifyOnly := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if _, err := v.Verify(r.Header, body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		runs.Add(1)
		arrived <- struct{}{}
		<-release
	})
	var wg sync.WaitGroup
	for range n {
		req := stripeDelivery(t, stripePayload, epoch, stripeSecret)
		wg.Add(1)
		go func() {
			defer wg.Done()
			serve(verifyOnly, req)
		}()
	}
	for range n {
		<-arrived
	}
	close(release)
	wg.Wait()
	assert.Equal(t, int64(n), runs.Load(), "every delivery shipped")
}

// A handler that answers a failure leaves the event to the sender's retry:
// its answer is not stored, and the retry runs it again.
func TestReceiverReleasesFailures(t *testing.T) {
	for _, status := range []int{http.StatusInternalServerError, http.StatusServiceUnavailable, http.StatusBadRequest, http.StatusFound} {
		t.Run(strconv.Itoa(status), func(t *testing.T) {
			var runs atomic.Int64
			h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if runs.Add(1) == 1 {
					w.WriteHeader(status)
					fmt.Fprint(w, "database down")
					return
				}
				fmt.Fprint(w, "shipped")
			})
			obs := &observed{}
			rc := newStripeReceiver(t, newCountingStore(), h, webhook.WithIdempotencyOptions(idempotency.WithObserver(obs.observe)))

			w := serve(rc, stripeDelivery(t, stripePayload, epoch, stripeSecret))
			require.Equal(t, status, w.Code)
			w = serve(rc, stripeDelivery(t, stripePayload, epoch, stripeSecret))
			require.Equal(t, http.StatusOK, w.Code)
			assert.Equal(t, "shipped", w.Body.String())
			w = serve(rc, stripeDelivery(t, stripePayload, epoch, stripeSecret))
			assert.Equal(t, "true", w.Header().Get("Idempotent-Replayed"))
			assert.Equal(t, "shipped", w.Body.String())

			assert.Equal(t, int64(2), runs.Load())
			assert.Equal(t, []idempotency.Outcome{idempotency.Released, idempotency.Executed, idempotency.Replayed}, obs.outcomes())
		})
	}
}

// A 2xx written implicitly, by Write alone, is stored like any other.
func TestReceiverStoresImplicit200(t *testing.T) {
	var runs atomic.Int64
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		runs.Add(1)
	})
	rc := newStripeReceiver(t, newCountingStore(), h)
	for range 2 {
		require.Equal(t, http.StatusOK, serve(rc, stripeDelivery(t, stripePayload, epoch, stripeSecret)).Code)
	}
	assert.Equal(t, int64(1), runs.Load())
}

// A handler that panics may have executed: as with the middleware, its 500
// is stored, and the sender's retry does not run it again.
func TestReceiverPanicIsStored(t *testing.T) {
	var runs atomic.Int64
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		runs.Add(1)
		panic("halfway")
	})
	rc := newStripeReceiver(t, newCountingStore(), h, webhook.WithIdempotencyOptions(idempotency.WithLogger(discardLogger())))
	assert.PanicsWithValue(t, "halfway", func() { serve(rc, stripeDelivery(t, stripePayload, epoch, stripeSecret)) })
	w := serve(rc, stripeDelivery(t, stripePayload, epoch, stripeSecret))
	assert.Equal(t, http.StatusInternalServerError, w.Code)
	assert.Equal(t, "handler_panicked", errorCode(t, w))
	assert.Equal(t, int64(1), runs.Load())
}

func TestReceiverRefusesBadRequests(t *testing.T) {
	store, ship := newCountingStore(), &shipper{}
	var refused error
	rc := newStripeReceiver(t, store, ship, webhook.WithMaxBodyBytes(64),
		webhook.WithRefused(func(_ *http.Request, err error) { refused = err }))

	t.Run("not a POST", func(t *testing.T) {
		req := stripeDelivery(t, stripePayload, epoch, stripeSecret)
		req.Method = http.MethodGet
		w := serve(rc, req)
		assert.Equal(t, http.StatusMethodNotAllowed, w.Code)
		assert.Equal(t, "POST", w.Header().Get("Allow"))
		assert.Equal(t, "method_not_allowed", errorCode(t, w))
	})
	t.Run("body too large", func(t *testing.T) {
		w := serve(rc, stripeDelivery(t, `{"id":"evt_big","pad":"`+strings.Repeat("x", 64)+`"}`, epoch, stripeSecret))
		assert.Equal(t, http.StatusRequestEntityTooLarge, w.Code)
		assert.Equal(t, "body_too_large", errorCode(t, w))
		var tooLarge *http.MaxBytesError
		require.ErrorAs(t, refused, &tooLarge)
		assert.Equal(t, int64(64), tooLarge.Limit)
	})
	t.Run("body unreadable", func(t *testing.T) {
		req := stripeDelivery(t, stripePayload, epoch, stripeSecret)
		req.Body = io.NopCloser(io.MultiReader(strings.NewReader(`{"id":`), errReader{errors.New("connection reset")}))
		w := serve(rc, req)
		assert.Equal(t, http.StatusBadRequest, w.Code)
		assert.Equal(t, "body_unreadable", errorCode(t, w))
	})
	t.Run("sender hung up while sending", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		req := stripeDelivery(t, stripePayload, epoch, stripeSecret).WithContext(ctx)
		req.Body = io.NopCloser(ctxReader{ctx})
		w := serve(rc, req)
		assert.Equal(t, http.StatusBadRequest, w.Code)
		assert.Equal(t, "body_unreadable", errorCode(t, w))
		assert.ErrorIs(t, refused, context.Canceled)
	})
	assert.Zero(t, store.claims.Load())
	assert.Zero(t, ship.count())

	// A delivery received whole is processed, even if its sender has
	// hung up since: the handler's context lives on, and the retry finds
	// the outcome.
	t.Run("sender hung up after sending", func(t *testing.T) {
		var handlerErr error
		h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { handlerErr = r.Context().Err() })
		rc := newStripeReceiver(t, newCountingStore(), h)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		w := serve(rc, stripeDelivery(t, stripePayload, epoch, stripeSecret).WithContext(ctx))
		assert.Equal(t, http.StatusOK, w.Code)
		assert.NoError(t, handlerErr)
		assert.Equal(t, "true", serve(rc, stripeDelivery(t, stripePayload, epoch, stripeSecret)).Header().Get("Idempotent-Replayed"))
	})
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

type ctxReader struct{ ctx context.Context }

func (r ctxReader) Read([]byte) (int, error) { return 0, r.ctx.Err() }

// Receivers sharing a store never meet, even when their senders' ids do.
func TestReceiverScopes(t *testing.T) {
	store := newCountingStore()
	a, b := &shipper{}, &shipper{}
	ra := newStripeReceiver(t, store, a)
	rb := newStripeReceiver(t, store, b)
	named, obs := &shipper{}, &observed{}
	rn := newStripeReceiver(t, store, named, webhook.WithEndpoint("orders"),
		webhook.WithIdempotencyOptions(idempotency.WithObserver(obs.observe), idempotency.WithoutScope()))

	at := func(path string) *http.Request {
		req := stripeDelivery(t, stripePayload, epoch, stripeSecret)
		req.URL.Path = path
		return req
	}
	require.Equal(t, http.StatusOK, serve(ra, at("/a")).Code)
	require.Equal(t, http.StatusOK, serve(rb, at("/b")).Code)
	require.Equal(t, http.StatusOK, serve(rn, at("/c")).Code)
	assert.Equal(t, 1, a.count())
	assert.Equal(t, 1, b.count())
	assert.Equal(t, 1, named.count())
	assert.Equal(t, "webhook:stripe:orders", obs.events[0].Scope, "the receiver's scope beats WithoutScope")
}

func TestReceiverStandardWebhooks(t *testing.T) {
	v := standardVerifier(t, []string{standardSecret})
	store, ship := newCountingStore(), &shipper{}
	rc, err := webhook.NewReceiver(v, store, ship)
	require.NoError(t, err)
	deliver := func(id string, at time.Time, secret string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodPost, "/webhooks/payonce", strings.NewReader(standardPayload))
		for k, v := range standardHeader(id, at, signStandard(t, id, at, standardPayload, secret)) {
			req.Header[k] = v
		}
		return serve(rc, req)
	}

	// A forger sends the next event's id; it burns nothing.
	w := deliver("msg_1", epoch, standardOld)
	require.Equal(t, http.StatusBadRequest, w.Code)
	assert.Equal(t, "webhook_signature_mismatch", errorCode(t, w))
	assert.Zero(t, store.claims.Load())

	w = deliver("msg_1", epoch, standardSecret)
	require.Equal(t, http.StatusOK, w.Code, w.Body.String())
	assert.Equal(t, webhook.Delivery{Scheme: webhook.StandardWebhooks, ID: "msg_1", Timestamp: epoch}, ship.shipped[0])
	w = deliver("msg_1", epoch.Add(2*time.Minute), standardSecret)
	assert.Equal(t, "true", w.Header().Get("Idempotent-Replayed"))
	w = deliver("msg_2", epoch, standardSecret)
	assert.Empty(t, w.Header().Get("Idempotent-Replayed"))
	assert.Equal(t, 2, ship.count())
}

func TestNewReceiverRefuses(t *testing.T) {
	v := stripeVerifier(t, []string{stripeSecret})
	store := idempotency.NewMemoryStore()
	h := &shipper{}
	tests := []struct {
		name  string
		v     *webhook.Verifier
		store idempotency.Store
		h     http.Handler
		opts  []webhook.ReceiverOption
	}{
		{"nil verifier", nil, store, h, nil},
		{"nil store", v, nil, h, nil},
		{"nil handler", v, store, nil, nil},
		{"empty endpoint", v, store, h, []webhook.ReceiverOption{webhook.WithEndpoint("")}},
		{"zero body bound", v, store, h, []webhook.ReceiverOption{webhook.WithMaxBodyBytes(0)}},
		{"nil refused", v, store, h, []webhook.ReceiverOption{webhook.WithRefused(nil)}},
		{"nil idempotency option", v, store, h, []webhook.ReceiverOption{webhook.WithIdempotencyOptions(nil)}},
		{"bad idempotency option", v, store, h, []webhook.ReceiverOption{webhook.WithIdempotencyOptions(idempotency.WithTTL(0))}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := webhook.NewReceiver(tt.v, tt.store, tt.h, tt.opts...)
			assert.Error(t, err)
		})
	}
}

// An event is its id: a redelivery whose payload the sender rendered anew
// is replayed, not refused as a key reused for another request.
func TestReceiverKnowsAnEventByItsID(t *testing.T) {
	ship := &shipper{}
	rc := newStripeReceiver(t, newCountingStore(), ship)
	first := serve(rc, stripeDelivery(t, `{"id":"evt_1","object":"event","pending_webhooks":2}`, epoch, stripeSecret))
	require.Equal(t, http.StatusOK, first.Code)
	again := serve(rc, stripeDelivery(t, `{"id":"evt_1","object":"event","pending_webhooks":1}`, epoch, stripeSecret))
	require.Equal(t, http.StatusOK, again.Code, again.Body.String())
	assert.Equal(t, "true", again.Header().Get("Idempotent-Replayed"))
	assert.Equal(t, first.Body.String(), again.Body.String())
	assert.Equal(t, 1, ship.count())
	assert.Equal(t, `{"id":"evt_1","object":"event","pending_webhooks":2}`, ship.bodies[0])

	// The path is still part of the request: the same event sent to
	// another path of an endpoint named as one is a mistake, and says so.
	named := newStripeReceiver(t, newCountingStore(), ship, webhook.WithEndpoint("orders"))
	require.Equal(t, http.StatusOK, serve(named, stripeDelivery(t, stripePayload, epoch, stripeSecret)).Code)
	req := stripeDelivery(t, stripePayload, epoch, stripeSecret)
	req.URL.Path = "/webhooks/other"
	w := serve(named, req)
	assert.Equal(t, http.StatusUnprocessableEntity, w.Code)
	assert.Equal(t, "idempotency_key_reused", errorCode(t, w))
}

// A captured delivery replayed within the tolerance to another spelling of
// the same path, which ServeMux routes to the same receiver, is the same
// event: the path is not signed, so neither the scope nor the fingerprint
// may depend on how it is spelt, nor on a query string.
func TestReceiverReplayToAnotherSpellingOfThePath(t *testing.T) {
	mux := http.NewServeMux()
	ship, obs := &shipper{}, &observed{}
	mux.Handle("POST /webhooks/stripe", newStripeReceiver(t, newCountingStore(), ship,
		webhook.WithIdempotencyOptions(idempotency.WithObserver(obs.observe))))
	// And a receiver named as one endpoint: its fingerprint covers the path.
	named := &shipper{}
	mux.Handle("POST /named/stripe", newStripeReceiver(t, newCountingStore(), named, webhook.WithEndpoint("orders")))

	deliverTo := func(target string) *httptest.ResponseRecorder {
		req := stripeDelivery(t, stripePayload, epoch, stripeSecret)
		u, err := url.ParseRequestURI(target)
		require.NoError(t, err)
		req.URL, req.RequestURI = u, target
		return serve(mux, req)
	}
	for _, base := range []string{"/webhooks/", "/named/"} {
		first := deliverTo(base + "stripe")
		require.Equal(t, http.StatusOK, first.Code, first.Body.String())
		for _, replay := range []string{"%73tripe", "str%69pe", "stripe?x=1", "str%69pe?a=b&c=d", "%73tripe?"} {
			w := deliverTo(base + replay)
			require.Equal(t, http.StatusOK, w.Code, "%s%s: %s", base, replay, w.Body.String())
			assert.Equal(t, "true", w.Header().Get("Idempotent-Replayed"), base+replay)
			assert.Equal(t, first.Body.String(), w.Body.String(), base+replay)
		}
	}
	assert.Equal(t, 1, ship.count(), "the handler ran again for another spelling of its path")
	assert.Equal(t, 1, named.count())
	for _, ev := range obs.events {
		assert.Equal(t, "webhook:stripe:/webhooks/stripe", ev.Scope)
	}
}

// The handler sees the request's URL as it came, though the middleware
// sees it normalised.
func TestReceiverHandlerSeesTheURL(t *testing.T) {
	var got *url.URL
	rc := newStripeReceiver(t, newCountingStore(), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { got = r.URL }))
	req := stripeDelivery(t, stripePayload, epoch, stripeSecret)
	u, err := url.ParseRequestURI("/webhooks/str%69pe?src=test")
	require.NoError(t, err)
	req.URL = u
	require.Equal(t, http.StatusOK, serve(rc, req).Code)
	require.NotNil(t, got)
	assert.Equal(t, "/webhooks/str%69pe", got.EscapedPath())
	assert.Equal(t, "src=test", got.RawQuery)
}

// unreadBody fails the test if the receiver reads it.
type unreadBody struct{ t *testing.T }

func (b unreadBody) Read([]byte) (int, error) {
	b.t.Error("the receiver read the body of a request with no signature header")
	return 0, io.EOF
}

// A request without a signature header is refused before its body is read.
func TestReceiverRefusesUnsignedBeforeReading(t *testing.T) {
	store, ship := newCountingStore(), &shipper{}
	var refused error
	rc := newStripeReceiver(t, store, ship, webhook.WithRefused(func(_ *http.Request, err error) { refused = err }))
	req := httptest.NewRequest(http.MethodPost, "/webhooks/stripe", nil)
	req.Body = io.NopCloser(unreadBody{t})
	req.Header.Set(webhook.HeaderWebhookSignature, "v1,AAAA") // the other scheme's
	w := serve(rc, req)
	assert.Equal(t, http.StatusBadRequest, w.Code)
	assert.Equal(t, "webhook_signature_missing", errorCode(t, w))
	assert.ErrorIs(t, refused, webhook.ErrNoSignature)
	assert.Zero(t, store.claims.Load())
	assert.Zero(t, ship.count())
}
