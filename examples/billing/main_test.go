package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/payonce/payonce"
	"github.com/payonce/payonce/mock"
)

const testPeriod = "2026"

// testConfig is a small, fast batch against gatewayURL ("" for the embedded
// gateway), with its state in a fresh directory.
func testConfig(t *testing.T, gatewayURL string, invoices int) config {
	t.Helper()
	return config{
		invoices:      invoices,
		period:        testPeriod,
		statePath:     filepath.Join(t.TempDir(), "state.json"),
		gatewayURL:    gatewayURL,
		apiKey:        defaultAPIKey,
		workers:       4,
		chaos:         0.2,
		seed:          1,
		maxRetries:    payonce.DefaultMaxRetries,
		minBackoff:    time.Millisecond,
		maxBackoff:    5 * time.Millisecond,
		maxRetryAfter: time.Millisecond,
		crash:         func() { panic("crash called without -crash-after") },
	}
}

// runOnce runs the batch in this process and returns its stdout.
func runOnce(t *testing.T, cfg config) (stdout string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err = run(t.Context(), cfg, &out, &errOut)
	t.Logf("run: %v\nstdout:\n%s\nstderr:\n%s", err, out.String(), errOut.String())
	return out.String(), err
}

// row reads a count from the summary table.
func row(t *testing.T, summary, label string) int {
	t.Helper()
	m := regexp.MustCompile(`(?m)^  ` + regexp.QuoteMeta(label) + ` +(\d+)$`).FindStringSubmatch(summary)
	require.NotNil(t, m, "no row %q in the summary:\n%s", label, summary)
	n, err := strconv.Atoi(m[1])
	require.NoError(t, err)
	return n
}

func readState(t *testing.T, path string) *state {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	st := new(state)
	require.NoError(t, json.Unmarshal(data, st), "the state file is valid JSON")
	return st
}

// byInvoice groups the gateway's charges by the invoice in their metadata.
func byInvoice(charges []mock.LedgerCharge) map[string][]mock.LedgerCharge {
	m := make(map[string][]mock.LedgerCharge)
	for _, ch := range charges {
		m[ch.Metadata["invoice"]] = append(m[ch.Metadata["invoice"]], ch)
	}
	return m
}

func declines(inv invoice) bool { return strings.HasPrefix(inv.PaymentMethod, "tok_chargeDeclined") }

// requireEachInvoiceChargedOnce checks the gateway's ledger against the
// batch: one charge per invoice whose card works, under the invoice's
// business key and with the id the state file holds; none for declined
// cards; and nothing that looks like a double charge.
func requireEachInvoiceChargedOnce(t *testing.T, gw *mock.Gateway, n int, st *state) {
	t.Helper()
	ledger := byInvoice(gw.Charges())
	for _, inv := range newInvoices(n) {
		e := st.Invoices[inv.ID]
		require.NotNil(t, e, "%s is in the state file", inv.ID)
		if declines(inv) {
			assert.Empty(t, ledger[inv.ID], "%s is declined: no charge", inv.ID)
			assert.Equal(t, resultDeclined, e.Result, inv.ID)
			continue
		}
		if assert.Len(t, ledger[inv.ID], 1, "%s is charged exactly once", inv.ID) {
			key, err := inv.key(testPeriod)
			require.NoError(t, err)
			assert.Equal(t, key, ledger[inv.ID][0].IdempotencyKey, inv.ID)
			assert.Equal(t, resultCharged, e.Result, inv.ID)
			assert.Equal(t, ledger[inv.ID][0].ID, e.ChargeID, "%s: the state holds the gateway's charge", inv.ID)
		}
	}
	assert.Len(t, ledger, n-countDeclines(n), "no charge for anything but the batch")
	assert.Empty(t, gw.SuspectedDuplicates(time.Hour), "no suspected double charge")
}

func countDeclines(n int) (d int) {
	for _, inv := range newInvoices(n) {
		if declines(inv) {
			d++
		}
	}
	return d
}

