package idempotency_test

import (
	"testing"

	"github.com/payonce/payonce/idempotency"
	"github.com/payonce/payonce/idempotency/storetest"
)

func TestMemoryStore(t *testing.T) {
	storetest.Run(t, func(*testing.T) idempotency.Store { return idempotency.NewMemoryStore() })
}
