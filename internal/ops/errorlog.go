package ops

import (
	"context"
	"log"
	"log/slog"
	"net/netip"
	"regexp"
	"strings"
)

// ErrorLog returns a logger for http.Server.ErrorLog that writes each line
// of net/http's own (a TLS handshake error, a panic serving, a bad request
// preface, "http: Accept error") to l as a warning, with every IP address in
// it replaced by "[addr]": those lines name the remote peer, and no ViewPulse
// log line holds a viewer's address (IP_STORAGE).
func ErrorLog(l *slog.Logger) *log.Logger {
	return log.New(errorLogWriter{l}, "", 0)
}

type errorLogWriter struct{ l *slog.Logger }

func (w errorLogWriter) Write(p []byte) (int, error) {
	w.l.Log(context.Background(), slog.LevelWarn, "http server", "detail", RedactAddrs(strings.TrimSpace(string(p))))
	return len(p), nil
}

// ipv6Like finds runs that may be IPv6 addresses (checked before replacing);
// ipv4 finds dotted quads, also the tail of an IPv4-mapped IPv6 address.
var (
	ipv6Like = regexp.MustCompile(`[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?:%[0-9A-Za-z_.-]+)?`)
	ipv4     = regexp.MustCompile(`\d{1,3}(?:\.\d{1,3}){3}`)
)

// RedactAddrs replaces every IPv4 and IPv6 address in s by "[addr]" (ports
// stay).
func RedactAddrs(s string) string {
	s = ipv4.ReplaceAllStringFunc(s, func(m string) string {
		if _, err := netip.ParseAddr(m); err == nil {
			return "[addr]"
		}
		return m
	})
	return ipv6Like.ReplaceAllStringFunc(s, func(m string) string {
		// "::ffff:[addr]" leaves "::ffff:" behind: an address's head.
		if _, err := netip.ParseAddr(m); err == nil || strings.HasSuffix(m, ":") && strings.Contains(m, "::") {
			return "[addr]"
		}
		return m
	})
}