// buildBinary builds the program, with the race detector if this test has
// it, so that a crash test can kill a real process.
func buildBinary(t *testing.T) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("no go command to build the program with: %v", err)
	}
	return buildPackage(t, goTool, ".", "billing")
}

// buildPackage builds the command in dir, named name, with the race
// detector if this test has it.
func buildPackage(t *testing.T, goTool, dir, name string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), name)
	if runtime.GOOS == "windows" {
		bin += ".exe"
	}
	args := []string{"build", "-o", bin}
	if raceEnabled {
		args = append(args, "-race")
	}
	out, err := exec.CommandContext(t.Context(), goTool, append(args, dir)...).CombinedOutput()
	require.NoError(t, err, "go build %s: %s", dir, out)
	return bin
}

// execBatch runs the built program and returns its exit status and output.
func execBatch(t *testing.T, bin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	return execBatchIn(t, "", bin, args...)
}

// execBatchIn is execBatch in the working directory dir ("" for this one).
func execBatchIn(t *testing.T, dir, bin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	cmd := exec.CommandContext(t.Context(), bin, args...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = &out, &errOut
	cmd.Env = append(os.Environ(), payonce.EnvAPIKey+"=") // the default test key
	err := cmd.Run()
	var exitErr *exec.ExitError
	if err != nil && !errors.As(err, &exitErr) {
		require.NoError(t, err)
	}
	t.Logf("billing %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), cmd.ProcessState.ExitCode(), out.String(), errOut.String())
	return cmd.ProcessState.ExitCode(), out.String(), errOut.String()
}

// The batch dies abruptly after the gateway charged an invoice and before
// the state file learnt of it; the rerun charges no invoice twice and
// finishes the rest. The program runs as a real process killed by os.Exit,
// against a flaky gateway in this process that outlives it.
func TestCrashAndRerunChargeEachInvoiceOnce(t *testing.T) {
	bin := buildBinary(t)
	const invoices, crashAfter = 60, 24 // 55 cards work: the crash comes at about 40%
	for _, workers := range []int{1, 4} {
		t.Run(fmt.Sprintf("workers=%d", workers), func(t *testing.T) {
			srv := mock.NewServer(mock.WithChaos(0.2, int64(7+workers)))
			t.Cleanup(srv.Close)
			statePath := filepath.Join(t.TempDir(), "state.json")
			args := []string{
				"-gateway", srv.URL, "-state", statePath, "-invoices", strconv.Itoa(invoices),
				"-workers", strconv.Itoa(workers), "-min-backoff", "1ms", "-max-backoff", "5ms", "-max-retry-after", "1ms",
			}

			code, stdout, stderr := execBatch(t, bin, append(args, "-crash-after", strconv.Itoa(crashAfter))...)
			require.Equal(t, exitCrash, code, "the first run crashes on purpose")
			assert.Empty(t, stdout, "a crash prints no summary")
			m := regexp.MustCompile(`before saving (inv_\d{4}) \((ch_\w+)\)`).FindStringSubmatch(stderr)
			require.NotNil(t, m, "the crash names the invoice it did not save")
			crashed, crashedCharge := m[1], m[2]

			// The worst moment: the gateway charged the invoice, the state
			// file does not know it.
			st := readState(t, statePath)
			assert.NotContains(t, st.Invoices, crashed)
			ledger := byInvoice(srv.Charges())
			require.Len(t, ledger[crashed], 1)
			assert.Equal(t, crashedCharge, ledger[crashed][0].ID)
			charged := 0
			for _, e := range st.Invoices {
				if e.Result == resultCharged {
					charged++
				}
			}
			assert.Equal(t, crashAfter-1, charged, "the charges before the crash are saved")
			if workers == 1 {
				assert.Len(t, ledger, crashAfter, "nothing else was in flight")
			}

			// The rerun, and more if chaos left outcomes unknown.
			code, stdout, _ = execBatch(t, bin, args...)
			assert.Equal(t, 0, code, "the rerun completes")
			assert.GreaterOrEqual(t, row(t, stdout, "already charged (replayed)"), 1,
				"the crashed invoice is replayed, not charged again")
			assert.GreaterOrEqual(t, row(t, stdout, "settled by an earlier run"), crashAfter-1)
			for i := 0; row(t, stdout, "outcome unknown") > 0; i++ {
				require.Less(t, i, 5, "unknown outcomes are settled by rerunning")
				code, stdout, _ = execBatch(t, bin, args...)
				require.Equal(t, 0, code)
			}
			assert.Contains(t, stdout, "no invoice charged twice")

			st = readState(t, statePath)
			requireEachInvoiceChargedOnce(t, srv.Gateway, invoices, st)
			e := st.Invoices[crashed]
			require.NotNil(t, e)
			assert.Equal(t, crashedCharge, e.ChargeID, "the rerun learnt the charge made before the crash")
			assert.True(t, e.Replayed, "…from the gateway's replay")
		})
	}
}

// An invoice whose response is lost is recorded as unknown, with the key
// from the *payonce.OutcomeUnknownError; the next run sends it again with
// that key and learns the charge from the replay.
func TestUnknownOutcomeIsSavedAndSettledByTheNextRun(t *testing.T) {
	srv := mock.NewServer()
	t.Cleanup(srv.Close)
	// The first charge executes, then the connection drops, and the client
	// may not retry: the outcome is unknown.
	require.NoError(t, srv.InjectFault(mock.Fault{Kind: mock.DropAfter, Method: http.MethodPost, Path: "/v1/charges"}))
	cfg := testConfig(t, srv.URL, 10)
	cfg.workers, cfg.maxRetries = 1, 0

	stdout, err := runOnce(t, cfg)
	require.NoError(t, err)
	assert.Equal(t, 1, row(t, stdout, "outcome unknown"))
	assert.Contains(t, stdout, "1 invoice with an unknown outcome")
	st := readState(t, cfg.statePath)
	e := st.Invoices["inv_0001"]
	require.NotNil(t, e)
	assert.Equal(t, resultUnknown, e.Result)
	assert.Equal(t, "renewal:inv_0001:2026", e.Key)
	assert.NotEmpty(t, e.Error)
	require.Len(t, byInvoice(srv.Charges())["inv_0001"], 1, "the lost response hid a real charge")

	stdout, err = runOnce(t, cfg)
	require.NoError(t, err)
	assert.Equal(t, 1, row(t, stdout, "already charged (replayed)"))
	assert.Equal(t, 0, row(t, stdout, "charged (new)"))
	assert.Equal(t, 9, row(t, stdout, "settled by an earlier run"))
	assert.Contains(t, stdout, "settled 1 outcome that an earlier run left unknown")
	st = readState(t, cfg.statePath)
	requireEachInvoiceChargedOnce(t, srv.Gateway, 10, st)
	assert.True(t, st.Invoices["inv_0001"].Replayed)
}

// An unknown entry is sent again with the key the state file holds, not one
// derived afresh: here the key differs from the business key, as it would
// for a batch that stored random keys, and the gateway already executed it.
func TestUnknownOutcomeIsRetriedWithItsStoredKey(t *testing.T) {
	srv := mock.NewServer()
	t.Cleanup(srv.Close)
	cfg := testConfig(t, srv.URL, 3)
	client, err := payonce.NewClient(cfg.apiKey, payonce.WithBaseURL(srv.URL))
	require.NoError(t, err)
	inv := newInvoices(3)[1]
	const storedKey = "renewal-attempt-7c1e" // what an earlier run sent
	prior, err := charge(t.Context(), client, testPeriod, inv, storedKey)
	require.NoError(t, err)
	require.Equal(t, resultCharged, prior.Result)

	st := newState(srv.URL, testPeriod)
	st.Invoices[inv.ID] = &entry{Result: resultUnknown, Key: storedKey, Error: "connection reset"}
	require.NoError(t, st.save(cfg.statePath))

	stdout, err := runOnce(t, cfg)
	require.NoError(t, err)
	assert.Equal(t, 1, row(t, stdout, "already charged (replayed)"))
	assert.Equal(t, 2, row(t, stdout, "charged (new)"))
	ledger := byInvoice(srv.Charges())
	require.Len(t, ledger[inv.ID], 1, "sent again under its stored key: replayed, not charged twice")
	assert.Equal(t, storedKey, ledger[inv.ID][0].IdempotencyKey)
	e := readState(t, cfg.statePath).Invoices[inv.ID]
	assert.Equal(t, &entry{Result: resultCharged, Key: storedKey, ChargeID: prior.ChargeID, Replayed: true}, e)
}

// The state file is replaced by a rename after every invoice, never written
// in place, and an abrupt stop leaves it whole, without the invoice that was
// being recorded.
func TestStateFileIsWrittenAtomically(t *testing.T) {
	t.Run("crash", func(t *testing.T) {
		srv := mock.NewServer()
		t.Cleanup(srv.Close)
		cfg := testConfig(t, srv.URL, 10)
		cfg.workers, cfg.crashAfter = 1, 5
		crashed := false
		cfg.crash = func() { crashed = true } // returns: run must stop by itself

		_, err := runOnce(t, cfg)
		require.ErrorIs(t, err, errCrashed)
		require.True(t, crashed)
		st := readState(t, cfg.statePath)
		assert.Len(t, st.Invoices, 4, "inv_0001 to inv_0004 saved; inv_0005 charged but not saved")
		assert.NotContains(t, st.Invoices, "inv_0005")
		assert.Len(t, byInvoice(srv.Charges())["inv_0005"], 1)
		entries, err := os.ReadDir(filepath.Dir(cfg.statePath))
		require.NoError(t, err)
		require.Len(t, entries, 1, "no temporary file is left behind")
		assert.Equal(t, "state.json", entries[0].Name())
	})
	t.Run("rename", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "state.json")
		st := newState("http://127.0.0.1:1", testPeriod)
		require.NoError(t, st.save(path))
		before, err := os.Stat(path)
		require.NoError(t, err)
		st.Invoices["inv_0001"] = &entry{Result: resultCharged, Key: "k", ChargeID: "ch_1"}
		require.NoError(t, st.save(path))
		after, err := os.Stat(path)
		require.NoError(t, err)
		assert.False(t, os.SameFile(before, after), "a new file replaced the old one")
		assert.Equal(t, st, readState(t, path))
	})
	t.Run("failure", func(t *testing.T) {
		// The rename fails (the path is a directory that is not empty):
		// the error says so, and the temporary file is removed.
		dir := t.TempDir()
		path := filepath.Join(dir, "state.json")
		require.NoError(t, os.MkdirAll(filepath.Join(path, "occupied"), 0o755))
		require.Error(t, newState("x", testPeriod).save(path))
		entries, err := os.ReadDir(dir)
		require.NoError(t, err)
		require.Len(t, entries, 1)
		assert.Equal(t, "state.json", entries[0].Name())
	})
}

