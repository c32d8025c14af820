package backendtest

import (
	"context"

	"github.com/payonce/payonce/idempotency"
)

var _ idempotency.Store = (*spy)(nil)

// spy is a Store that passes every call on to another, then tells its hooks
// what the call was and what it answered, so that a scenario can wait for
// what the middleware did instead of guessing how long it takes. A nil hook
// is not called. Hooks run on the middleware's goroutines, and must not
// block.
type spy struct {
	idempotency.Store
	claimed  func(c idempotency.Claim, res idempotency.Result, err error)
	renewed  func(c idempotency.Claim, err error)
	finished func(c idempotency.Claim, resp *idempotency.Response, err error)
}

func (s *spy) Claim(ctx context.Context, c idempotency.Claim) (idempotency.Result, error) {
	res, err := s.Store.Claim(ctx, c)
	if s.claimed != nil {
		s.claimed(c, res, err)
	}
	return res, err
}

func (s *spy) Renew(ctx context.Context, c idempotency.Claim) error {
	err := s.Store.Renew(ctx, c)
	if s.renewed != nil {
		s.renewed(c, err)
	}
	return err
}

func (s *spy) Finish(ctx context.Context, c idempotency.Claim, resp *idempotency.Response) error {
	err := s.Store.Finish(ctx, c, resp)
	if s.finished != nil {
		s.finished(c, resp, err)
	}
	return err
}
