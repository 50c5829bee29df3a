package subscriptions

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
	"time"
)

// destinations is the operator's allow-list of webhook destinations
// (Config.AllowedDestinations). The zero value allows every destination.
type destinations struct {
	names    []string       // exact host names, lower case
	suffixes []string       // ".example.com" from "*.example.com"
	nets     []netip.Prefix // IP addresses (as /32 or /128) and networks
}

// newDestinations parses the allow-list: entries that parse as an IP
// address or a CIDR network are networks, "*.domain" is a domain wildcard,
// anything else a host name.
func newDestinations(list []string) *destinations {
	d := &destinations{}
	for _, raw := range list {
		e := strings.ToLower(strings.TrimSpace(raw))
		switch {
		case e == "":
		case strings.HasPrefix(e, "*."):
			d.suffixes = append(d.suffixes, e[1:])
		default:
			if p, err := netip.ParsePrefix(e); err == nil {
				d.nets = append(d.nets, p.Masked())
			} else if a, err := netip.ParseAddr(e); err == nil {
				d.nets = append(d.nets, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
			} else {
				d.names = append(d.names, e)
			}
		}
	}
	return d
}

func (d *destinations) open() bool {
	return len(d.names) == 0 && len(d.suffixes) == 0 && len(d.nets) == 0
}

// nameAllowed reports whether host is allowed by name (exact or wildcard).
func (d *destinations) nameAllowed(host string) bool {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	for _, n := range d.names {
		if host == n {
			return true
		}
	}
	for _, s := range d.suffixes {
		if strings.HasSuffix(host, s) && len(host) > len(s) {
			return true
		}
	}
	return false
}

// addrAllowed reports whether an IP address is in an allowed network.
func (d *destinations) addrAllowed(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range d.nets {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// checkURL validates a webhook URL: absolute http(s) with a host, and
// allowed. A host name that is not allowed by name is resolved here so that
// an operator sees the refusal when the subscription is made; the dialer
// checks the address again when connecting (the name may resolve
// differently by then).
func (d *destinations) checkURL(ctx context.Context, raw string) error {
	if raw == "" {
		return errors.New("a webhook URL is required")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("not a URL: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("must be an absolute http or https URL, not %q", raw)
	}
	host := u.Hostname()
	if host == "" {
		return fmt.Errorf("has no host: %q", raw)
	}
	if d.open() || d.nameAllowed(host) {
		return nil
	}
	if a, err := netip.ParseAddr(host); err == nil {
		if d.addrAllowed(a) {
			return nil
		}
		return fmt.Errorf("destination %s is not in the server's allowed webhook destinations", host)
	}
	addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil || len(addrs) == 0 {
		return fmt.Errorf("destination %s is not in the server's allowed webhook destinations (and does not resolve)", host)
	}
	for _, a := range addrs {
		if !d.addrAllowed(a) {
			return fmt.Errorf("destination %s resolves to %s, which is not in the server's allowed webhook destinations", host, a)
		}
	}
	return nil
}

// errForbiddenDestination is a connection refused by the allow-list.
var errForbiddenDestination = errors.New("webhook destination not allowed")

// dialer returns the DialContext of webhook connections: with an
// allow-list, a host not allowed by name may only connect to an address in
// an allowed network, checked on the address actually dialled.
func (d *destinations) dialer() func(ctx context.Context, network, addr string) (net.Conn, error) {
	plain := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	if d.open() {
		return plain.DialContext
	}
	checked := &net.Dialer{Timeout: plain.Timeout, KeepAlive: plain.KeepAlive,
		Control: func(_, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil || !d.addrAllowed(ap.Addr()) {
				return fmt.Errorf("%w: %s", errForbiddenDestination, address)
			}
			return nil
		}}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, _, err := net.SplitHostPort(addr)
		if err == nil && d.nameAllowed(host) {
			return plain.DialContext(ctx, network, addr)
		}
		return checked.DialContext(ctx, network, addr)
	}
}