// Interrupted (Ctrl-C), the batch records the invoice in flight as unknown,
// sends nothing more, and prints what it did; the next run finishes.
func TestInterruptRecordsTheInvoiceInFlight(t *testing.T) {
	srv := mock.NewServer()
	t.Cleanup(srv.Close)
	holding := make(chan struct{})
	release := make(chan struct{})
	require.NoError(t, srv.InjectFault(mock.Fault{
		Kind: mock.Delay, Method: http.MethodPost, Path: "/v1/charges", Holding: holding, Release: release,
	}))
	cfg := testConfig(t, srv.URL, 10)
	cfg.workers = 1

	ctx, cancel := context.WithCancel(t.Context())
	go func() {
		<-holding // inv_0001 reached the gateway and is held there
		cancel()
	}()
	var out, errOut bytes.Buffer
	err := run(ctx, cfg, &out, &errOut)
	close(release)
	t.Logf("run: %v\nstdout:\n%s\nstderr:\n%s", err, out.String(), errOut.String())
	require.ErrorIs(t, err, context.Canceled)
	assert.Equal(t, 1, row(t, out.String(), "outcome unknown"))
	assert.Equal(t, 9, row(t, out.String(), "not sent"))
	assert.Contains(t, out.String(), "stopped early")
	st := readState(t, cfg.statePath)
	require.Len(t, st.Invoices, 1)
	assert.Equal(t, resultUnknown, st.Invoices["inv_0001"].Result)

	stdout, err := runOnce(t, cfg)
	for i := 0; err == nil && row(t, stdout, "outcome unknown") > 0; i++ {
		// The held request may still be finishing: 409, and then unknown.
		require.Less(t, i, 5)
		stdout, err = runOnce(t, cfg)
	}
	require.NoError(t, err)
	requireEachInvoiceChargedOnce(t, srv.Gateway, 10, readState(t, cfg.statePath))
}

