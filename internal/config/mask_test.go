package config

import (
	"log/slog"
	"strings"
	"testing"
)

// TestPublicKeyPathsShown: the paths of public key files are logged as they
// are (nothing secret), while API_KEYS stays masked.
func TestPublicKeyPathsShown(t *testing.T) {
	e := NewEnv(vars{"IVS_PUBLIC_KEYS": "/etc/vp/ivs.pem", "VIEWER_TOKEN_PUBLIC_KEYS": "/etc/vp/a.pem,/etc/vp/b.pem",
		"VIEWER_TOKEN_SIGNING_KEY": "/etc/vp/viewer.pem", "API_KEYS": "k1"}.get)
	for _, n := range []string{"IVS_PUBLIC_KEYS", "VIEWER_TOKEN_PUBLIC_KEYS", "VIEWER_TOKEN_SIGNING_KEY", "API_KEYS"} {
		e.String(n, "")
	}
	var sb strings.Builder
	for _, a := range e.LogAttrs() {
		sb.WriteString(a.(slog.Attr).String() + " ")
	}
	s := sb.String()
	for _, want := range []string{"ivs_public_keys=/etc/vp/ivs.pem", "viewer_token_public_keys=/etc/vp/a.pem,/etc/vp/b.pem",
		"viewer_token_signing_key=/etc/vp/viewer.pem", "api_keys=***"} {
		if !strings.Contains(s, want) {
			t.Errorf("log attrs lack %s: %s", want, s)
		}
	}
}

// TestURLListPasswordsMasked: each URL of a comma-separated list (WEBHOOK_URLS)
// has its password masked; the rest is shown.
func TestURLListPasswordsMasked(t *testing.T) {
	got := mask("WEBHOOK_URLS", "https://hooks.example.com/a,https://bob:hunter2@example.org/b")
	if want := "https://hooks.example.com/a,https://bob:***@example.org/b"; got != want {
		t.Fatalf("mask = %q, want %q", got, want)
	}
}
