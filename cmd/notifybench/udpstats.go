package main

import (
	"os"
	"strconv"
	"strings"
)

// udpRcvbufErrors returns the kernel's count of UDP datagrams dropped
// because a socket's receive buffer was full (Linux, all sockets of the
// host), and false where it is not available. Notifications a server does
// not read fast enough are lost there, before the server sees them.
func udpRcvbufErrors() (int64, bool) {
	b, err := os.ReadFile("/proc/net/snmp")
	if err != nil {
		return 0, false
	}
	var header []string
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, "Udp: ") {
			continue
		}
		fields := strings.Fields(line)
		if header == nil {
			header = fields
			continue
		}
		for i, name := range header {
			if name == "RcvbufErrors" && i < len(fields) {
				n, err := strconv.ParseInt(fields[i], 10, 64)
				return n, err == nil
			}
		}
		return 0, false
	}
	return 0, false
}
