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
//		if err != nil { … } // 500: nothing was written
//		_, err = tx.Exec(r.Context(), `INSERT INTO orders (id, amount) VALUES ($1, $2)`, id, amount)
//		…
//		w.WriteHeader(http.StatusCreated) // stored and committed with the row
//	}
//
// A crash before the commit keeps neither the rows nor the response: once
// the claim's lease runs out, a retry executes the handler again, from a
// clean slate. After the commit, retries get the stored response.
//
// The transaction runs at the pool's default isolation level (READ
// COMMITTED unless the server says otherwise) on a connection of its own,
// held until the middleware ends it, while the claim's lease goes on being
// renewed on another: size the pool for two connections per request in
// flight. It holds the claim's row with a FOR KEY SHARE lock, which keeps
// the record from being deleted under it, yet lets renewals through, and
// lets a duplicate's claim find the key in flight at once rather than wait.
// The commit is what is conditional: the response is stored only if the
// row still holds this request's claim, by the same UPDATE that
// [Store.Finish] runs, which then holds the row until the commit. So if the
// lease was lost and another request took the key over, the commit fails
// and keeps nothing of this execution; if the commit came first, the
// takeover finds the record finished. Never both.
//
// Commit and Rollback on it return [ErrMiddlewareCommits]. See
// [idempotency.Transaction] for when the middleware rolls back instead,
// and for what a transaction cannot cover: a call to anything outside
// PostgreSQL.
//
// The error wraps [idempotency.ErrNoTransaction] when ctx is not that of a
// handler the middleware claimed a key for, or the middleware's store is
// not a pgstore [Store]; it is [idempotency.ErrLeaseLost] when the claim
// is gone.
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

// BeginTx implements [idempotency.TxStore]. It begins a transaction on a
// connection from the pool, and takes the claim's row with FOR KEY SHARE;
// if the row no longer holds c.Token in flight, it rolls back and returns
// [idempotency.ErrLeaseLost]. See [Tx].
func (s *Store) BeginTx(ctx context.Context, c idempotency.Claim) (idempotency.Tx, error) {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("pgstore: begin: %w", err)
	}
	var held bool
	err = tx.QueryRow(ctx, s.lockSQL, []byte(c.Scope), []byte(c.Key), c.Token).Scan(&held)
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
// transaction, then the commit.
func (t *storeTx) Finish(ctx context.Context, c idempotency.Claim, resp *idempotency.Response) error {
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
