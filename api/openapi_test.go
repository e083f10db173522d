package api

import (
	"encoding/json"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"

	"github.com/viewpulse/viewpulse/events"
	"github.com/viewpulse/viewpulse/internal/ops"
	"github.com/viewpulse/viewpulse/store"
)

// TestOpenAPIDocumentsEveryRoute checks that every route the server
// registers (read API on, metrics on) is in openapi.json and every documented
// operation is registered, and that every $ref resolves.
func TestOpenAPIDocumentsEveryRoute(t *testing.T) {
	db, err := store.Connect("postgres://nobody@127.0.0.1:1/none", store.Options{}) // never contacted
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	h := NewServer(Config{Stream: events.NewStream(nil, "vp", 0), ReadDB: db, Registry: ops.NewRegistry()})
	param := regexp.MustCompile(`:([a-z_]+)`)
	registered := map[string]bool{}
	for _, r := range h.(*echo.Echo).Routes() {
		registered[r.Method+" "+param.ReplaceAllString(r.Path, "{$1}")] = true
	}

	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(openAPI, &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	methods := map[string]bool{"get": true, "put": true, "post": true, "delete": true, "patch": true, "head": true, "options": true}
	documented := map[string]bool{}
	for path, item := range doc.Paths {
		for m := range item {
			if methods[m] {
				documented[strings.ToUpper(m)+" "+path] = true
			}
		}
	}
	for _, r := range sorted(registered) {
		if !documented[r] {
			t.Errorf("registered but not documented: %s", r)
		}
	}
	for _, r := range sorted(documented) {
		if !registered[r] {
			t.Errorf("documented but not registered: %s", r)
		}
	}
	if len(registered) < 17 {
		t.Errorf("only %d routes registered: %v", len(registered), sorted(registered))
	}

	var all map[string]any
	_ = json.Unmarshal(openAPI, &all)
	for _, ref := range regexp.MustCompile(`"\$ref":\s*"#/([^"]+)"`).FindAllStringSubmatch(string(openAPI), -1) {
		var node any = all
		for _, part := range strings.Split(ref[1], "/") {
			m, _ := node.(map[string]any)
			node = m[part]
		}
		if node == nil {
			t.Errorf("$ref #/%s does not resolve", ref[1])
		}
	}
}

func sorted(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