// The default: an embedded flaky gateway, a progress bar on stderr only,
// and the summary on stdout. A second run starts over, since the embedded
// gateway of the first is gone.
func TestEmbeddedGateway(t *testing.T) {
	cfg := testConfig(t, "", 40)
	cfg.progress = true
	var out, errOut bytes.Buffer
	require.NoError(t, run(t.Context(), cfg, &out, &errOut))
	stdout := out.String()
	t.Logf("stdout:\n%s", stdout)
	assert.Equal(t, 40, row(t, stdout, "charged (new)")+row(t, stdout, "already charged (replayed)")+
		row(t, stdout, "declined")+row(t, stdout, "outcome unknown"))
	assert.Equal(t, 3, row(t, stdout, "declined"), "inv_0017, inv_0023 and inv_0034")
	assert.Contains(t, stdout, "no invoice charged twice")
	assert.NotContains(t, stdout, "\r", "the progress bar stays off stdout")
	assert.Contains(t, errOut.String(), "(40/40)", "the progress bar ran on stderr")
	assert.Contains(t, errOut.String(), "NOTE: this embedded gateway dies with this process",
		"a rerun would charge again, and the run says so at its start")
	assert.Contains(t, errOut.String(), "-gateway http://127.0.0.1:12111", "…and how to see a replay instead")
	assert.Equal(t, embeddedGateway, readState(t, cfg.statePath).Gateway)

	out.Reset()
	errOut.Reset()
	require.NoError(t, run(t.Context(), cfg, &out, &errOut))
	assert.Contains(t, errOut.String(), "starting the batch over")
	assert.Equal(t, 0, row(t, out.String(), "settled by an earlier run"))
}

