package payonce_test

import (
	"bufio"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestREADMECodeCompiles keeps every Go block of the README true: each one
// is preceded by a "<!-- snippet: FILE -->" comment naming the example
// program or Example function that holds the same lines, which the build
// compiles and the tests run. Edit the code there first, then the README.
func TestREADMECodeCompiles(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	require.NoError(t, err)

	marker := regexp.MustCompile(`^<!-- snippet: (\S+) -->$`)
	var (
		source  string // the file the next block must come from
		inBlock bool
		block   []string
		blocks  int
	)
	sc := bufio.NewScanner(strings.NewReader(string(readme)))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		switch {
		case inBlock && line == "```":
			inBlock = false
			blocks++
			checkSnippet(t, source, block)
			source = ""
		case inBlock:
			block = append(block, line)
		case line == "```go":
			require.NotEmpty(t, source, "README.md:%d: a Go block without a <!-- snippet: FILE --> comment before it", n)
			inBlock, block = true, nil
		case marker.MatchString(line):
			source = marker.FindStringSubmatch(line)[1]
		}
	}
	require.NoError(t, sc.Err())
	assert.GreaterOrEqual(t, blocks, 6, "the README's Go blocks were found")
}

// checkSnippet asserts that the lines of block appear, in order and
// together, in file, ignoring indentation, alignment and blank lines.
func checkSnippet(t *testing.T, file string, block []string) {
	t.Helper()
	src, err := os.ReadFile(file)
	require.NoError(t, err, "snippet source")
	want := normalize(block)
	have := normalize(strings.Split(string(src), "\n"))
	require.NotEmpty(t, want)
	for i := 0; i+len(want) <= len(have); i++ {
		if equal(have[i:i+len(want)], want) {
			return
		}
	}
	t.Errorf("README block starting %q is not in %s: update one to match the other", want[0], file)
}

func normalize(lines []string) []string {
	var out []string
	for _, l := range lines {
		if l = strings.Join(strings.Fields(l), " "); l != "" {
			out = append(out, l)
		}
	}
	return out
}

func equal(a, b []string) bool {
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
