package mock

import (
	"maps"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/payonce/payonce/mock/internal/form"
)

// Webhook endpoints (docs/protocol.md §10.1), in Stripe's dialect: where an
// account's events are delivered, and the secret that signs them. Each
// belongs to one account (an API key, and a Stripe-Account within it), as
// every other object does.

// endpoint is a stored webhook endpoint. Its fields change only under its
// account's hookAccount lock; deleted is set there too.
type endpoint struct {
	id            string
	account       string
	url           string
	enabledEvents []string
	description   *string
	metadata      map[string]string
	apiVersion    *string // as created; nil: events are in StripeAPIVersion
	connect       bool    // also receives the events of the account's connected accounts
	disabled      bool
	deleted       bool
	created       int64
	secret        string
}

// eventVersion is the api_version of the events ep receives.
func (ep *endpoint) eventVersion() string {
	if ep.apiVersion != nil {
		return *ep.apiVersion
	}
	return StripeAPIVersion
}

// wants reports whether ep receives events of type typ. The caller holds
// the account's lock.
func (ep *endpoint) wants(typ string) bool {
	if ep.disabled || ep.deleted {
		return false
	}
	for _, p := range ep.enabledEvents {
		if eventTypeMatches(p, typ) {
			return true
		}
	}
	return false
}

// stripeWebhookEndpoint is a webhook endpoint as Stripe's API shows it.
type stripeWebhookEndpoint struct {
	ID            string            `json:"id"`
	Object        string            `json:"object"` // "webhook_endpoint"
	APIVersion    *string           `json:"api_version"`
	Application   *string           `json:"application"`
	Created       int64             `json:"created"`
	Description   *string           `json:"description"`
	EnabledEvents []string          `json:"enabled_events"`
	Livemode      bool              `json:"livemode"`
	Metadata      map[string]string `json:"metadata"`
	Secret        string            `json:"secret,omitempty"` // only when created
	Status        string            `json:"status"`           // enabled or disabled
	URL           string            `json:"url"`
}

// encode returns ep as Stripe shows it, with its secret if withSecret. The
// caller holds the account's lock.
func (ep *endpoint) encode(withSecret bool) *stripeWebhookEndpoint {
	out := &stripeWebhookEndpoint{ID: ep.id, Object: "webhook_endpoint", APIVersion: ep.apiVersion, Created: ep.created,
		Description: ep.description, EnabledEvents: ep.enabledEvents, Metadata: ep.metadata, Status: "enabled", URL: ep.url}
	if ep.disabled {
		out.Status = "disabled"
	}
	if withSecret {
		out.Secret = ep.secret
	}
	return out
}

// The parameters of the endpoints' routes.
var (
	endpointFields       = []string{"url", "enabled_events", "description", "metadata", "api_version", "connect"}
	endpointUpdateFields = []string{"url", "enabled_events", "description", "metadata", "disabled"}
)

// maxWebhookURL bounds an endpoint's URL.
const maxWebhookURL = 2048

// checkWebhookURL refuses what cannot be an endpoint's URL: anything but
// an absolute http or https URL; a path that, decoded and cleaned, is the
// control surface's (/_mock, /_mock/…, /healthz), on any host, so that an
// API key cannot drive the control surface through a delivery; and, unless
// [WithRemoteWebhooks], a host other than localhost, 127.0.0.0/8 or [::1].
func (w *world) checkWebhookURL(raw string) *apiError {
	u, err := url.Parse(raw)
	if err != nil || len(raw) > maxWebhookURL || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
		u.User != nil || u.Fragment != "" {
		return invalidParam("url_invalid", "url",
			"Invalid URL: a webhook endpoint's url must be an absolute http or https URL of at most 2048 bytes, with no user info or fragment")
	}
	if isControl(path.Clean("/" + u.Path)) {
		return invalidParam("url_invalid", "url",
			"Invalid URL: a webhook endpoint's path may not be the mock's control surface (/_mock/…, /healthz): "+
				strconv.Quote(clip(raw, 200)))
	}
	if !w.g.cfg.hooks.remote && !loopbackHost(u.Host) {
		return invalidParam("url_invalid", "url",
			"Invalid URL: the mock delivers webhooks only to loopback URLs (localhost, 127.0.0.0/8, [::1]) unless it "+
				"was started with -allow-remote-webhooks (mock.WithRemoteWebhooks in Go): "+strconv.Quote(clip(raw, 200)))
	}
	return nil
}

// maxEnabledEvents bounds an endpoint's enabled_events.
const maxEnabledEvents = 256

