package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// stateVersion is the version of the state file's format.
const stateVersion = 1

// embeddedGateway names the embedded gateway in the state file. It lives and
// dies with one process, so a state written against it is of no use to the
// next run.
const embeddedGateway = "embedded"

// state is what the batch knows between runs: the result of every invoice
// it has sent. It is the batch's only memory, so it is saved after every
// invoice, atomically.
type state struct {
	Version int    `json:"version"`
	Gateway string `json:"gateway"` // its URL, or embeddedGateway
	Period  string `json:"period"`
	// Invoices maps an invoice id to its result. An invoice that is not
	// here has not been sent, or was in flight when the batch died.
	Invoices map[string]*entry `json:"invoices"`
}

// A result is what became of an invoice.
type result string

const (
	resultCharged  result = "charged"
	resultDeclined result = "declined"
	// resultUnknown: the charge may or may not have happened. The entry
	// keeps the key that settles it, and the next run sends it again.
	resultUnknown result = "unknown"
)

// entry is the result of one invoice.
type entry struct {
	Result result `json:"result"`
	// Key is the idempotency key the invoice was sent with; for an unknown
	// outcome, the one the *payonce.OutcomeUnknownError named.
	Key         string `json:"key"`
	ChargeID    string `json:"charge_id,omitempty"`
	Replayed    bool   `json:"replayed,omitempty"` // the gateway answered with a stored charge
	DeclineCode string `json:"decline_code,omitempty"`
	Error       string `json:"error,omitempty"` // why the outcome is unknown
}

// settled reports whether the invoice needs nothing more.
func (e *entry) settled() bool { return e.Result == resultCharged || e.Result == resultDeclined }

func newState(gateway, period string) *state {
	return &state{Version: stateVersion, Gateway: gateway, Period: period, Invoices: make(map[string]*entry)}
}

// loadState reads the state file at path for a batch against gateway in
// period, or returns a new state if there is no file. A file written
// against an embedded gateway is replaced by a new state, and note says so.
// A file for another gateway or period is an error: its charges are not on
// this gateway, or it is another batch.
func loadState(path, gateway, period string) (st *state, note string, err error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return newState(gateway, period), "", nil
	}
	if err != nil {
		return nil, "", fmt.Errorf("read state: %w", err)
	}
	st = new(state)
	if err := json.Unmarshal(data, st); err != nil {
		return nil, "", fmt.Errorf("state file %s is not valid JSON (%v): it is written atomically, "+
			"so something else wrote it", path, err)
	}
	switch {
	case st.Version != stateVersion:
		return nil, "", fmt.Errorf("state file %s has version %d, want %d", path, st.Version, stateVersion)
	case st.Gateway == embeddedGateway:
		return newState(gateway, period), fmt.Sprintf("%s came from an earlier run's embedded gateway, whose charges "+
			"ended with that run: starting the batch over", path), nil
	case st.Gateway != gateway:
		return nil, "", fmt.Errorf("state file %s belongs to the gateway at %s, not %s: "+
			"its charges are there; run with -gateway %s to resume, or choose another -state", path, st.Gateway, gatewayName(gateway), st.Gateway)
	case st.Period != period:
		return nil, "", fmt.Errorf("state file %s is for period %s, not %s: choose another -state", path, st.Period, period)
	}
	if st.Invoices == nil {
		st.Invoices = make(map[string]*entry)
	}
	return st, "", nil
}

func gatewayName(gateway string) string {
	if gateway == embeddedGateway {
		return "the embedded gateway"
	}
	return gateway
}

// save writes the state to path atomically: readers, and the next run after
// a crash, see either the previous file or the new one, never a part.
func (st *state) save(path string) error {
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(path, append(data, '\n'))
}

// writeFileAtomic writes data to a temporary file next to path, flushes it
// to the disk and renames it over path. A rename within a directory is
// atomic, so path is never seen half written. (Surviving a power cut as well
// would also need the directory synced after the rename.)
func writeFileAtomic(path string, data []byte) (err error) {
	f, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if _, err = f.Write(data); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}
