package testutil

import (
	"os"
	"os/exec"
	"testing"
)

// Chromium returns the path of a Chromium to drive headless: CHROMIUM_PATH,
// else chromium or chromium-browser on PATH, else /usr/bin/chromium. When
// none is there the test is skipped, or fails under VIEWPULSE_REQUIRE_SERVICES
// (CI installs Debian's chromium).
func Chromium(tb testing.TB) string {
	tb.Helper()
	if p := os.Getenv("CHROMIUM_PATH"); p != "" {
		if _, err := os.Stat(p); err != nil {
			unavailable(tb, "CHROMIUM_PATH=%s: %v", p, err)
		}
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if _, err := os.Stat("/usr/bin/chromium"); err == nil {
		return "/usr/bin/chromium"
	}
	unavailable(tb, "no Chromium found (CHROMIUM_PATH, chromium on PATH, /usr/bin/chromium); apt-get install -y chromium")
	return ""
}
