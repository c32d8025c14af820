package redisstore

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/payonce/payonce/idempotency"
	"github.com/payonce/payonce/idempotency/internal/codec"
)

var _ idempotency.Store = (*Store)(nil)

// Defaults of the options.
const (
	// DefaultPrefix begins every key the store writes.
	DefaultPrefix = "payonce:idem:"
	// DefaultExpiryMargin is how long Redis keeps a record after it
	// expired by the middleware's clock.
	DefaultExpiryMargin = time.Minute
)

// Store is an [idempotency.Store] in Redis. It is safe for concurrent use,
// and any number of Stores, in any number of processes, may share one
// server or cluster.
//
// Give it a client created with ContextTimeoutEnabled: true, so that
// go-redis gives up on a call when the middleware's deadline ends: a Renew
// that hangs past the lease loses the claim of an owner that is still
// alive. See [New] and the package documentation.
//
// It is not an [idempotency.TxStore]: Redis has no transaction that a
// handler's writes elsewhere could join, so [idempotency.Transaction]
// reports [idempotency.ErrNoTransaction]. For writes that must commit with
// the stored response, use the PostgreSQL store.
type Store struct {
	client redis.UniversalClient
	prefix string
	margin time.Duration

	// deadlines is whether client is known to apply a context's deadline
	// to its socket reads and writes; when it is not, run enforces it.
	deadlines bool
}

// An Option configures a [Store].
type Option func(*Store) error

// WithPrefix sets what every key begins with (default [DefaultPrefix]), to
// keep several services or environments apart on one server. It may not
// hold braces, which would move the hash tag.
func WithPrefix(prefix string) Option {
	return func(s *Store) error {
		if strings.ContainsAny(prefix, "{}") {
			return fmt.Errorf("redisstore: prefix %q holds a brace", prefix)
		}
		s.prefix = prefix
		return nil
	}
}

// WithExpiryMargin sets how long Redis keeps a record after it expired by
// the middleware's clock (default [DefaultExpiryMargin]). Make it larger
// than the clock skew between your instances.
func WithExpiryMargin(d time.Duration) Option {
	return func(s *Store) error {
		if d < 0 {
			return errors.New("redisstore: negative expiry margin")
		}
		s.margin = d
		return nil
	}
}

