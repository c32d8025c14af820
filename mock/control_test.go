package mock_test

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/payonce/payonce/mock"
)

// control sends a control request: no API key, no idempotency key, and a
// JSON body if any.
func (h *harness) control(method, path, body string) *resp {
	h.t.Helper()
	return h.send(req{method: method, path: path, body: body})
}

func decode[T any](t *testing.T, r *resp) T {
	t.Helper()
	require.Equal(t, http.StatusOK, r.Status, "%s", r.Body)
	var v T
	require.NoError(t, json.Unmarshal(r.Body, &v), "%s", r.Body)
	return v
}

func TestHealthz(t *testing.T) {
	h := setup(t)
	r := h.control("GET", "/healthz", "")
	assert.JSONEq(t, `{"status":"ok"}`, string(r.Body))
	assert.Regexp(t, `^req_`, r.Header.Get("Request-Id"))
	assert.Zero(t, h.srv.Stats().Requests, "not counted")
}

func TestControlFaults(t *testing.T) {
	h := setup(t)
	r := h.control("POST", "/_mock/faults", `{"kind":"fail_before","method":"POST","path":"/v1/charges","times":2,"status":503,"retry_after":1}`)
	assert.JSONEq(t, `{"kind":"fail_before","method":"POST","path":"/v1/charges","times":2,"status":503,"retry_after":1}`, string(r.Body))
	r = h.control("POST", "/_mock/faults", `{"kind":"delay","path":"/v1/refunds*"}`)
	assert.JSONEq(t, `{"kind":"delay","method":"","path":"/v1/refunds*","times":1,"delay_ms":1000}`, string(r.Body), "defaults filled in")
	r = h.control("GET", "/_mock/faults", "")
	assert.Len(t, decode[struct{ Data []json.RawMessage }](t, r).Data, 2)

	p := h.post("/v1/charges", "k", chargeBody(100))
	assert.Equal(t, 503, p.Status)
	assert.Equal(t, "1", p.Header.Get("Retry-After"))
	r = h.control("GET", "/_mock/faults", "")
	assert.Contains(t, string(r.Body), `"times":1`, "one use left")

	r = h.control("DELETE", "/_mock/faults", "")
	assert.JSONEq(t, `{"ok":true}`, string(r.Body))
	assert.Equal(t, 200, h.post("/v1/charges", "k", chargeBody(100)).Status)

	// A delay over HTTP, in milliseconds.
	h.control("POST", "/_mock/faults", `{"kind":"delay_after","delay_ms":1}`)
	assert.Equal(t, 200, h.post("/v1/charges", h.key(), chargeBody(100)).Status)

	for _, body := range []string{
		`{"kind":"explode"}`,
		`{"kind":"fail_before","status":200}`,
		`{"kind":"fail_before","staus":503}`,
		`{"kind":"delay","delay_ms":-1}`,
		`{"kind":"delay","delay_ms":600001}`,
		`{"kind":"drop_after","status":500}`,
		`not json`,
		`{}`,
	} {
		r := h.control("POST", "/_mock/faults", body)
		assert.Equal(t, http.StatusBadRequest, r.Status, body)
		assert.Equal(t, "invalid_request_error", r.err(t).Type, body)
	}
}

func TestControlChaos(t *testing.T) {
	h := setup(t)
	r := h.control("POST", "/_mock/chaos", `{"rate":1,"seed":3}`)
	assert.JSONEq(t, `{"rate":1,"seed":3}`, string(r.Body))
	assert.JSONEq(t, `{"rate":1,"seed":3}`, string(h.control("GET", "/_mock/chaos", "").Body))
	_, err := h.try(h.freshClient(), req{method: "POST", path: "/v1/charges", apiKey: keyA, idemKey: "k", body: chargeBody(1)})
	if err == nil {
		assert.Equal(t, mock.OutcomeFault, h.srv.Requests()[0].Outcome)
	}
	h.control("POST", "/_mock/chaos", `{"rate":0}`)
	assert.Equal(t, 200, h.post("/v1/charges", h.key(), chargeBody(100)).Status)

	for _, body := range []string{`{"rate":2}`, `{"rate":-1}`, `{"seed":1}`, `{"rate":"x"}`} {
		assert.Equal(t, http.StatusBadRequest, h.control("POST", "/_mock/chaos", body).Status, body)
	}
}

