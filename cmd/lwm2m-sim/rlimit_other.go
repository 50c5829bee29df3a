//go:build !unix

package main

// raiseFDLimit is a no-op where there is no RLIMIT_NOFILE; 0 means unknown.
func raiseFDLimit() (soft, hard uint64, err error) { return 0, 0, nil }
