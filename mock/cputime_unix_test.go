//go:build unix

package mock_test

import (
	"syscall"
	"testing"
	"time"
)

// processCPU is the CPU time this process has spent, user and system,
// garbage collection included: what a request costs, however busy the
// machine's other processes keep its cores.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
