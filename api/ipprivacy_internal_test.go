package api

import "testing"

// What each mode keeps is an address PostgreSQL's inet accepts: a zone or an
// IPv4-mapped form from a peer would get the join's row refused later.
func TestIPStorageKeepsInetText(t *testing.T) {
	for _, tc := range []struct {
		mode     IPStorage
		ip, want string
	}{
		{IPFull, "203.0.113.77", "203.0.113.77"},
		{IPFull, "fe80::1%eth0", "fe80::1"},
		{IPFull, "::ffff:203.0.113.77", "203.0.113.77"},
		{IPFull, "not-an-address", ""},
		{"", "2001:db8::1", "2001:db8::1"},
		{IPTruncated, "fe80::1:2:3:4%eth0", "fe80::"},
		{IPTruncated, "::ffff:203.0.113.77", "203.0.113.0"},
		{IPNone, "203.0.113.77", ""},
	} {
		if got := tc.mode.keep(tc.ip); got != tc.want {
			t.Errorf("%q.keep(%q) = %q, want %q", tc.mode, tc.ip, got, tc.want)
		}
	}
}
