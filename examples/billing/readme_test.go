package main

import (
	"bufio"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// readmeRecipe returns the commands of the README's crash-and-rerun recipe,
// each split into its words without the comment: the standalone mock, the
// run that crashes, the rerun.
func readmeRecipe(t *testing.T) [][]string {
	t.Helper()
	readme, err := os.ReadFile("../../README.md")
	require.NoError(t, err)
	_, section, found := strings.Cut(string(readme), "**Crash the billing batch, run it again.**")
	require.True(t, found, "the README has no crash-and-rerun recipe")
	_, block, found := strings.Cut(section, "```sh\n")
	require.True(t, found)
	block, _, _ = strings.Cut(block, "```")
	var cmds [][]string
	for line := range strings.Lines(block) {
		line, _, _ = strings.Cut(line, "#")
		if words := strings.Fields(line); len(words) > 0 {
			cmds = append(cmds, words)
		}
	}
	require.Len(t, cmds, 3, "the recipe: the mock, the run that crashes, the rerun")
	return cmds
}

// The README's crash-and-rerun recipe, command for command: the standalone
// mock in one process, a batch that dies after 100 charges, and the rerun,
// which replays the charge the crash left unsaved and charges no invoice
// twice. Only the mock's port differs (a free one, not 12111).
func TestREADMECrashAndRerunRecipe(t *testing.T) {
	if testing.Short() {
		t.Skip("builds two programs and runs a 300-invoice batch")
	}
	cmds := readmeRecipe(t)
	for i, c := range cmds {
		require.GreaterOrEqual(t, len(c), 3, "command %d: %q", i, c)
		require.Equal(t, "go", c[0], "command %d", i)
		require.Equal(t, "run", c[1], "command %d", i)
	}
	require.Equal(t, "./cmd/payonce-mock", cmds[0][2])
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("no go command to build the programs with: %v", err)
	}
	mockBin := buildPackage(t, goTool, "../../cmd/payonce-mock", "payonce-mock")
	billingBin := buildBinary(t)

	// Terminal 1: the mock, on a free port.
	mockCmd := exec.CommandContext(t.Context(), mockBin, append(cmds[0][3:], "-addr", "127.0.0.1:0")...)
	logs, err := mockCmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, mockCmd.Start())
	t.Cleanup(func() {
		mockCmd.Process.Signal(os.Interrupt)
		mockCmd.Wait()
	})
	lines := bufio.NewReader(logs)
	first, err := lines.ReadString('\n')
	require.NoError(t, err, "the mock's first line")
	url, found := strings.CutPrefix(strings.TrimSpace(first), "payonce-mock: listening on ")
	require.True(t, found, "the mock's first line: %q", first)
	go io.Copy(io.Discard, lines) // its request log

	// Terminal 2, in a directory of its own for the state file.
	dir := t.TempDir()
	batch := func(c []string) (code int, stdout, stderr string) {
		require.Equal(t, "./examples/billing", c[2])
		args := make([]string, 0, len(c)-3)
		for _, a := range c[3:] {
			args = append(args, strings.ReplaceAll(a, "http://127.0.0.1:12111", url))
		}
		return execBatchIn(t, dir, billingBin, args...)
	}
	start := time.Now()
	code, stdout, stderr := batch(cmds[1])
	require.Equal(t, exitCrash, code, "the first run dies on purpose")
	assert.Empty(t, stdout)
	assert.Contains(t, stderr, "crashing on purpose after 100 charges")

	code, stdout, _ = batch(cmds[2])
	require.Equal(t, 0, code, "the rerun completes")
	assert.GreaterOrEqual(t, row(t, stdout, "already charged (replayed)"), 1,
		"the charge the crash left unsaved is replayed, not made again")
	assert.GreaterOrEqual(t, row(t, stdout, "settled by an earlier run"), 99)
	for i := 0; row(t, stdout, "outcome unknown") > 0; i++ {
		require.Less(t, i, 5, "unknown outcomes are settled by rerunning")
		code, stdout, _ = batch(cmds[2])
		require.Equal(t, 0, code)
	}
	assert.Contains(t, stdout, "no invoice charged twice")

	st := readState(t, dir+"/billing-state.json")
	declined := 0
	for _, e := range st.Invoices {
		if e.Result == resultDeclined {
			declined++
		} else {
			assert.Equal(t, resultCharged, e.Result)
		}
	}
	assert.Len(t, st.Invoices, 300)
	assert.Equal(t, countDeclines(300), declined)
	t.Logf("the recipe took %v", time.Since(start).Round(time.Millisecond))
}
