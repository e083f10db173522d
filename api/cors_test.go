package api_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/viewpulse/viewpulse/api"
	"github.com/viewpulse/viewpulse/internal/ops"
)

func withCORS(origins ...string) func(*api.Config) {
	return func(c *api.Config) { c.CORSOrigins = origins; c.Registry = ops.NewRegistry() }
}

// preflight sends a browser's CORS preflight for a POST with a JSON body and
// a bearer token.
func (h *harness) preflight(path, origin, method string) answer {
	h.t.Helper()
	return h.do(http.MethodOptions, path, "", "", "Origin", origin,
		"Access-Control-Request-Method", method, "Access-Control-Request-Headers", "content-type,authorization")
}

func hasVaryOrigin(hd http.Header) bool {
	for _, v := range hd.Values("Vary") {
		for _, f := range strings.Split(v, ",") {
			if strings.TrimSpace(f) == "Origin" {
				return true
			}
		}
	}
	return false
}

// TestCORSPlayerPreflight: a real preflight of the join from a listed origin
// gets 204 with the methods, headers and max-age; from an unlisted origin 204
// without Access-Control-Allow-Origin (the browser then refuses); never 405.
func TestCORSPlayerPreflight(t *testing.T) {
	h := newHarness(t, withCORS("https://player.example.com"), func(c *api.Config) { c.APIKeys = []string{"k"} })
	for _, path := range []string{"/v1/viewers/join", "/v1/viewers/heartbeat", "/v1/viewers/leave", "/sdk/v1/viewpulse.js"} {
		a := h.preflight(path, "https://player.example.com", "POST")
		hd := a.header
		if a.status != http.StatusNoContent || hd.Get("Access-Control-Allow-Origin") != "https://player.example.com" ||
			!strings.Contains(hd.Get("Access-Control-Allow-Methods"), "POST") ||
			!strings.Contains(hd.Get("Access-Control-Allow-Headers"), "Content-Type") ||
			!strings.Contains(hd.Get("Access-Control-Allow-Headers"), "Authorization") ||
			hd.Get("Access-Control-Max-Age") != "7200" || !hasVaryOrigin(hd) {
			t.Errorf("preflight %s from a listed origin: %d %v", path, a.status, hd)
		}
		a = h.preflight(path, "https://evil.example.net", "POST")
		if a.status != http.StatusNoContent || a.header.Get("Access-Control-Allow-Origin") != "" || !hasVaryOrigin(a.header) {
			t.Errorf("preflight %s from an unlisted origin: %d %v", path, a.status, a.header)
		}
	}

	// The request itself: the listed origin is echoed, Retry-After exposed.
	a := h.do(http.MethodPost, "/v1/viewers/join", "application/json", `{"stage_arn":"`+stage+`","user_id":"u"}`, "Origin", "https://player.example.com")
	if a.status != 200 || a.header.Get("Access-Control-Allow-Origin") != "https://player.example.com" ||
		a.header.Get("Access-Control-Expose-Headers") != "Retry-After" || !hasVaryOrigin(a.header) {
		t.Fatalf("join from a listed origin: %d %v", a.status, a.header)
	}
	a = h.do(http.MethodPost, "/v1/viewers/join", "application/json", `{"stage_arn":"`+stage+`","user_id":"u"}`, "Origin", "https://evil.example.net")
	if a.status != 200 || a.header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("join from an unlisted origin: %d %v", a.status, a.header)
	}
}

