package api

import (
	"fmt"
	"net/netip"
)

// IPStorage says how much of a viewer's address is kept in the stream and in
// viewer_sessions (IP_STORAGE). The country is looked up from the full
// address before any of it is dropped, and no mode ever logs an address.
type IPStorage string

// The IP_STORAGE modes.
const (
	// IPFull keeps the address as seen (the default; "" means it too).
	IPFull IPStorage = "full"
	// IPTruncated keeps the /24 of an IPv4 address and the /48 of an IPv6
	// one: 203.0.113.77 is kept as 203.0.113.0, 2001:db8:1234:5678::1 as
	// 2001:db8:1234::.
	IPTruncated IPStorage = "truncated"
	// IPNone keeps no address at all.
	IPNone IPStorage = "none"
)

// ParseIPStorage reads full, truncated or none. Errors: anything else.
func ParseIPStorage(s string) (IPStorage, error) {
	switch m := IPStorage(s); m {
	case IPFull, IPTruncated, IPNone:
		return m, nil
	}
	return "", fmt.Errorf("IP storage %q: want full, truncated or none", s)
}

// keep returns what of ip this mode stores: all of it, its network prefix,
// or "" (nothing). The address is stored as PostgreSQL's inet takes it: an
// IPv4-mapped address unmapped, an IPv6 zone (fe80::1%eth0, a link-local
// peer) dropped; one that does not parse is not stored, since the projector
// could not write its row.
func (m IPStorage) keep(ip string) string {
	if m == IPNone {
		return ""
	}
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		return ""
	}
	addr = addr.Unmap().WithZone("")
	switch m {
	case IPTruncated:
		bits := 48
		if addr.Is4() {
			bits = 24
		}
		p, _ := addr.Prefix(bits)
		return p.Addr().String()
	}
	return addr.String()
}
