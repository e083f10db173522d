package testutil

import (
	"os"
	"os/exec"
	"testing"
)

// Chromium returns the path of a Chromium (CHROMIUM, else chromium or
// chromium-browser on PATH) for end-to-end tests in a real browser, or
// skips tb, failing it under RequireEnv like a missing service.
func Chromium(tb testing.TB) string {
	tb.Helper()
	if p := os.Getenv("CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	unavailable(tb, "no Chromium (set CHROMIUM, or apt-get install -y chromium)")
	return ""
}
