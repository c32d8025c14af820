//go:build !unix

package payonce

import "time"

// processCPU is 0 where getrusage is missing: BenchmarkOverhead then reports
// only the wall-time ratios.
func processCPU() time.Duration { return 0 }
