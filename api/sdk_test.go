package api_test

import (
	"io"
	"net/http"
	"testing"

	"github.com/viewpulse/viewpulse/api"
	"github.com/viewpulse/viewpulse/sdk"
)

// TestSDKFiles: both SDK files are served as embedded, cacheable for a year,
// with a content-hash ETag that answers 304, and open to every origin.
func TestSDKFiles(t *testing.T) {
	h := newHarness(t, func(c *api.Config) { c.APIKeys = []string{"k"} }) // open even with API keys
	etags := map[string]bool{}
	for path, want := range map[string][]byte{"/sdk/v1/viewpulse.js": sdk.IIFE, "/sdk/v1/viewpulse.mjs": sdk.ESM} {
		req, _ := http.NewRequest(http.MethodGet, h.srv.URL+path, nil)
		req.Header.Set("Origin", "https://player.example.com")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		hd := resp.Header
		if resp.StatusCode != 200 || string(body) != string(want) || len(want) == 0 {
			t.Fatalf("GET %s: %d, %d bytes (want the embedded %d)", path, resp.StatusCode, len(body), len(want))
		}
		if hd.Get("Content-Type") != "text/javascript; charset=utf-8" ||
			hd.Get("Cache-Control") != "public, max-age=31536000, immutable" ||
			hd.Get("Access-Control-Allow-Origin") != "*" || len(hd.Get("ETag")) < 10 {
			t.Errorf("GET %s headers: %v", path, hd)
		}
		etags[hd.Get("ETag")] = true

		if s := revalidate(t, h.srv.URL+path, hd.Get("ETag")); s != http.StatusNotModified {
			t.Errorf("GET %s with its ETag: %d, want 304", path, s)
		}
		if s := revalidate(t, h.srv.URL+path, `"stale"`); s != 200 {
			t.Errorf("GET %s with another ETag: %d, want 200", path, s)
		}
	}
	if len(etags) != 2 {
		t.Errorf("the two files share an ETag: %v", etags)
	}
}

// revalidate GETs url with If-None-Match: etag and returns the status.
func revalidate(t *testing.T, url, etag string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("If-None-Match", etag)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
