package pgstore

import (
	"github.com/jackc/pgx/v5"

	"github.com/payonce/payonce/idempotency"
)

// PgxTx returns the pgx transaction of a transaction that BeginTx began,
// as Tx gives it to a handler.
func PgxTx(t idempotency.Tx) pgx.Tx { return t.(*storeTx).tx }
