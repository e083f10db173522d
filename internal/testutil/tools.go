package testutil

import (
	"os"
	"os/exec"
	"testing"
)

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