func TestControlClock(t *testing.T) {
	h := setup(t, mock.WithTTL(time.Hour))
	type clock struct {
		Now  int64
		Time string
	}
	c := decode[clock](t, h.control("GET", "/_mock/clock", ""))
	assert.InDelta(t, start.Unix(), c.Now, 60)

	first := h.post("/v1/charges", "k", chargeBody(100)).charge(t)
	c2 := decode[clock](t, h.control("POST", "/_mock/clock", `{"advance_seconds":3601}`))
	assert.InDelta(t, c.Now+3601, c2.Now, 60)
	second := h.post("/v1/charges", "k", chargeBody(100))
	assert.False(t, second.replayed(), "expired")
	assert.NotEqual(t, first.ID, second.charge(t).ID)
	assert.GreaterOrEqual(t, second.charge(t).Created, first.Created+3601)

	for _, body := range []string{`{"advance_seconds":-1}`, `{}`, `{"advance":1}`, `{"advance_seconds":1e300}`} {
		assert.Equal(t, http.StatusBadRequest, h.control("POST", "/_mock/clock", body).Status, body)
	}
}

func TestControlInspection(t *testing.T) {
	h := setup(t)
	ch := h.post("/v1/charges", "order_1001", chargeBody(1001)).charge(t)
	h.post("/v1/charges", "order_1001", chargeBody(1001))
	h.post("/v1/charges", "order_1001", chargeBody(1002))

	charges := decode[struct{ Data []mock.LedgerCharge }](t, h.control("GET", "/_mock/charges", "")).Data
	require.Len(t, charges, 1)
	assert.Equal(t, mock.LedgerCharge{Charge: ch, Account: mock.AccountID(keyA), IdempotencyKey: "order_1001"}, charges[0])
	var raw struct{ Data []map[string]any }
	require.NoError(t, json.Unmarshal(h.control("GET", "/_mock/charges", "").Body, &raw))
	assert.Equal(t, "order_1001", raw.Data[0]["idempotency_key"], "flat JSON, as the contract shows")
	assert.Equal(t, mock.AccountID(keyA), raw.Data[0]["account"])

	recs := decode[struct{ Data []mock.RequestRecord }](t, h.control("GET", "/_mock/requests", "")).Data
	assert.Equal(t, []mock.Outcome{mock.OutcomeExecuted, mock.OutcomeReplayed, mock.OutcomeMismatch}, outcomes(recs))
	assert.Equal(t, h.srv.Requests(), recs)

	stats := decode[map[string]int](t, h.control("GET", "/_mock/stats", ""))
	assert.Equal(t, map[string]int{"requests": 3, "executed": 1, "replayed": 1, "conflicts": 0, "mismatches": 1,
		"missing_key": 0, "invalid_key": 0, "rejected": 0, "faults": 0}, stats, "the control surface is not counted")

	assert.JSONEq(t, `{"data":[]}`, string(h.control("GET", "/_mock/duplicates", "").Body))
	h.post("/v1/charges", "order_1001-again", chargeBody(1001))
	dups := decode[struct {
		Data []struct{ First, Second mock.LedgerCharge }
	}](t, h.control("GET", "/_mock/duplicates?window_seconds=60", ""))
	require.Len(t, dups.Data, 1)
	assert.Equal(t, ch.ID, dups.Data[0].First.ID)
	assert.Equal(t, http.StatusBadRequest, h.control("GET", "/_mock/duplicates?window_seconds=x", "").Status)
}

func TestControlReset(t *testing.T) {
	h := setup(t)
	h.post("/v1/charges", "k", chargeBody(100))
	h.control("POST", "/_mock/faults", `{"kind":"fail_before","method":"GET"}`)
	h.control("POST", "/_mock/chaos", `{"rate":0.5,"seed":1}`)
	h.srv.AdvanceClock(time.Hour)
	before := h.srv.Now()

	r := h.control("POST", "/_mock/reset", "")
	assert.JSONEq(t, `{"ok":true}`, string(r.Body))
	assert.Empty(t, h.srv.Charges())
	assert.Empty(t, h.srv.Requests())
	assert.Equal(t, mock.Stats{}, h.srv.Stats())
	assert.JSONEq(t, `{"data":[]}`, string(h.control("GET", "/_mock/faults", "").Body))
	assert.JSONEq(t, `{"rate":0,"seed":0}`, string(h.control("GET", "/_mock/chaos", "").Body))
	assert.False(t, h.srv.Now().Before(before), "the clock keeps its time")

	// Keys are forgotten too: another body under the old key executes.
	r = h.post("/v1/charges", "k", chargeBody(200))
	assert.False(t, r.replayed())
	assert.Equal(t, int64(200), r.charge(t).Amount)
	assert.Equal(t, 200, h.get("/v1/charges").Status, "the GET fault is gone")
}

func TestControlUnknownRoutes(t *testing.T) {
	h := setup(t)
	for _, rq := range [][2]string{{"GET", "/_mock/nope"}, {"GET", "/_mock"}, {"POST", "/healthz"}, {"PUT", "/_mock/faults"}, {"GET", "/_mock/reset"}} {
		r := h.control(rq[0], rq[1], "")
		require.Equal(t, http.StatusNotFound, r.Status, rq)
		assert.Equal(t, "unknown_route", r.err(t).Code, rq)
	}
	assert.Zero(t, h.srv.Stats().Requests)
}
