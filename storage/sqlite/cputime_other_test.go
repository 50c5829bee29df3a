//go:build !unix

package sqlite

import "time"

// processCPU is not available here; benchmarks then omit CPU per operation.
func processCPU() (time.Duration, bool) { return 0, false }
