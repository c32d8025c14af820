// Package pgstore keeps the records of the [idempotency] middleware in
// PostgreSQL, so that every instance of a service shares them: a double
// click that lands on two instances executes once.
//
// # Setting up
//
// The store needs one table, whose schema ships with the package. Create it
// at startup with [Store.CreateSchema], which is idempotent and safe to run
// from many instances at once, or copy [Store.Schema] into your migrations.
// The table is called payonce_idempotency unless [WithTable] names another,
// possibly in another schema:
//
//	pool, err := pgxpool.New(ctx, os.Getenv("DATABASE_URL"))
//	if err != nil { … }
//	store, err := pgstore.New(pool, pgstore.WithTable("billing.idempotency_keys"))
//	if err != nil { … }
//	if err := store.CreateSchema(ctx); err != nil { … }
//	go store.RunJanitor(ctx, time.Minute, 1000, func(err error) { log.Print(err) })
//	mw, err := idempotency.New(store, idempotency.WithScope(accountOf))
//
// Expired rows stay in the table until they are deleted: [Store.RunJanitor]
// does it in the background (New starts no goroutine of its own), and
// [Store.DeleteExpired] does one round, for a cron job. Both delete in
// bounded batches, each its own short transaction, so a busy table stays
// small without long locks.
//
// # Who executes
//
// The database, not the application, decides who executes. The primary key
// (scope, key) holds one record per key, and a claim is one statement, an
// INSERT … ON CONFLICT DO UPDATE that takes over the row only when it has
// expired. However many instances race, PostgreSQL lets exactly one of them
// insert or take over the row, and every other one finds the winner's row.
// Renewing, finishing and releasing are single statements too, conditional
// on the claimant's token, so a finished record is never overwritten and a
// claimant whose lease was taken over cannot store its response. A finished
// row keeps the claimant's token, so [Store.Finish] is safe to call again:
// when it finds the row finished under its token, an earlier call landed,
// and it reports success without writing. The middleware retries a Finish
// whose answer was lost, with backoff; Finish itself only runs its statement
// once more, on another connection, when a stale pooled one died under it.
//
// The middleware gives every call a deadline shorter than the lease, and a
// call gives up when its context ends: pgx then sets the connection's
// deadline, and the connection is closed. The server may still run the
// statement, when a lock it waited for is released, say; as with any
// answer lost, the middleware's retry of Finish finds out.
//
// Set a connect_timeout (in the URL, or pgx.ConnConfig.ConnectTimeout) well
// under the lease. pgxpool builds a new connection on a context of its own,
// not the call's, so without one a connection attempt into a network that
// drops packets holds its pool slot until TCP gives up, minutes later: the
// pool fills, and after the network heals every call still times out at
// its deadline, until those attempts end.
//
// Time is the middleware's clock ([idempotency.Claim].Now), never the
// database's, so the instances' clocks must agree to well within a lease
// (30 seconds by default); NTP does that.
//
// The statements run outside explicit transactions, at the server's default
// isolation level. READ COMMITTED, PostgreSQL's default, is the right one; a
// serialization failure under a stricter level is retried. The store works
// through a transaction-pooling proxy such as PgBouncer when the pool uses a
// query mode it supports (pgx's QueryExecModeExec, for instance).
//
// # Transactional execution
//
// A handler can do its own writes in the transaction in which the
// middleware stores its response, so that both commit together: get it
// with [Tx]. If the process dies before the commit, PostgreSQL keeps
// neither; once the lease runs out, the client's retry executes on a clean
// slate. After the commit, retries get the stored response. The commit is
// conditional on the claim still being the handler's, so a handler whose
// lease was taken over can never commit a second execution. A call to
// anything outside PostgreSQL is not covered: give it a key from
// [idempotency.DerivedKey].
//
//	tx, err := pgstore.Tx(r.Context())
//	if err != nil { … }
//	_, err = tx.Exec(r.Context(), `INSERT INTO orders …`)
//
// // # Consistency on failover
//
// Every answer comes from the primary, and a record is as durable as the
// commit that wrote it. PostgreSQL replicates asynchronously by default: if
// the primary fails over to a standby before a commit reached it, the
// standby has never heard of that claim or response, so the key is
// forgotten and the client's retry executes again. The same happens after a
// crash with synchronous_commit = off. For keys that must survive a
// failover, run with synchronous replication (synchronous_standby_names, and
// synchronous_commit on or remote_apply), and keep the handler's own side
// effects transactional ([Tx]), as a lease takeover needs anyway.
package pgstore
