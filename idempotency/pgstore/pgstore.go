package pgstore

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"net"
	"regexp"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/payonce/payonce/idempotency"
	"github.com/payonce/payonce/idempotency/internal/codec"
)

var _ idempotency.Store = (*Store)(nil)

// DefaultTable is the table a Store uses unless [WithTable] names another.
const DefaultTable = "payonce_idempotency"

// maxClaimAttempts bounds how often Claim runs its statement again when the
// row changed under it (see claimSQL).
const maxClaimAttempts = 10

//go:embed schema.sql
var schemaTemplate string

// Store is an [idempotency.Store] in a PostgreSQL table. It is safe for
// concurrent use, and any number of Stores, in any number of processes, may
// share one table.
type Store struct {
	pool   *pgxpool.Pool
	table  string // quoted, possibly schema-qualified
	schema string

	claimSQL, renewSQL, finishSQL, finishedSQL, releaseSQL, deleteSQL, checkSQL string
}

// An Option configures a [Store].
type Option func(*config) error

type config struct {
	table pgx.Identifier
}

// identifier is what WithTable accepts for a schema or table name: lower
// case, so that quoted and unquoted SQL name the same table, and short
// enough that the index name derived from it fits PostgreSQL's 63 bytes.
var identifier = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,47}$`)

// WithTable sets the table's name (default [DefaultTable]), as table or
// schema.table. Each part is 1 to 48 characters of lower-case letters,
// digits and underscores, not starting with a digit; the names are quoted
// in every statement.
func WithTable(name string) Option {
	return func(c *config) error {
		parts := strings.Split(name, ".")
		if len(parts) > 2 {
			return fmt.Errorf("pgstore: table name %q has more than one dot", name)
		}
		for _, p := range parts {
			if !identifier.MatchString(p) {
				return fmt.Errorf("pgstore: invalid table name %q: use lower-case letters, digits and underscores (at most 48)", name)
			}
		}
		c.table = pgx.Identifier(parts)
		return nil
	}
}

// New returns a Store over pool. It does not touch the database: call
// [Store.CreateSchema] to create the table.
func New(pool *pgxpool.Pool, opts ...Option) (*Store, error) {
	if pool == nil {
		return nil, errors.New("pgstore: nil pool")
	}
	c := config{table: pgx.Identifier{DefaultTable}}
	for _, opt := range opts {
		if err := opt(&c); err != nil {
			return nil, err
		}
	}
	t := c.table.Sanitize()
	index := pgx.Identifier{c.table[len(c.table)-1] + "_expires_at_idx"}.Sanitize()
	s := &Store{
		pool:   pool,
		table:  t,
		schema: strings.NewReplacer("{{table}}", t, "{{index}}", index).Replace(schemaTemplate),
	}

	// The claim. The CTE inserts the row, or takes over an expired one; ON
	// CONFLICT DO UPDATE waits for any transaction that holds the row, then
	// locks its newest version and tests the WHERE on it, so two claimants
	// can never both win. When the CTE returns nothing, the row exists and
	// has not expired, and the SELECT reads it. That SELECT sees the
	// statement's snapshot, which can be older than the version the CTE
	// locked: a rival committed in between. Then the snapshot shows no row,
	// or an expired one, and Claim runs the statement again with a newer
	// snapshot. Any unexpired version it does show is a true answer: it was
	// the committed state when the statement began.
	s.claimSQL = `WITH claim AS (
	INSERT INTO ` + t + ` AS t (scope, key, fingerprint, token, finished, expires_at)
	VALUES ($1, $2, $3, $4, false, $6)
	ON CONFLICT (scope, key) DO UPDATE
	SET fingerprint = excluded.fingerprint, token = excluded.token, finished = false,
	    status = NULL, headers = NULL, body = NULL, expires_at = excluded.expires_at
	WHERE t.expires_at <= $5
	RETURNING 1
)
SELECT true, '', false, 0, NULL::bytea, NULL::bytea, false FROM claim
UNION ALL
SELECT false, fingerprint, finished, coalesce(status, 0), headers, body, expires_at <= $5
FROM ` + t + `
WHERE scope = $1 AND key = $2 AND NOT EXISTS (SELECT FROM claim)`

	owned := ` WHERE scope = $1 AND key = $2 AND token = $3 AND NOT finished`
	s.renewSQL = `UPDATE ` + t + ` SET expires_at = $4` + owned
	// A finished row keeps the claim's token, so that a Finish called again
	// for the claim can tell that an earlier one landed (finishedSQL). That
	// is a statement of its own, run when finishSQL changed nothing, so that
	// it reads a snapshot taken after the UPDATE: an earlier Finish still
	// running, which the UPDATE waited for, has committed by then.
	s.finishSQL = `UPDATE ` + t + ` SET finished = true, status = $4, headers = $5, body = $6, expires_at = $7` + owned
	s.finishedSQL = `SELECT EXISTS (SELECT FROM ` + t + ` WHERE scope = $1 AND key = $2 AND token = $3 AND finished)`
	s.releaseSQL = `DELETE FROM ` + t + owned
	// What BeginTx checks in its transaction (see Tx). It takes no lock:
	// one that held the row from the beginning would hold up Renew, or a
	// takeover's Release, and add nothing to the conditional UPDATE that
	// Finish runs in the transaction.
	s.checkSQL = `SELECT true FROM ` + t + owned
	// Rows already locked by a claim are skipped, not waited for; the
	// DELETE tests the expiry again in case a row changed meanwhile.
	s.deleteSQL = `DELETE FROM ` + t + ` WHERE ctid = ANY (ARRAY(
	SELECT ctid FROM ` + t + ` WHERE expires_at <= $1
	ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED)) AND expires_at <= $1`
	return s, nil
}

// Schema returns the SQL that creates the Store's table and index, with its
// configured names, for those who create tables with a migration tool.
func (s *Store) Schema() string { return s.schema }

// CreateSchema creates the Store's table and index unless they exist. It
// holds an advisory lock while it does, so instances that start together
// do not trip over each other.
func (s *Store) CreateSchema(ctx context.Context) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext('payonce/idempotency/pgstore'))`); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, s.schema)
		return err
	})
	if err != nil {
		return fmt.Errorf("pgstore: create schema: %w", err)
	}
	return nil
}

