//go:build !unix

package mock_test

import (
	"testing"
	"time"
)

// processCPU is -1 where getrusage is missing: no cpu-ns/op is reported.
func processCPU(*testing.B) time.Duration { return -1 }
