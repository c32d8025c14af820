package idempotency

import (
	"context"
	"errors"
	"net/http"
	"time"
)

// ErrLeaseLost is returned by [Store.Renew], [Store.Finish] and
// [Store.Release] when the claim no longer belongs to the caller's token:
// its lease ran out and another request claimed the key. The caller must not
// assume its response was stored.
var ErrLeaseLost = errors.New("idempotency: lease lost to another claimant")

// ErrStoreFull is returned, possibly wrapped, by [Store.Claim] when a store
// with bounded room has none left for a new record. The store refuses the
// claim rather than evict a record that has not expired, so the middleware
// answers 503 with Retry-After and executes nothing.
var ErrStoreFull = errors.New("idempotency: store is full")

// A Store keeps idempotency records. Each record is identified by a scope
// (an account, a tenant, or "" when there is only one) and a key, and moves
// through two states: in flight, while one request holds it under a lease,
// and finished, when it holds the response to replay.
//
// The whole protocol rests on [Store.Claim] being atomic: however many
// requests race on one scope and key, exactly one of them may be told
// [Claimed]. A database implements it as a single conditional insert; the
// in-memory store takes a lock.
//
// Every method must be safe for concurrent use. A Store returns an error
// only when it cannot answer (a lost connection, a timeout, no room); the
// middleware then fails closed and executes nothing. The middleware gives
// every call a context with a deadline shorter than the lease (see
// [WithStoreTimeout]), and a store must give up when it ends.
type Store interface {
	// Claim claims c.Key in c.Scope for c.Fingerprint, or reports why it
	// cannot. The answer depends on the current record:
	//   - none, or one whose lease or TTL has run out: the record becomes in
	//     flight for c.Token until c.Now+c.Lease, and Claim reports Claimed;
	//   - a record with a different fingerprint, in any state: Mismatch;
	//   - in flight for the same fingerprint: InFlight;
	//   - finished for the same fingerprint: Finished, with the response.
	Claim(ctx context.Context, c Claim) (Result, error)

	// Renew extends the lease of an in-flight claim held by c.Token to
	// c.Now+c.Lease. It returns ErrLeaseLost if the token no longer holds it.
	Renew(ctx context.Context, c Claim) error

	// Finish stores resp for the claim held by c.Token and marks it
	// finished until c.Now+c.TTL. It returns ErrLeaseLost, and stores
	// nothing, if the token no longer holds the claim: a finished record is
	// never overwritten.
	//
	// Finish must be safe to call again for the same claim, because the
	// middleware retries it when a call fails without an answer, and the
	// failed call may have landed: if the record is already finished under
	// c.Token, Finish returns nil and leaves the stored response as it is.
	Finish(ctx context.Context, c Claim, resp *Response) error

	// Release deletes the in-flight claim held by c.Token, so the key is
	// free again. It returns ErrLeaseLost if the token no longer holds it.
	Release(ctx context.Context, c Claim) error
}

// A Claim names one attempt to own a key. The middleware builds it, and
// passes the same Claim, with Now updated, to every later call for that
// request.
type Claim struct {
	Scope       string // whose key it is; records in different scopes never meet
	Key         string // the Idempotency-Key, unquoted and validated
	Fingerprint string // what the request asked for; see Fingerprint
	Token       string // unique to this attempt; proves ownership of the lease

	Now   time.Time     // the middleware's clock, so stores and tests agree on time
	Lease time.Duration // how long an in-flight claim holds without renewal
	TTL   time.Duration // how long a finished record is kept
}

// State is what [Store.Claim] found.
type State int

// The answers of [Store.Claim].
const (
	// Claimed: the caller now owns the key and must execute the request.
	Claimed State = iota + 1
	// InFlight: another request with the same fingerprint holds the key.
	InFlight
	// Finished: the key holds a stored response, in Result.Response.
	Finished
	// Mismatch: the key was used for a request with another fingerprint.
	Mismatch
)

func (s State) String() string {
	switch s {
	case Claimed:
		return "claimed"
	case InFlight:
		return "in flight"
	case Finished:
		return "finished"
	case Mismatch:
		return "mismatch"
	}
	return "unknown"
}

// Result is the answer of [Store.Claim].
type Result struct {
	State    State
	Response *Response // set when State is Finished
}

// Response is a stored response, replayed byte for byte to duplicates.
type Response struct {
	StatusCode int
	Header     http.Header // only the headers worth replaying
	Body       []byte
}
