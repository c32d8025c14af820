// Package redisstore keeps the records of the [idempotency] middleware in
// Redis, so that every instance of a service shares them: a double click
// that lands on two instances executes once.
//
// # Setting up
//
// There is no schema. [New] takes any [redis.UniversalClient]: a single
// server ([redis.NewClient]), Sentinel ([redis.NewFailoverClient]), Cluster
// ([redis.NewClusterClient]), or whichever [redis.NewUniversalClient]
// picks. Set ContextTimeoutEnabled in its options (see Deadlines, below):
//
//	client := redis.NewUniversalClient(&redis.UniversalOptions{
//		Addrs:                 []string{"127.0.0.1:6379"},
//		ContextTimeoutEnabled: true,
//	})
//	store, err := redisstore.New(client)
//	if err != nil { … }
//	mw, err := idempotency.New(store, idempotency.WithScope(accountOf))
//
// [redis.ParseURL] does not read that option from a URL: set it on the
// options it returns.
//
// The server must run Lua scripts (EVAL and EVALSHA); it is tested with
// Redis 7. Give it maxmemory-policy noeviction (the default): under an
// allkeys-* or volatile-* policy, Redis evicts live records when memory runs
// short, and forgets their keys; under noeviction it refuses the write, and
// the middleware fails closed with 503.
//
// # Deadlines
//
// The middleware gives every call to the store a context whose deadline is
// well within the lease (a sixth of it by default), so that a call that
// hangs fails, and is retried, while the lease still holds. That matters
// most for the heartbeat: a Renew that hangs past the lease loses the claim
// of an owner that is alive and executing, and another request may take the
// key over and execute it a second time.
//
// go-redis applies a context's deadline to its socket reads and writes only
// when the client's options set ContextTimeoutEnabled: true. It is off by
// default, and then a command waits for the server until the client's
// ReadTimeout or WriteTimeout (5 seconds by default), whatever the
// context's deadline; a ReadTimeout or WriteTimeout of -2 turns socket
// deadlines off altogether. So create the client with ContextTimeoutEnabled:
// true, and leave those timeouts at zero or above.
//
// A store over a client that does not honour deadlines still gives up on
// time: [New] finds the option in the options of a [redis.Client],
// [redis.ClusterClient] or [redis.Ring], and, when it is off or the client
// is of another type, each call waits for its answer in a goroutine of its
// own and returns the context's error when the deadline comes first. That
// goroutine, and the connection it holds, are left waiting until go-redis's
// own timeout ends the command: with ContextTimeoutEnabled go-redis closes
// the connection at the deadline instead, without the extra goroutine.
//
// # Keys and expiry
//
// Each record is one hash, at a key made of the prefix ([DefaultPrefix]
// unless [WithPrefix] sets another), a hash tag derived from the scope and
// the key, and then the scope and the key themselves, exactly:
//
//	payonce:idem:{3f2a9c0d51e8b674}6:acct_1order-42
//
// On Redis Cluster everything about one scope and key therefore lives in one
// slot, and every script touches that one key. Whatever the scope and key
// hold, a brace included, cannot change the tag.
//
// Claiming, renewing, finishing and releasing are each one Lua script, and
// Redis runs a script atomically: a claim sets the record only if there is
// none or it has expired (SET NX, with the expiry checked too), and the
// others change it only if the caller's token still holds it in flight, so
// a finished record can never be overwritten by a late claimant. A
// finished record keeps the claimant's token, so [Store.Finish] is safe to
// call, or send, again: when it finds the record finished under its token,
// an earlier run landed, and it reports success without writing.
//
// Expiry is decided by the middleware's clock ([idempotency.Claim].Now),
// stored in the record, so the instances' clocks must agree to well within a
// lease (30 seconds by default); NTP does that. Redis's own TTL removes the
// record: the time left, plus a margin ([DefaultExpiryMargin], see
// [WithExpiryMargin]) so that Redis never drops a record the middleware
// still counts on, clock skew included.
//
// # Consistency: why Redis can forget a key
//
// Redis answers a write before it is on disk or on a replica, so a key it
// acknowledged can be lost, and then a retry executes again:
//   - Without persistence (save "" and appendonly no), a restart forgets
//     every key. With RDB snapshots it forgets what changed since the last
//     snapshot; with appendonly yes and appendfsync everysec, up to a second.
//   - Replication is asynchronous. When Sentinel or Cluster fails over, the
//     new master lacks whatever the old one acknowledged but had not yet
//     sent it: a claim, so that a second request executes alongside the
//     first, or a stored response, so that a retry executes again.
//
// If that is not acceptable, use the PostgreSQL store with synchronous
// replication, and in any case keep the handler's side effects
// transactional, as a lease takeover after a crash needs anyway: the
// PostgreSQL store lets the handler write in the transaction that stores
// its response (pgstore.Tx), which this store cannot offer.
package redisstore