// TestCORSDefaultStar: with no CORS_ORIGINS every origin may call the player
// routes, but "*" never opens the read routes.
func TestCORSDefaultStar(t *testing.T) {
	h := newHarness(t) // CORSOrigins nil: "*"
	a := h.preflight("/v1/viewers/join", "https://anyone.example", "POST")
	if a.status != 204 || a.header.Get("Access-Control-Allow-Origin") != "*" || !hasVaryOrigin(a.header) {
		t.Fatalf("preflight with the default: %d %v", a.status, a.header)
	}
	a = h.do(http.MethodGet, "/v1/stages", "", "", "Origin", "https://anyone.example")
	if a.status != 200 || a.header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("read route with CORS_ORIGINS=*: %d %v", a.status, a.header)
	}
	a = h.preflight("/v1/stages", "https://anyone.example", "GET")
	if a.header.Get("Access-Control-Allow-Origin") != "" || a.status == http.StatusMethodNotAllowed {
		t.Fatalf("read-route preflight with CORS_ORIGINS=*: %d %v", a.status, a.header)
	}
}

// TestCORSReadRoutesListedOnly: a read route answers CORS to an origin listed
// explicitly, with the route's own methods, and to nobody else, even with
// "*" in the list; the preflight passes API_KEYS (browsers send no
// Authorization on it).
func TestCORSReadRoutesListedOnly(t *testing.T) {
	h := newHarness(t, withCORS("*", "https://ops.example.com"), func(c *api.Config) { c.APIKeys = []string{"k"} })
	a := h.preflight("/v1/stages", "https://ops.example.com", "GET")
	if a.status != 204 || a.header.Get("Access-Control-Allow-Origin") != "https://ops.example.com" ||
		!strings.Contains(a.header.Get("Access-Control-Allow-Methods"), "GET") ||
		strings.Contains(a.header.Get("Access-Control-Allow-Methods"), "POST") ||
		!strings.Contains(a.header.Get("Access-Control-Allow-Headers"), "Authorization") || !hasVaryOrigin(a.header) {
		t.Fatalf("read preflight from the listed origin: %d %v", a.status, a.header)
	}
	a = h.do(http.MethodGet, "/v1/stages", "", "", "Origin", "https://ops.example.com", "Authorization", "Bearer k")
	if a.status != 200 || a.header.Get("Access-Control-Allow-Origin") != "https://ops.example.com" {
		t.Fatalf("read from the listed origin: %d %v", a.status, a.header)
	}
	for _, origin := range []string{"https://anyone.example", "https://ops.example.com.evil.net"} {
		a = h.do(http.MethodGet, "/v1/stages", "", "", "Origin", origin, "Authorization", "Bearer k")
		if a.status != 200 || a.header.Get("Access-Control-Allow-Origin") != "" {
			t.Errorf("read from %s: %d %v", origin, a.status, a.header)
		}
		a = h.preflight("/v1/stages", origin, "GET")
		if a.header.Get("Access-Control-Allow-Origin") != "" {
			t.Errorf("read preflight from %s: %d %v", origin, a.status, a.header)
		}
	}
	// The player routes take "*" from the same list.
	if a := h.preflight("/v1/viewers/heartbeat", "https://anyone.example", "POST"); a.header.Get("Access-Control-Allow-Origin") != "*" {
		t.Fatalf("player preflight: %d %v", a.status, a.header)
	}
}

// TestCORSMetricLabelsClosed: preflights, unknown paths and invented methods
// leave the method and route labels of /metrics a closed set.
func TestCORSMetricLabelsClosed(t *testing.T) {
	h := newHarness(t, withCORS("*"))
	h.preflight("/v1/viewers/join", "https://a.example", "POST")
	h.preflight("/sdk/v1/nothing-yet.js", "https://a.example", "GET")
	h.do("BREW", "/v1/viewers/join", "application/json", "{}")
	h.do(http.MethodGet, "/no/such/"+stage, "", "")
	m := h.metrics()
	for _, want := range []string{
		`viewpulse_http_requests_total{method="OPTIONS",route="/v1/viewers/join",status="204"} 1`,
		`method="other",route="/v1/viewers/join",status="405"`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	for _, line := range strings.Split(m, "\n") {
		if strings.HasPrefix(line, "viewpulse_http_requests_total{") &&
			(strings.Contains(line, "BREW") || strings.Contains(line, "nothing-yet") || strings.Contains(line, "/no/such")) {
			t.Errorf("open label value: %s", line)
		}
	}
}