// parseEnabledEvents reads enabled_events: "*" or event types, which may
// end in ".*" ("charge.*").
func parseEnabledEvents(f formFields, required bool) ([]string, bool, *apiError) {
	list, given, e := f.list("enabled_events")
	if e != nil {
		return nil, false, e
	}
	if !given {
		if required {
			return nil, false, missing("enabled_events")
		}
		return nil, false, nil
	}
	if len(list) == 0 || len(list) > maxEnabledEvents {
		return nil, false, invalidParam("parameter_invalid_array", "enabled_events",
			"enabled_events must list from 1 to 256 event types, or \"*\"")
	}
	for i, t := range list {
		if !validEventPattern(t) {
			return nil, false, invalidParam("parameter_invalid_string", "enabled_events["+strconv.Itoa(i)+"]",
				"Invalid enabled_events["+strconv.Itoa(i)+"]: "+strconv.Quote(clip(t, 100))+
					" is not \"*\" or an event type such as charge.succeeded or charge.*")
		}
	}
	return slices.Clone(list), true, nil
}

// validEventPattern reports whether p is "*" or dotted lower-case words,
// the last of which may be "*".
func validEventPattern(p string) bool {
	if p == "*" {
		return true
	}
	if len(p) > 100 {
		return false
	}
	parts := strings.Split(p, ".")
	if len(parts) < 2 {
		return false
	}
	for i, part := range parts {
		if part == "*" && i == len(parts)-1 {
			continue
		}
		if part == "" {
			return false
		}
		for _, c := range []byte(part) {
			if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '_' {
				return false
			}
		}
	}
	return true
}

// newWebhookSecret returns a fresh signing secret: whsec_ and 240 random
// bits.
func newWebhookSecret() string {
	return "whsec_" + newID("", 15) + newID("", 15)
}

func (w *world) createEndpointStripe(rw http.ResponseWriter, r *http.Request) {
	f, e := readForm(rw, r, endpointFields...)
	if e != nil {
		reject(rw, r, e)
		return
	}
	ep := &endpoint{id: newID("we_", 15), account: exchangeOf(r.Context()).account.id, created: w.g.Now().Unix(),
		secret: newWebhookSecret()}
	if ep.url, _, e = f.str("url", true); e == nil {
		e = w.checkWebhookURL(ep.url)
	}
	if e == nil {
		ep.enabledEvents, _, e = parseEnabledEvents(f, true)
	}
	if e == nil {
		ep.description, e = description(f)
	}
	if e == nil {
		ep.metadata, e = f.metadata()
	}
	if e == nil {
		var v string
		var given bool
		if v, given, e = f.str("api_version", false); e == nil && given {
			if !strings.Contains(v, "-") || len(v) > 64 {
				e = invalidParam("parameter_invalid_string", "api_version", "api_version must be a Stripe API version, such as "+StripeAPIVersion)
			} else {
				ep.apiVersion = &v
			}
		}
	}
	if e == nil {
		ep.connect, _, e = f.boolean("connect")
	}
	if e != nil {
		reject(rw, r, e)
		return
	}
	h := w.hooksOf(ep.account)
	h.mu.Lock()
	h.endpoints = append(h.endpoints, ep)
	out := ep.encode(true)
	h.mu.Unlock()
	w.hooks.endpointCount.Add(1)
	writeJSON(rw, http.StatusOK, out)
}

// findEndpoint returns r's endpoint {id} and its account's hooks, locked,
// or answers 404. The caller unlocks h.mu.
func (w *world) findEndpoint(rw http.ResponseWriter, r *http.Request) (*hookAccount, *endpoint) {
	id := r.PathValue("id")
	h := w.hooksOf(exchangeOf(r.Context()).account.id)
	h.mu.Lock()
	for _, ep := range h.endpoints {
		if ep.id == id {
			return h, ep
		}
	}
	h.mu.Unlock()
	reject(rw, r, missingResource("id", "no such webhook_endpoint: "+strconv.Quote(id)))
	return nil, nil
}

func (w *world) getEndpointStripe(rw http.ResponseWriter, r *http.Request) {
	if _, e := readForm(rw, r); e != nil {
		reject(rw, r, e)
		return
	}
	h, ep := w.findEndpoint(rw, r)
	if ep == nil {
		return
	}
	out := ep.encode(false)
	h.mu.Unlock()
	writeJSON(rw, http.StatusOK, out)
}

func (w *world) updateEndpointStripe(rw http.ResponseWriter, r *http.Request) {
	f, e := readForm(rw, r, endpointUpdateFields...)
	if e != nil {
		reject(rw, r, e)
		return
	}
	u, urlGiven, e := f.str("url", false)
	if e == nil && urlGiven {
		e = w.checkWebhookURL(u)
	}
	var events []string
	if e == nil {
		events, _, e = parseEnabledEvents(f, false)
	}
	var desc *string
	if e == nil {
		desc, e = description(f)
	}
	var disabled, disabledGiven bool
	if e == nil {
		disabled, disabledGiven, e = f.boolean("disabled")
	}
	var md map[string]string
	var mdGiven bool
	if e == nil {
		md, mdGiven, e = metadataUpdate(f)
	}
	if e != nil {
		reject(rw, r, e)
		return
	}
	h, ep := w.findEndpoint(rw, r)
	if ep == nil {
		return
	}
	if mdGiven { // checked first: a refused update changes nothing
		next := maps.Clone(ep.metadata)
		if md == nil {
			next = map[string]string{}
		}
		for k, v := range md {
			if v == "" {
				delete(next, k)
			} else {
				next[k] = v
			}
		}
		if len(next) > MaxMetadataKeys {
			h.mu.Unlock()
			reject(rw, r, tooManyMetadataKeys())
			return
		}
		ep.metadata = next
	}
	if urlGiven {
		ep.url = u
	}
	if events != nil {
		ep.enabledEvents = events
	}
	if desc != nil {
		ep.description = desc
	}
	stopped := disabledGiven && disabled && !ep.disabled
	if disabledGiven {
		ep.disabled = disabled
	}
	out := ep.encode(false)
	h.mu.Unlock()
	if stopped {
		w.hooks.dl.dropEndpoint(ep) // Stripe sends a disabled endpoint nothing more
	}
	writeJSON(rw, http.StatusOK, out)
}