// New returns a Store over client. It does not touch the server.
//
// Create client with ContextTimeoutEnabled: true, as the package
// documentation explains. Without it go-redis does not apply a context's
// deadline to its socket. New accepts such a client all the same, and the
// Store then keeps the deadline itself: a call whose context ends before the
// answer comes returns the context's error at once, and leaves go-redis
// waiting in the background, on a connection of its pool, until the
// client's ReadTimeout or WriteTimeout ends the command.
func New(client redis.UniversalClient, opts ...Option) (*Store, error) {
	if client == nil {
		return nil, errors.New("redisstore: nil client")
	}
	s := &Store{client: client, prefix: DefaultPrefix, margin: DefaultExpiryMargin, deadlines: honoursDeadlines(client)}
	for _, opt := range opts {
		if err := opt(s); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// key returns where the record of scope and key lives: the prefix, a hash
// tag that only hex digits can fill, then the scope's length, the scope and
// the key, so that two different pairs never share a record.
func (s *Store) key(scope, key string) string {
	h := fnv.New64a()
	h.Write(strconv.AppendInt(nil, int64(len(scope)), 10))
	h.Write([]byte{':'})
	h.Write([]byte(scope))
	h.Write([]byte(key))
	var b strings.Builder
	b.Grow(len(s.prefix) + 20 + 8 + len(scope) + len(key))
	b.WriteString(s.prefix)
	b.WriteByte('{')
	b.WriteString(fmt.Sprintf("%016x", h.Sum64()))
	b.WriteByte('}')
	b.WriteString(strconv.Itoa(len(scope)))
	b.WriteByte(':')
	b.WriteString(scope)
	b.WriteString(key)
	return b.String()
}

// A record is a hash: fp, the fingerprint; exp, when it expires, in Unix
// milliseconds by the middleware's clock; tok, the claim's token, which a
// finished record keeps; resp, the encoded response, once finished.

// claimScript: KEYS[1] record; ARGV fingerprint, token, now, expiry,
// Redis TTL in ms. It answers {1} claimed, {2} in flight, {3, resp}
// finished or {4} mismatch. A record in flight under the claim's own token
// is answered {1}: go-redis sends the script again when its connection
// broke before the reply came, and the first run may have claimed the key;
// answering "in flight" would leave the key to nobody for a whole lease.
var claimScript = redis.NewScript(`
local r = redis.call('HMGET', KEYS[1], 'fp', 'exp', 'resp', 'tok')
if r[1] and tonumber(r[2]) > tonumber(ARGV[3]) then
  if r[1] ~= ARGV[1] then return {4} end
  if r[3] then return {3, r[3]} end
  if r[4] == ARGV[2] then return {1} end
  return {2}
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'fp', ARGV[1], 'tok', ARGV[2], 'exp', ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return {1}
`)

// The scripts on an owned record: KEYS[1] record, ARGV[1] token. Each
// answers 1, or 0 if the token does not hold the record in flight.
var (
	// renewScript: ARGV expiry, Redis TTL in ms.
	renewScript = redis.NewScript(`
local r = redis.call('HMGET', KEYS[1], 'tok', 'resp')
if r[1] ~= ARGV[1] or r[2] then return 0 end
redis.call('HSET', KEYS[1], 'exp', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
`)
	// finishScript: ARGV expiry, Redis TTL in ms, encoded response. It
	// also answers 1, and writes nothing, when the record is finished
	// under the token already: an earlier run landed, whether it was
	// another call of Finish or this one sent again by go-redis.
	finishScript = redis.NewScript(`
local r = redis.call('HMGET', KEYS[1], 'tok', 'resp')
if r[1] ~= ARGV[1] then return 0 end
if r[2] then return 1 end
redis.call('HSET', KEYS[1], 'exp', ARGV[2], 'resp', ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
`)
	releaseScript = redis.NewScript(`
local r = redis.call('HMGET', KEYS[1], 'tok', 'resp')
if r[1] ~= ARGV[1] or r[2] then return 0 end
redis.call('DEL', KEYS[1])
return 1
`)
)

// millis rounds d up to whole milliseconds, at least one.
func millis(d time.Duration) int64 {
	return max(1, int64((d+time.Millisecond-1)/time.Millisecond))
}

// Claim implements [idempotency.Store].
func (s *Store) Claim(ctx context.Context, c idempotency.Claim) (idempotency.Result, error) {
	now := c.Now.UnixMilli()
	lease := millis(c.Lease)
	vals, err := s.run(ctx, claimScript, []string{s.key(c.Scope, c.Key)},
		c.Fingerprint, c.Token, now, now+lease, lease+s.margin.Milliseconds()).Slice()
	if err != nil {
		return idempotency.Result{}, fmt.Errorf("redisstore: claim: %w", err)
	}
	state, _ := vals[0].(int64)
	switch state {
	case 1:
		return idempotency.Result{State: idempotency.Claimed}, nil
	case 2:
		return idempotency.Result{State: idempotency.InFlight}, nil
	case 4:
		return idempotency.Result{State: idempotency.Mismatch}, nil
	case 3:
		if len(vals) == 2 {
			if enc, ok := vals[1].(string); ok {
				resp, err := codec.Response([]byte(enc))
				if err != nil {
					return idempotency.Result{}, fmt.Errorf("redisstore: claim: stored response: %w", err)
				}
				return idempotency.Result{State: idempotency.Finished, Response: resp}, nil
			}
		}
	}
	return idempotency.Result{}, fmt.Errorf("redisstore: claim: unexpected answer %v", vals)
}

// Renew implements [idempotency.Store].
func (s *Store) Renew(ctx context.Context, c idempotency.Claim) error {
	lease := millis(c.Lease)
	return s.owned(ctx, "renew", renewScript, c, c.Now.UnixMilli()+lease, lease+s.margin.Milliseconds())
}

// Finish implements [idempotency.Store].
//
// Finish is safe to call again for the same claim, and to send again: when
// the record is already finished under c.Token, an earlier run landed, and
// Finish reports success without writing. The middleware calls it again
// when a call fails without an answer; go-redis itself sends a command
// again, up to the client's MaxRetries (three by default), when its
// connection fails, even if the command may have run. Either way a reply
// lost with a dying connection neither loses the response nor turns into a
// false [idempotency.ErrLeaseLost].
func (s *Store) Finish(ctx context.Context, c idempotency.Claim, resp *idempotency.Response) error {
	ttl := millis(c.TTL)
	return s.owned(ctx, "finish", finishScript, c, c.Now.UnixMilli()+ttl, ttl+s.margin.Milliseconds(),
		codec.AppendResponse(nil, resp))
}

// Release implements [idempotency.Store].
func (s *Store) Release(ctx context.Context, c idempotency.Claim) error {
	return s.owned(ctx, "release", releaseScript, c)
}

// owned runs a script on the in-flight record that c.Token holds.
func (s *Store) owned(ctx context.Context, op string, script *redis.Script, c idempotency.Claim, args ...any) error {
	n, err := s.run(ctx, script, []string{s.key(c.Scope, c.Key)}, append([]any{c.Token}, args...)...).Int()
	if err != nil {
		return fmt.Errorf("redisstore: %s: %w", op, err)
	}
	if n == 0 {
		return idempotency.ErrLeaseLost
	}
	return nil
}

// run runs script and returns its answer, or the error of ctx once ctx
// ends, whichever comes first. A client known to honour ctx runs it in the
// caller's goroutine. Any other is given a goroutine to run it in, which
// the caller leaves behind when ctx ends first; the script may still run
// then, as it may when a deadline cuts a reply short.
func (s *Store) run(ctx context.Context, script *redis.Script, keys []string, args ...any) *redis.Cmd {
	if s.deadlines || ctx.Done() == nil {
		return script.Run(ctx, s.client, keys, args...)
	}
	if err := ctx.Err(); err != nil {
		return failed(ctx, err)
	}
	done := make(chan *redis.Cmd, 1)
	go func() { done <- script.Run(ctx, s.client, keys, args...) }()
	select {
	case cmd := <-done:
		return cmd
	case <-ctx.Done():
		select {
		case cmd := <-done: // the answer came as ctx ended
			return cmd
		default:
			return failed(ctx, ctx.Err())
		}
	}
}

func failed(ctx context.Context, err error) *redis.Cmd {
	cmd := redis.NewCmd(ctx)
	cmd.SetErr(err)
	return cmd
}

// honoursDeadlines reports whether client is known to apply a context's
// deadline to its socket reads and writes. go-redis does only when its
// options set ContextTimeoutEnabled, and never when ReadTimeout or
// WriteTimeout disables socket deadlines (-2). Other clients are not
// assumed to.
func honoursDeadlines(client redis.UniversalClient) bool {
	var enabled bool
	var read, write time.Duration
	switch c := client.(type) {
	case *redis.Client:
		o := c.Options()
		enabled, read, write = o.ContextTimeoutEnabled, o.ReadTimeout, o.WriteTimeout
	case *redis.ClusterClient:
		o := c.Options()
		enabled, read, write = o.ContextTimeoutEnabled, o.ReadTimeout, o.WriteTimeout
	case *redis.Ring:
		o := c.Options()
		enabled, read, write = o.ContextTimeoutEnabled, o.ReadTimeout, o.WriteTimeout
	}
	// A negative timeout may mean no socket deadline at all: -2 as given,
	// -1 once a Client has normalised it. Only zero (no timeout of its own)
	// or a positive one leaves the context's deadline in force.
	return enabled && read >= 0 && write >= 0
}
