package main

// Stand-ins for the API of issue 15, until it lands on main.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"

	"github.com/jackc/pgx/v5"
)

func requestKey(ctx context.Context) (scope, key string, ok bool) {
	e, ok := ctx.Value(executionKey{}).(*execution)
	if !ok {
		return "", "", false
	}
	return "", e.key, true
}

func derivedKey(ctx context.Context, purpose string) (string, error) {
	_, key, ok := requestKey(ctx)
	if !ok {
		return "", errors.New("no key")
	}
	sum := sha256.Sum256([]byte(purpose + "\x00" + key))
	return purpose + ":" + hex.EncodeToString(sum[:]), nil
}

func transaction(ctx context.Context) (pgx.Tx, error) {
	return nil, errors.New("pgstore.Tx has not landed yet")
}