// metadataUpdate reads the metadata of an update: nil and given for
// "metadata=", which clears; otherwise the keys to set, "" for those to
// unset.
func metadataUpdate(f formFields) (map[string]string, bool, *apiError) {
	v, ok := f["metadata"]
	if !ok {
		return nil, false, nil
	}
	if s, isString := v.(string); isString && s == "" {
		return nil, true, nil
	}
	m, isMap := v.(map[string]any)
	if !isMap {
		return nil, false, invalidParam("parameter_invalid_object", "metadata", "metadata must be an object of strings")
	}
	md := make(map[string]string, len(m))
	for k, val := range m {
		s, isString := val.(string)
		if !isString {
			return nil, false, invalidParam("invalid_metadata", "metadata", "metadata values must be strings")
		}
		if e := metadataEntry(k, s); e != nil {
			return nil, false, e
		}
		md[k] = s
	}
	return md, true, nil
}

func (w *world) deleteEndpointStripe(rw http.ResponseWriter, r *http.Request) {
	// stripe-go sends a DELETE's parameters, if any, in the query.
	if tree, err := form.Parse(r.URL.RawQuery); err != nil || firstUnknown(tree, "expand") != "" {
		reject(rw, r, invalidParam("parameter_unknown", "", "a webhook endpoint's deletion takes no parameters"))
		return
	}
	h, ep := w.findEndpoint(rw, r)
	if ep == nil {
		return
	}
	ep.deleted = true
	h.endpoints = slices.DeleteFunc(h.endpoints, func(e *endpoint) bool { return e == ep })
	h.mu.Unlock()
	w.hooks.endpointCount.Add(-1)
	w.hooks.dl.dropEndpoint(ep)
	writeJSON(rw, http.StatusOK, struct {
		ID      string `json:"id"`
		Object  string `json:"object"`
		Deleted bool   `json:"deleted"`
	}{ep.id, "webhook_endpoint", true})
}

func (w *world) listEndpointsStripe(rw http.ResponseWriter, r *http.Request) {
	pg, e := stripePage(rw, r)
	if e != nil {
		reject(rw, r, e)
		return
	}
	h := w.hooksOf(exchangeOf(r.Context()).account.id)
	h.mu.Lock()
	index := make(map[*endpoint]int, len(h.endpoints))
	for i, ep := range h.endpoints {
		index[ep] = i
	}
	items, more, e := pageOf(h.endpoints, pg, "webhook_endpoint", func(id string) *endpoint {
		for _, ep := range h.endpoints {
			if ep.id == id {
				return ep
			}
		}
		return nil
	}, func(ep *endpoint) int { return index[ep] })
	list := stripeList[*stripeWebhookEndpoint]{Object: "list", Data: make([]*stripeWebhookEndpoint, len(items)),
		HasMore: more, URL: "/v1/webhook_endpoints"}
	for i, ep := range items {
		list.Data[i] = ep.encode(false)
	}
	h.mu.Unlock()
	if e != nil {
		reject(rw, r, e)
		return
	}
	writeJSON(rw, http.StatusOK, &list)
}

// readEventRoutes adds the events' routes to a payonce-dialect mux: the
// same events, in the same shape, as Stripe's dialect reads.
func (w *world) readEventRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/events", w.listEventsStripe)
	mux.HandleFunc("GET /v1/events/{id}", w.getEventStripe)
}

// eventRoutes adds the events' and the webhook endpoints' routes to a
// Stripe-dialect mux.
func (w *world) eventRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/events", w.listEventsStripe)
	mux.HandleFunc("GET /v1/events/{id}", w.getEventStripe)
	mux.HandleFunc("POST /v1/webhook_endpoints", w.createEndpointStripe)
	mux.HandleFunc("GET /v1/webhook_endpoints", w.listEndpointsStripe)
	mux.HandleFunc("GET /v1/webhook_endpoints/{id}", w.getEndpointStripe)
	mux.HandleFunc("POST /v1/webhook_endpoints/{id}", w.updateEndpointStripe)
	mux.HandleFunc("DELETE /v1/webhook_endpoints/{id}", w.deleteEndpointStripe)
}
