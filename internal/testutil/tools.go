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

// Node returns the path of node, or skips tb (fails under RequireEnv).
func Node(tb testing.TB) string {
	tb.Helper()
	p, err := exec.LookPath("node")
	if err != nil {
		unavailable(tb, "no node on PATH")
	}
	return p
}

// RequireFile skips tb (fails under RequireEnv) with hint when path does not
// exist: a file that a build step outside go test makes.
func RequireFile(tb testing.TB, path, hint string) {
	tb.Helper()
	if _, err := os.Stat(path); err != nil {
		unavailable(tb, "%s: %v (%s)", path, err, hint)
	}
}
