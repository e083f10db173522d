package projector

import (
	"bufio"
	"os"
	"strings"
	"testing"
)

type uaCase struct{ device, os, browser, ua string }

// loadUserAgents reads testdata/useragents.tsv: device type, OS, browser
// (as a person reads the string; "" when there is none) and the string.
func loadUserAgents(tb testing.TB) []uaCase {
	tb.Helper()
	f, err := os.Open("testdata/useragents.tsv")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { f.Close() })
	var out []uaCase
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if l := sc.Text(); l != "" && !strings.HasPrefix(l, "#") {
			p := strings.SplitN(l, "\t", 4)
			if len(p) != 4 {
				tb.Fatalf("bad line %q", l)
			}
			out = append(out, uaCase{p[0], p[1], p[2], p[3]})
		}
	}
	if len(out) < 30 {
		tb.Fatalf("only %d user agents", len(out))
	}
	return out
}

// sameName compares a parsed name with the sample's, across the library's
// spellings.
func sameName(got, want string) bool {
	alias := map[string]string{"samsung browser": "samsung internet", "amazon silk": "silk"}
	n := func(s string) string {
		s = strings.ToLower(s)
		if a, ok := alias[s]; ok {
			return a
		}
		return s
	}
	return n(got) == n(want)
}

// TestParseUserAgentSample holds the classification to what it achieved
// when the library was chosen: every bot found and no viewer taken for one,
// at least 29 of 32 device types right, and the OS and browser of most
// viewers. Android tablets without "Tablet" in the string are taken for
// phones (every library compared does so).
func TestParseUserAgentSample(t *testing.T) {
	var devices, oses, nOS, browsers, nBrowser int
	cases := loadUserAgents(t)
	for _, c := range cases {
		got := ParseUserAgent(c.ua)
		if (got.DeviceType == DeviceBot) != (c.device == DeviceBot) {
			t.Errorf("%q: device %s, want %s", c.ua, got.DeviceType, c.device)
		}
		if got.DeviceType == c.device {
			devices++
		} else {
			t.Logf("miss %q: device %s, want %s", c.ua, got.DeviceType, c.device)
		}
		if c.device == DeviceBot {
			if got.OS != "" || got.Browser != "" {
				t.Errorf("%q: bot with os %q browser %q", c.ua, got.OS, got.Browser)
			}
			continue
		}
		if c.os != "" {
			nOS++
			if sameName(got.OS, c.os) {
				oses++
			} else {
				t.Logf("miss %q: os %q, want %q", c.ua, got.OS, c.os)
			}
		}
		if c.browser != "" {
			nBrowser++
			if sameName(got.Browser, c.browser) {
				browsers++
			} else {
				t.Logf("miss %q: browser %q, want %q", c.ua, got.Browser, c.browser)
			}
		}
	}
	t.Logf("device %d/%d, os %d/%d, browser %d/%d", devices, len(cases), oses, nOS, browsers, nBrowser)
	if devices < len(cases)-3 || oses < nOS || browsers < nBrowser-2 {
		t.Errorf("accuracy fell: device %d/%d, os %d/%d, browser %d/%d", devices, len(cases), oses, nOS, browsers, nBrowser)
	}
}

func TestParseUserAgentEdges(t *testing.T) {
	if c := ParseUserAgent(""); c != (Client{DeviceType: DeviceOther}) {
		t.Errorf("empty = %+v", c)
	}
	if c := ParseUserAgent(`x"y,z`); c.DeviceType == "" || len(c.OS) > maxName || len(c.Browser) > maxName {
		t.Errorf("junk = %+v", c)
	}
}

// BenchmarkParseUserAgent is the cost of one classification over the sample.
func BenchmarkParseUserAgent(b *testing.B) {
	cases := loadUserAgents(b)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		ParseUserAgent(cases[i%len(cases)].ua)
	}
}
