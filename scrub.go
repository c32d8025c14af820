package payonce

// The scrubber keeps the API key out of everything the client returns or
// logs, whatever the server sends back.

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"net"
	"slices"
	"strconv"
	"strings"
)

// minKeyFragment is the length of the shortest run of the API key that the
// scrubber redacts.
//
// The rule: no text the client returns or logs contains minKeyFragment or
// more consecutive bytes of the API key (or of its Go- or JSON-quoted
// form), wherever they come from: the whole key, "Bearer <key>", a prefix
// a server cut off, or a piece left by clipping. The scrubber replaces
// every window of minKeyFragment bytes that occurs in the key, merged with
// its overlapping and adjacent windows, by "[redacted]". It runs before any
// clipping, and clipping only shortens a text, so a clipped text keeps the
// rule: it cannot reveal a prefix of the key longer than minKeyFragment-1
// bytes. Eight bytes is the length of the well-known "sk_test_" and
// "sk_live_" prefixes, so what can still show is at most the public prefix
// or seven bytes of the key's secret part; the rule over-redacts text that
// merely contains "sk_test_", which is harmless. A key shorter than
// minKeyFragment is redacted only whole.
const minKeyFragment = 8

// redacted replaces what the scrubber removes.
const redacted = "[redacted]"

// scrubber redacts the API key from text; see minKeyFragment. It is built
// once by NewClient (or per Authorization header by NewHTTPClient's
// transport) and read-only afterwards, so safe for concurrent use. A nil
// *scrubber redacts nothing.
type scrubber struct {
	ns    []int               // the window lengths, ascending: minKeyFragment, or a shorter secret's length
	grams map[string]struct{} // every window of the secrets' forms
}

// newScrubber returns a scrubber of the given secrets (the API key, or the
// credentials of an Authorization header), nil when all are empty. Each
// secret is redacted by windows of min(minKeyFragment, len) bytes.
func newScrubber(secrets ...string) *scrubber {
	sc := &scrubber{grams: map[string]struct{}{}}
	for _, key := range secrets {
		if key == "" {
			continue
		}
		n := min(minKeyFragment, len(key))
		if !slices.Contains(sc.ns, n) {
			sc.ns = append(sc.ns, n)
		}
		forms := []string{key}
		if q := strconv.Quote(key); q[1:len(q)-1] != key {
			forms = append(forms, q[1:len(q)-1])
		}
		if j, err := json.Marshal(key); err == nil && string(j[1:len(j)-1]) != key {
			forms = append(forms, string(j[1:len(j)-1]))
		}
		for _, f := range forms {
			for i := 0; i+n <= len(f); i++ {
				sc.grams[f[i:i+n]] = struct{}{}
			}
		}
	}
	if len(sc.ns) == 0 {
		return nil
	}
	slices.Sort(sc.ns)
	return sc
}

// authScrubber returns the scrubber of the credentials in an Authorization
// header value, nil when there are none. For "Bearer <token>" (or any
// scheme but Basic) the secret is the token; for "Basic <base64>" it is the
// base64 text, the decoded "user:password", and the user and the password
// when they have minKeyFragment bytes or more (a shorter one is redacted
// only within the other forms, as redacting every occurrence of, say, "x"
// would garble every message). A value without a scheme is a secret whole.
func authScrubber(auth string) *scrubber {
	auth = strings.TrimSpace(auth)
	scheme, cred, found := strings.Cut(auth, " ")
	if !found {
		return newScrubber(auth)
	}
	cred = strings.TrimSpace(cred)
	secrets := []string{cred}
	if strings.EqualFold(scheme, "Basic") {
		if dec, err := base64.StdEncoding.DecodeString(cred); err == nil && len(dec) > 0 {
			secrets = append(secrets, string(dec))
			user, pass, _ := strings.Cut(string(dec), ":")
			for _, part := range []string{user, pass} {
				if len(part) >= minKeyFragment {
					secrets = append(secrets, part)
				}
			}
		}
	}
	return newScrubber(secrets...)
}

// contains reports whether s holds a run of the key that scrub would redact.
func (sc *scrubber) contains(s string) bool {
	if sc == nil {
		return false
	}
	for i := 0; i+sc.ns[0] <= len(s); i++ {
		for _, n := range sc.ns {
			if i+n > len(s) {
				break
			}
			if _, ok := sc.grams[s[i:i+n]]; ok {
				return true
			}
		}
	}
	return false
}