// A state file holds charges on one gateway; a run against another refuses
// it rather than skip invoices that gateway never charged.
func TestStateOfAnotherGatewayIsRefused(t *testing.T) {
	srv := mock.NewServer()
	t.Cleanup(srv.Close)
	cfg := testConfig(t, srv.URL, 3)
	require.NoError(t, newState("http://127.0.0.1:12111", testPeriod).save(cfg.statePath))
	_, err := runOnce(t, cfg)
	require.ErrorContains(t, err, "belongs to the gateway at http://127.0.0.1:12111")
	assert.Empty(t, srv.Charges())
}

func TestFlags(t *testing.T) {
	cfg, err := parseFlags([]string{"-gateway", "http://127.0.0.1:12111", "-crash-after", "100"}, new(bytes.Buffer))
	require.NoError(t, err)
	assert.Equal(t, 300, cfg.invoices)
	assert.Equal(t, "billing-state.json", cfg.statePath)
	assert.Equal(t, 100, cfg.crashAfter)

	for _, args := range [][]string{
		{"-gateway", "http://127.0.0.1:12111", "-chaos", "0.5"}, // the embedded gateway's flag
		{"-invoices", "0"},
		{"-chaos", "2"},
		{"-period", "20 26"},
		{"-workers", "0"},
		{"extra"},
	} {
		_, err := parseFlags(args, new(bytes.Buffer))
		assert.Error(t, err, "%q", args)
	}
}