// Claim implements [idempotency.Store].
func (s *Store) Claim(ctx context.Context, c idempotency.Claim) (idempotency.Result, error) {
	for range maxClaimAttempts {
		var (
			claimed, finished, expired bool
			fingerprint                string
			status                     int32
			headers, body              []byte
		)
		err := s.pool.QueryRow(ctx, s.claimSQL, []byte(c.Scope), []byte(c.Key), c.Fingerprint, c.Token,
			c.Now, c.Now.Add(c.Lease)).Scan(&claimed, &fingerprint, &finished, &status, &headers, &body, &expired)
		switch {
		case errors.Is(err, pgx.ErrNoRows) || (err == nil && !claimed && expired):
			continue // a rival committed after the snapshot was taken
		case isSerializationFailure(err):
			continue
		case err != nil:
			return idempotency.Result{}, fmt.Errorf("pgstore: claim: %w", err)
		}
		switch {
		case claimed:
			return idempotency.Result{State: idempotency.Claimed}, nil
		case fingerprint != c.Fingerprint:
			return idempotency.Result{State: idempotency.Mismatch}, nil
		case !finished:
			return idempotency.Result{State: idempotency.InFlight}, nil
		}
		h, err := codec.Header(headers)
		if err != nil {
			return idempotency.Result{}, fmt.Errorf("pgstore: claim: stored headers: %w", err)
		}
		return idempotency.Result{State: idempotency.Finished, Response: &idempotency.Response{
			StatusCode: int(status), Header: h, Body: body,
		}}, nil
	}
	return idempotency.Result{}, fmt.Errorf("pgstore: claim: the record kept changing over %d attempts", maxClaimAttempts)
}

func isSerializationFailure(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == "40001" || pgErr.Code == "40P01")
}

// Renew implements [idempotency.Store].
func (s *Store) Renew(ctx context.Context, c idempotency.Claim) error {
	return s.owned(ctx, "renew", s.renewSQL, []byte(c.Scope), []byte(c.Key), c.Token, c.Now.Add(c.Lease))
}

