//go:build unix

package main

import (
	"fmt"
	"syscall"
)

// raiseFDLimit raises the soft RLIMIT_NOFILE to the hard limit, since every
// simulated device in load mode holds its own socket, and returns the
// limits now in force. (The Go runtime does the same at start-up on most
// platforms; doing it here too makes the limit known for the report.)
func raiseFDLimit() (soft, hard uint64, err error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, 0, fmt.Errorf("getrlimit: %w", err)
	}
	if lim.Cur < lim.Max {
		raised := lim
		raised.Cur = raised.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &raised); err != nil {
			return uint64(lim.Cur), uint64(lim.Max), fmt.Errorf("setrlimit: %w", err)
		}
		lim = raised
	}
	return uint64(lim.Cur), uint64(lim.Max), nil
}
