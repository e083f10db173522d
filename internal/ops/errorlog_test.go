package ops_test

import (
	"bytes"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/viewpulse/viewpulse/internal/ops"
	"github.com/viewpulse/viewpulse/internal/testutil"
)

func TestRedactAddrs(t *testing.T) {
	cases := map[string]string{
		"http: TLS handshake error from 203.0.113.77:51234: EOF":        "http: TLS handshake error from [addr]:51234: EOF",
		"http: panic serving [2001:db8:1234:5678::1]:443: boom":         "http: panic serving [[addr]]:443: boom",
		"read tcp 127.0.0.1:8080->198.51.100.9:4000: i/o timeout":       "read tcp [addr]:8080->[addr]:4000: i/o timeout",
		"from [::ffff:203.0.113.7]:9 and fe80::1%eth0":                  "from [[addr][addr]]:9 and [addr]",
		"http: Accept error: accept tcp [::]:8080: too many open files": "http: Accept error: accept tcp [[addr]]:8080: too many open files",
		"retrying in 5ms at 12:34:56, version 1.2.3, 10 a:b":            "retrying in 5ms at 12:34:56, version 1.2.3, 10 a:b",
	}
	for in, want := range cases {
		if got := ops.RedactAddrs(in); got != want {
			t.Errorf("RedactAddrs(%q)\n = %q\nwant %q", in, got, want)
		}
	}
}

// TestErrorLogHidesPeer: a real TLS handshake failure, logged by net/http
// through ErrorLog, names no address.
func TestErrorLogHidesPeer(t *testing.T) {
	var buf testutil.Buffer
	srv := httptest.NewUnstartedServer(http.NotFoundHandler())
	srv.Config.ErrorLog = ops.ErrorLog(slog.New(slog.NewJSONHandler(&buf, nil)))
	srv.StartTLS()
	t.Cleanup(srv.Close)
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	local := conn.LocalAddr().(*net.TCPAddr).IP.String()
	conn.Write([]byte("GET / HTTP/1.1\r\n\r\n")) // not a TLS hello
	var b [1]byte
	conn.Read(b[:])
	conn.Close()
	// net/http logs the failed handshake once it gives up on it.
	testutil.Eventually(t, 5*time.Second, func() (bool, string) {
		return strings.Contains(buf.String(), "handshake"), buf.String()
	})
	if out := buf.String(); strings.Contains(out, local) || !bytes.Contains([]byte(out), []byte("[addr]")) {
		t.Fatalf("error log names the peer %s:\n%s", local, out)
	}
}