// scrub returns s with every run of the key redacted. It returns s itself,
// without allocating, when there is nothing to redact.
func (sc *scrubber) scrub(s string) string {
	if sc == nil {
		return s
	}
	var b strings.Builder
	copied, end := 0, -1 // s[:copied] is written; the current redaction ends at end
	for i := 0; i+sc.ns[0] <= len(s); i++ {
		for _, n := range sc.ns {
			if i+n > len(s) {
				break
			}
			if _, ok := sc.grams[s[i:i+n]]; !ok {
				continue
			}
			if i > end { // a new redaction, not touching the previous one
				if b.Len() == 0 {
					b.Grow(len(s))
				}
				b.WriteString(s[copied:i])
				b.WriteString(redacted)
			}
			end = max(end, i+n)
			copied = end
		}
	}
	if end < 0 {
		return s
	}
	b.WriteString(s[copied:])
	return b.String()
}

// clean scrubs s and then clips it to n bytes. Only the first 4n+64 bytes
// are scrubbed, which bounds the work for a huge header; as clipping only
// shortens a scrubbed text, the result keeps the rule of minKeyFragment.
func (sc *scrubber) clean(s string, n int) string {
	if limit := 4*n + 64; len(s) > limit {
		s = s[:limit]
	}
	return clip(sc.scrub(s), n)
}

// scrubErr returns err unchanged when neither its text nor the text of any
// error it wraps holds a run of the key. Otherwise it returns a
// *scrubbedError with the scrubbed text, which wraps only the parts of err
// that are clean, so that errors.As cannot reach a text with the key either.
func (sc *scrubber) scrubErr(err error) error {
	if err == nil || sc == nil || !sc.dirty(err) {
		return err
	}
	var ne net.Error
	return &scrubbedError{
		msg:     sc.scrub(err.Error()),
		parts:   sc.cleanParts(err, nil),
		timeout: errors.As(err, &ne) && ne.Timeout(),
	}
}

// scrubResult is the last line of defence of Do, whose errors are built
// from scrubbed parts: should one still hold a run of the key, it is
// scrubbed, and an *OutcomeUnknownError stays one, with its key.
func (sc *scrubber) scrubResult(err error) error {
	if err == nil || sc == nil || !sc.dirty(err) {
		return err
	}
	var u *OutcomeUnknownError
	if errors.As(err, &u) {
		cp := *u
		cp.Err = sc.scrubErr(u.Err)
		return &cp
	}
	return sc.scrubErr(err)
}

// dirty reports whether err or an error it wraps has a run of the key in
// its text.
func (sc *scrubber) dirty(err error) bool {
	if sc.contains(err.Error()) {
		return true
	}
	switch u := err.(type) {
	case interface{ Unwrap() error }:
		if w := u.Unwrap(); w != nil {
			return sc.dirty(w)
		}
	case interface{ Unwrap() []error }:
		for _, w := range u.Unwrap() {
			if w != nil && sc.dirty(w) {
				return true
			}
		}
	}
	return false
}

// cleanParts appends the largest clean errors of err's tree to out.
func (sc *scrubber) cleanParts(err error, out []error) []error {
	if !sc.dirty(err) {
		return append(out, err)
	}
	switch u := err.(type) {
	case interface{ Unwrap() error }:
		if w := u.Unwrap(); w != nil {
			out = sc.cleanParts(w, out)
		}
	case interface{ Unwrap() []error }:
		for _, w := range u.Unwrap() {
			if w != nil {
				out = sc.cleanParts(w, out)
			}
		}
	}
	return out
}

// scrubbedError is an error whose text held the API key: typically a
// net/http parse error quoting what a hostile server sent. It keeps the
// scrubbed text, whether the original was a timeout, and the clean parts of
// the original (so that errors.Is still finds io.EOF or a syscall error).
type scrubbedError struct {
	msg     string
	parts   []error
	timeout bool
}

var _ net.Error = (*scrubbedError)(nil)

func (e *scrubbedError) Error() string   { return e.msg }
func (e *scrubbedError) Unwrap() []error { return e.parts }
func (e *scrubbedError) Timeout() bool   { return e.timeout }
func (e *scrubbedError) Temporary() bool { return e.timeout }
