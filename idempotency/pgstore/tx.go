package pgstore

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/payonce/payonce/idempotency"
	"github.com/payonce/payonce/idempotency/internal/codec"
)

var _ idempotency.TxStore = (*Store)(nil)

// ErrMiddlewareCommits is returned by Commit and Rollback on the
// transaction that [Tx] returns: the middleware ends it, once the handler
// has returned, so that the stored response commits with the handler's
// writes. Use a nested transaction (its Begin, a savepoint) to undo part of
// the handler's writes.
var ErrMiddlewareCommits = errors.New("pgstore: the idempotency middleware commits or rolls back this transaction, not the handler")

// Tx returns the transaction in which the middleware will store the
// response of the request whose handler runs on ctx, beginning it on the
// first call; later calls return the same one. Do the handler's own writes
// in it: the middleware commits them with the stored response, after the
// handler returns, so that they are durable together or not at all.
//
//	func createOrder(w http.ResponseWriter, r *http.Request) {
//		tx, err := pgstore.Tx(r.Context())
//		if err != nil {
//			idempotency.NotExecuted(r.Context()) // nothing was written: let the retry run
//			http.Error(w, "try again", http.StatusServiceUnavailable)
//			return
//		}
//		_, err = tx.Exec(r.Context(), `INSERT INTO orders (id, amount) VALUES ($1, $2)`, id, amount)
//		…
//		w.WriteHeader(http.StatusCreated) // stored and committed with the row
//	}
//
// A crash before the commit keeps neither the rows nor the response: once
// the claim's lease runs out, a retry executes the handler again, from a
// clean slate. After the commit, retries get the stored response.
//
// Whatever the handler answers is stored with its writes, a 402 or a 500
// as much as a 201: to keep none of them, call [idempotency.NotExecuted]
// (the middleware rolls back and frees the key), or undo part of them with
// a nested transaction (its Begin, a savepoint). If a statement fails, as
// on a unique violation, PostgreSQL aborts the transaction: the handler's
// answer is then stored without any of its writes.
//
// The transaction runs at READ COMMITTED, whatever the server's default:
// the claim's lease goes on being renewed, on another connection, while
// the handler runs, and a stricter level would refuse the commit after the
// first renewal. That other connection comes from the same pool, so size
// the pool for two connections per request in flight, and bound the
// requests in flight in front of the middleware: when the pool runs dry,
// Tx and the renewals time out, and clients get 503s. Like any pgx.Tx it
// is not safe for concurrent use, and nothing may use it, nor its Conn,
// once the handler has returned.
//
// The commit is conditional on the claim: the response is stored by the
// UPDATE that [Store.Finish] runs, which matches only while the row still
// holds this request's claim, and which then holds the row locked until
// the commit. So if the lease was lost and another request took the key
// over, the commit fails and keeps nothing of this execution; if the
// commit came first, the takeover finds the record finished. Never both.
// Until that UPDATE the transaction holds no lock on the claim's row, so
// renewals, a duplicate's claim (answered 409 at once) and a takeover's
// release never wait for it.
//
// A process that dies takes its connection with it, and PostgreSQL rolls
// its transaction back at once. A host that vanishes, or a partition,
// leaves the transaction open until the server notices: set
// tcp_keepalives_idle, tcp_keepalives_interval and tcp_keepalives_count
// (or idle_in_transaction_session_timeout, above the handler timeout), or
// the dead transaction's row locks hold up a retry's conflicting writes
// for as long as TCP takes to give up.
//
// Commit and Rollback on it return [ErrMiddlewareCommits]. See
// [idempotency.Transaction] for when the middleware rolls back instead,
// and for what a transaction cannot cover: a call to anything outside
// PostgreSQL.
//
// The error wraps [idempotency.ErrNoTransaction] when ctx is not that of a
// handler the middleware claimed a key for, or the middleware's store is
// not a pgstore [Store]. It is [idempotency.ErrLeaseLost] or
// [idempotency.ErrLeaseExpired] when the claim is gone, or about to be.
func Tx(ctx context.Context) (pgx.Tx, error) {
	t, err := idempotency.Transaction(ctx)
	if err != nil {
		return nil, err
	}
	st, ok := t.(*storeTx)
	if !ok {
		return nil, fmt.Errorf("%w: the middleware's store is not a pgstore.Store", idempotency.ErrNoTransaction)
	}
	return handlerTx{st.tx}, nil
}

// BeginTx implements [idempotency.TxStore]. It begins a READ COMMITTED
// transaction on a connection from the pool, and reads the claim's row in
// it: if the row no longer holds c.Token in flight, it rolls back and
// returns [idempotency.ErrLeaseLost]. See [Tx].
func (s *Store) BeginTx(ctx context.Context, c idempotency.Claim) (idempotency.Tx, error) {
	tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.ReadCommitted})
	if err != nil {
		return nil, fmt.Errorf("pgstore: begin: %w", err)
	}
	var held bool
	err = tx.QueryRow(ctx, s.checkSQL, []byte(c.Scope), []byte(c.Key), c.Token).Scan(&held)
	if err != nil {
		// On a done context, the failed rollback closes the connection,
		// which rolls back as well.
		_ = tx.Rollback(ctx)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil, idempotency.ErrLeaseLost
		}
		return nil, fmt.Errorf("pgstore: begin: %w", err)
	}
	return &storeTx{s: s, tx: tx}, nil
}

// storeTx is the [idempotency.Tx] of a Store.
type storeTx struct {
	s  *Store
	tx pgx.Tx
}

// Finish implements [idempotency.Tx]: the UPDATE of [Store.Finish], in the
// transaction, then the commit. When a statement of the handler's failed,
// PostgreSQL has aborted the transaction, and nothing of it can commit: then
// Finish rolls it back and stores resp as [Store.Finish] does, since
// nothing of the handler's writes is kept.
func (t *storeTx) Finish(ctx context.Context, c idempotency.Claim, resp *idempotency.Response) error {
	if t.tx.Conn().PgConn().TxStatus() == 'E' {
		if err := t.tx.Rollback(ctx); err != nil {
			return fmt.Errorf("pgstore: finish: rollback of the aborted transaction: %w", err)
		}
		return t.s.Finish(ctx, c, resp)
	}
	body := resp.Body
	if body == nil {
		body = []byte{}
	}
	tag, err := t.tx.Exec(ctx, t.s.finishSQL, []byte(c.Scope), []byte(c.Key), c.Token,
		int32(resp.StatusCode), codec.AppendHeader(nil, resp.Header), body, c.Now.Add(c.TTL))
	if err == nil && tag.RowsAffected() == 0 {
		err = idempotency.ErrLeaseLost
	}
	if err != nil {
		_ = t.tx.Rollback(ctx)
		if errors.Is(err, idempotency.ErrLeaseLost) {
			return err
		}
		return fmt.Errorf("pgstore: finish: %w", err)
	}
	if err := t.tx.Commit(ctx); err != nil {
		return fmt.Errorf("pgstore: finish: commit: %w", err)
	}
	return nil
}

// Rollback implements [idempotency.Tx].
func (t *storeTx) Rollback(ctx context.Context) error {
	if err := t.tx.Rollback(ctx); err != nil && !errors.Is(err, pgx.ErrTxClosed) {
		return fmt.Errorf("pgstore: rollback: %w", err)
	}
	return nil
}

// handlerTx is the transaction as the handler sees it: everything but the
// end, which is the middleware's.
type handlerTx struct{ pgx.Tx }

func (handlerTx) Commit(context.Context) error   { return ErrMiddlewareCommits }
func (handlerTx) Rollback(context.Context) error { return ErrMiddlewareCommits }
