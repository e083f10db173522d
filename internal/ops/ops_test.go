package ops_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/viewpulse/viewpulse/internal/ops"
	"github.com/viewpulse/viewpulse/internal/testutil"
	"github.com/viewpulse/viewpulse/store"
)

// TestReadyzNamesOnlyTheFailingDependency: /readyz is open, so with
// PostgreSQL down it names the dependency and nothing of its error (user,
// database, address).
func TestReadyzNamesOnlyTheFailingDependency(t *testing.T) {
	rdb, _ := testutil.Redis(t)
	port := testutil.FreePort(t)
	down, err := store.Connect(fmt.Sprintf("postgres://viewpulse_secret_user@127.0.0.1:%d/secret_db?sslmode=disable", port), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(down.Close)
	checks := map[string]ops.Check{"redis": func(ctx context.Context) error { return rdb.Ping(ctx).Err() }, "postgres": down.Ping}
	var logs testutil.Buffer
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	rec := httptest.NewRecorder()
	ops.Readyz(checks, log)(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))

	body := rec.Body.String()
	if rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("readyz = %d %s", rec.Code, body)
	}
	for _, secret := range []string{"viewpulse_secret_user", "secret_db", "127.0.0.1", fmt.Sprint(port)} {
		if strings.Contains(body, secret) {
			t.Errorf("readyz shows %q: %s", secret, body)
		}
	}
	var got struct {
		Error  struct{ Code, Message string }
		Failed []string
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil || got.Error.Code != "dependency_unavailable" ||
		len(got.Failed) != 1 || got.Failed[0] != "postgres" {
		t.Fatalf("readyz = %s (%v)", body, err)
	}
	// The operator finds the whole error in the log, at warn.
	if l := logs.String(); !strings.Contains(l, `"level":"WARN"`) || !strings.Contains(l, `"dependency":"postgres"`) ||
		!strings.Contains(l, "secret_db") || strings.Contains(l, `"dependency":"redis"`) {
		t.Fatalf("log = %s", l)
	}
}
