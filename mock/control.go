package mock

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"time"
)

// The control surface: /_mock/… and /healthz, on the same handler as the
// API. It needs no API key and no idempotency key, and is neither faulted
// nor recorded in the history. Every route but /healthz is behind the
// guard of guard.go.
func (g *Gateway) controlRoutes() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("POST /_mock/faults", g.postFault)
	mux.HandleFunc("GET /_mock/faults", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, dataOf(g.world.Load().faults.list()))
	})
	mux.HandleFunc("DELETE /_mock/faults", func(w http.ResponseWriter, _ *http.Request) {
		g.ClearFaults()
		writeOK(w)
	})
	mux.HandleFunc("POST /_mock/chaos", g.postChaos)
	mux.HandleFunc("GET /_mock/chaos", g.getChaos)
	mux.HandleFunc("POST /_mock/clock", g.postClock)
	mux.HandleFunc("GET /_mock/clock", g.getClock)
	mux.HandleFunc("GET /_mock/charges", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, dataOf(g.Charges()))
	})
	mux.HandleFunc("GET /_mock/requests", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, dataOf(g.Requests()))
	})
	mux.HandleFunc("GET /_mock/stats", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, g.Stats())
	})
	mux.HandleFunc("GET /_mock/duplicates", g.getDuplicates)
	mux.HandleFunc("POST /_mock/reset", func(w http.ResponseWriter, _ *http.Request) {
		g.Reset()
		writeOK(w)
	})
	g.deliveryControlRoutes(mux)
	return mux
}

func (g *Gateway) serveControl(w http.ResponseWriter, r *http.Request, id string) {
	sw := &statusWriter{ResponseWriter: w}
	if g.checkControl(sw, r) {
		if _, pattern := g.control.Handler(r); pattern == "" {
			writeError(sw, &apiError{Status: http.StatusNotFound, Type: invalidRequest, Code: "unknown_route",
				Message: "unrecognized request URL (" + clip(r.Method, maxMethodBytes) + " " + clip(r.URL.Path, maxPathBytes) + ")"})
		} else {
			g.control.ServeHTTP(sw, r)
		}
	}
	if l := g.cfg.logger; l != nil {
		l.LogAttrs(r.Context(), slog.LevelInfo, "control",
			slog.String("method", clip(r.Method, maxMethodBytes)), slog.String("path", clip(r.URL.Path, maxPathBytes)),
			slog.Int("status", sw.status), slog.String("request_id", id))
	}
}

type list[T any] struct {
	Data []T `json:"data"`
}

func dataOf[T any](items []T) list[T] {
	if items == nil {
		items = []T{}
	}
	return list[T]{items}
}

func writeOK(w http.ResponseWriter) {
	writeJSON(w, http.StatusOK, map[string]bool{"ok": true})
}

// decodeControl decodes r's body into v, refusing unknown fields. The
// guard has checked that the body, if any, is application/json. An empty
// body is {}.
func decodeControl(w http.ResponseWriter, r *http.Request, v any) bool {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	if err != nil {
		writeError(w, &apiError{Status: http.StatusRequestEntityTooLarge, Type: invalidRequest, Code: "body_too_large",
			Message: "the request body is larger than 1 MiB"})
		return false
	}
	if len(bytes.TrimSpace(body)) == 0 {
		body = []byte("{}")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeError(w, invalidParam("invalid_json", "", "invalid control request: "+err.Error()))
		return false
	}
	return true
}

func (g *Gateway) postFault(w http.ResponseWriter, r *http.Request) {
	var f Fault
	if !decodeControl(w, r, &f) {
		return
	}
	f, err := f.normalize()
	if err != nil {
		writeError(w, invalidParam("invalid_fault", "", err.Error()))
		return
	}
	g.world.Load().faults.add(f)
	writeJSON(w, http.StatusOK, f)
}

type chaosJSON struct {
	Rate *float64 `json:"rate"`
	Seed int64    `json:"seed"`
}

func (g *Gateway) postChaos(w http.ResponseWriter, r *http.Request) {
	postChaosSettings(w, r, g.SetChaos, g.getChaos)
}

// postChaosSettings sets a chaos rate and seed from r's body with set, and
// answers with the settings as get reads them: the routes of the request
// chaos and of the delivery chaos.
func postChaosSettings(w http.ResponseWriter, r *http.Request, set func(float64, int64) error, get http.HandlerFunc) {
	var c chaosJSON
	if !decodeControl(w, r, &c) {
		return
	}
	if c.Rate == nil {
		writeError(w, missing("rate"))
		return
	}
	if err := set(*c.Rate, c.Seed); err != nil {
		writeError(w, invalidParam("parameter_invalid", "rate", err.Error()))
		return
	}
	get(w, r)
}

func (g *Gateway) getChaos(w http.ResponseWriter, _ *http.Request) {
	rate, seed := g.world.Load().chaos.settings()
	writeJSON(w, http.StatusOK, chaosJSON{Rate: &rate, Seed: seed})
}

// maxAdvance bounds one move of the clock, far beyond any TTL.
const maxAdvance = 100 * 365 * 24 * time.Hour

func (g *Gateway) postClock(w http.ResponseWriter, r *http.Request) {
	var c struct {
		AdvanceSeconds *float64 `json:"advance_seconds"`
	}
	if !decodeControl(w, r, &c) {
		return
	}
	switch {
	case c.AdvanceSeconds == nil:
		writeError(w, missing("advance_seconds"))
		return
	case !(*c.AdvanceSeconds >= 0) || *c.AdvanceSeconds > maxAdvance.Seconds():
		writeError(w, invalidParam("parameter_invalid", "advance_seconds",
			"advance_seconds must be from 0 to "+strconv.FormatFloat(maxAdvance.Seconds(), 'f', 0, 64)+": the clock only moves forward"))
		return
	}
	g.AdvanceClock(time.Duration(math.Round(*c.AdvanceSeconds * float64(time.Second))))
	g.getClock(w, r)
}

func (g *Gateway) getClock(w http.ResponseWriter, _ *http.Request) {
	now := g.Now()
	writeJSON(w, http.StatusOK, struct {
		Now  int64  `json:"now"`
		Time string `json:"time"`
	}{now.Unix(), now.UTC().Format(time.RFC3339Nano)})
}

// defaultDuplicateWindow is the window of GET /_mock/duplicates when the
// query gives none.
const defaultDuplicateWindow = time.Minute

func (g *Gateway) getDuplicates(w http.ResponseWriter, r *http.Request) {
	window := defaultDuplicateWindow
	if v := r.URL.Query().Get("window_seconds"); v != "" {
		s, err := strconv.ParseFloat(v, 64)
		if err != nil || !(s >= 0) || s > maxAdvance.Seconds() {
			writeError(w, invalidParam("parameter_invalid", "window_seconds", "window_seconds must be a number of seconds"))
			return
		}
		window = time.Duration(s * float64(time.Second))
	}
	writeJSON(w, http.StatusOK, dataOf(g.SuspectedDuplicates(window)))
}