// Finish implements [idempotency.Store].
//
// Finish is safe to call again for the same claim: when the row is already
// finished under c.Token, an earlier call landed, and Finish reports success
// without writing. Retrying is the middleware's job: it calls Finish again,
// with backoff and within its deadlines, when a call fails without an
// answer. The one retry here covers only a stale pooled connection: when the
// connection the statement ran on turned out to be dead, as a pooled one is
// after the server restarted or a proxy dropped it, Finish runs the
// statement once more, at once, on another. (pgxpool pings a connection
// idle for over a second before handing it out, but not one used more
// recently.) Any other error, and the end of ctx, is returned at once.
func (s *Store) Finish(ctx context.Context, c idempotency.Claim, resp *idempotency.Response) error {
	body := resp.Body
	if body == nil {
		body = []byte{} // an empty body, not a missing one
	}
	scope, key := []byte(c.Scope), []byte(c.Key)
	args := []any{scope, key, c.Token, int32(resp.StatusCode), codec.AppendHeader(nil, resp.Header), body, c.Now.Add(c.TTL)}
	tag, err := s.pool.Exec(ctx, s.finishSQL, args...)
	if err != nil && ctx.Err() == nil && connectionLost(err) {
		tag, err = s.pool.Exec(ctx, s.finishSQL, args...)
	}
	if err != nil {
		return fmt.Errorf("pgstore: finish: %w", err)
	}
	if tag.RowsAffected() > 0 {
		return nil
	}
	// The token holds no in-flight row. It may hold the finished one, from
	// an earlier call whose answer was lost, or from the first run above.
	var finished bool
	if err := s.pool.QueryRow(ctx, s.finishedSQL, scope, key, c.Token).Scan(&finished); err != nil {
		return fmt.Errorf("pgstore: finish: %w", err)
	}
	if !finished {
		return idempotency.ErrLeaseLost
	}
	return nil
}

// connectionLost reports whether err says that the connection failed, not
// that the server refused the statement: it was never sent, or the
// connection broke before its answer came back.
func connectionLost(err error) bool {
	if pgconn.SafeToRetry(err) {
		return true
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) || pgconn.Timeout(err) {
		return false
	}
	var netErr net.Error
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		(errors.As(err, &netErr) && !netErr.Timeout())
}

// Release implements [idempotency.Store].
func (s *Store) Release(ctx context.Context, c idempotency.Claim) error {
	return s.owned(ctx, "release", s.releaseSQL, []byte(c.Scope), []byte(c.Key), c.Token)
}

// owned runs a statement on the in-flight row that a token holds.
func (s *Store) owned(ctx context.Context, op, sql string, args ...any) error {
	tag, err := s.pool.Exec(ctx, sql, args...)
	if err != nil {
		return fmt.Errorf("pgstore: %s: %w", op, err)
	}
	if tag.RowsAffected() == 0 {
		return idempotency.ErrLeaseLost
	}
	return nil
}

// DeleteExpired deletes the records that expired at or before now, batch
// rows at a time, each batch in its own statement, until none is left. It
// returns how many it deleted. Rows that a claim holds locked at that moment
// are left for the next round.
func (s *Store) DeleteExpired(ctx context.Context, now time.Time, batch int) (int, error) {
	if batch <= 0 {
		return 0, errors.New("pgstore: batch must be positive")
	}
	total := 0
	for {
		tag, err := s.pool.Exec(ctx, s.deleteSQL, now, batch)
		if err != nil {
			return total, fmt.Errorf("pgstore: delete expired: %w", err)
		}
		n := int(tag.RowsAffected())
		total += n
		if n < batch {
			return total, nil
		}
	}
}

// RunJanitor calls [Store.DeleteExpired] with the current time every
// interval until ctx is done, and then returns ctx's error. An error of one
// round goes to onError, if it is not nil, and the next round tries again.
// Start it in its own goroutine; any number of instances may run one.
func (s *Store) RunJanitor(ctx context.Context, interval time.Duration, batch int, onError func(error)) error {
	if interval <= 0 {
		return errors.New("pgstore: janitor interval must be positive")
	}
	if batch <= 0 {
		return errors.New("pgstore: batch must be positive")
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
		if _, err := s.DeleteExpired(ctx, time.Now(), batch); err != nil && onError != nil && ctx.Err() == nil {
			onError(err)
		}
	}
}
