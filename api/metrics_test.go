package api_test

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/viewpulse/viewpulse/api"
	"github.com/viewpulse/viewpulse/events"
	"github.com/viewpulse/viewpulse/internal/ops"
	"github.com/viewpulse/viewpulse/internal/testutil"
)

// TestMetricsLabelsAreAClosedSet sends requests with invented methods and
// random paths: the HTTP metrics keep a handful of series, and every label
// value comes from a closed set (standard methods or "other", registered
// route templates or "unmatched", the status written).
func TestMetricsLabelsAreAClosedSet(t *testing.T) {
	rdb, prefix := testutil.Redis(t)
	reg := ops.NewRegistry()
	h := api.NewServer(api.Config{Stream: events.NewStream(rdb, prefix, 120*time.Second), Registry: reg})
	r := rand.New(rand.NewPCG(1, 2))
	paths := []string{"/v1/stages", "/v1/viewers/join", "/healthz", "/v1/stages/%s/viewers", "/v1/users/%s/history", "/%s", "/v1/%s/x", "/v1/stages/%s/nope", "/v1/users/%s/history/more", "/v1/stages/%s/", "/v1/stages/%s/viewers/more", "/v1/viewers/join/%s", "/healthz/%s", "/v1/%s"}
	for i := range 500 {
		method := fmt.Sprintf("INVENTED%d", r.Int())
		switch i % 5 {
		case 0:
			method = http.MethodGet
		case 1:
			method = http.MethodDelete
		}
		path := paths[i%len(paths)]
		if strings.Contains(path, "%s") {
			path = fmt.Sprintf(path, fmt.Sprintf("rnd%d", r.Int()))
		}
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(method, path, nil))
	}

	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	t.Logf("/metrics after 500 hostile requests: %d bytes", len(body))

	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	methods := map[string]bool{"GET": true, "HEAD": true, "POST": true, "PUT": true, "PATCH": true, "DELETE": true,
		"OPTIONS": true, "CONNECT": true, "TRACE": true, "other": true}
	routes := map[string]bool{"unmatched": true}
	for _, rt := range h.(*echo.Echo).Routes() {
		routes[rt.Path] = true
	}
	series := 0
	for _, f := range families {
		if !strings.HasPrefix(f.GetName(), "viewpulse_http_") {
			continue
		}
		for _, m := range f.GetMetric() {
			series++
			// No handler of this server (no read API) answers 404: every
			// 404 is the router's, for a path no route matches.
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["status"] == "404" && labels["route"] != "unmatched" {
				t.Errorf("%s: a 404 of the router has route %q", f.GetName(), labels["route"])
			}
			for _, l := range m.GetLabel() {
				switch v := l.GetValue(); l.GetName() {
				case "method":
					if !methods[v] {
						t.Errorf("%s: method label %q is not from the closed set", f.GetName(), v)
					}
				case "route":
					if !routes[v] {
						t.Errorf("%s: route label %q is not a registered route", f.GetName(), v)
					}
				case "status":
					if len(v) != 3 || v < "100" || v > "599" {
						t.Errorf("%s: status label %q", f.GetName(), v)
					}
				default:
					t.Errorf("%s: unexpected label %s=%q", f.GetName(), l.GetName(), v)
				}
			}
		}
	}
	// GET, DELETE and other, on 14 paths or unmatched, with at most two
	// statuses each, in two families: far below this bound.
	if series > 60 {
		t.Fatalf("%d viewpulse_http_* series after 500 hostile requests, want at most 60", series)
	}
}
