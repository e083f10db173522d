package sdk_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/viewpulse/viewpulse/internal/testutil"
)

// TestReadAPIClientFromNode: the typed client (@viewpulse/player/api, built
// into dist/api.mjs) reads stats and history from a real ingest, with its
// API key, path escaping of a stage ARN, and a cursor; without the key it
// gets the typed error body.
func TestReadAPIClientFromNode(t *testing.T) {
	node := testutil.Node(t)
	testutil.RequireFile(t, "node_modules/openapi-fetch/package.json", "run npm ci in sdk/")
	dbURL := testutil.Schema(t)
	_, prefix := testutil.Redis(t) // its keys are deleted when the test ends
	common := map[string]string{"REDIS_URL": testutil.RedisURL(t), "REDIS_PREFIX": prefix, "DATABASE_URL": dbURL}
	ingest := startProc(t, "ingest", merge(common, map[string]string{"API_KEYS": "ops-secret", "JOIN_RATE": "off", "JOIN_RATE_PER_USER": "off"}))
	startProc(t, "projector", common)

	// alice watches twice (a leave between), bob once.
	for _, user := range []string{"alice", "bob", "alice"} {
		var j struct {
			SessionID string `json:"session_id"`
		}
		post(t, ingest, "/v1/viewers/join", map[string]string{"stage_arn": stageARN, "user_id": user}, &j)
		if user == "alice" {
			post(t, ingest, "/v1/viewers/leave", map[string]string{"session_id": j.SessionID}, nil)
		}
	}
	e := &e2e{t: t, dbURL: dbURL}
	testutil.Eventually(t, 30*time.Second, func() (bool, string) {
		n := e.rows("alice") + e.rows("bob")
		return n == 3, "3 sessions projected"
	})

	cmd := exec.Command(node, "test/read-api.mjs")
	cmd.Env = append(cmd.Environ(), "VIEWPULSE_URL=http://"+ingest, "VIEWPULSE_API_KEY=ops-secret",
		"VIEWPULSE_STAGE="+stageARN, "VIEWPULSE_USER=alice")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node: %v\n%s", err, stderr.String())
	}
	var got struct {
		Stats struct {
			StageARN     string `json:"stage_arn"`
			TotalViews   int    `json:"total_views"`
			UniqueViewer int    `json:"unique_viewers"`
		}
		History, Next struct {
			UserID   string `json:"user_id"`
			Sessions []struct {
				EndReason *string `json:"end_reason"`
			}
			NextCursor string `json:"next_cursor"`
		}
		Denied struct {
			Status int
			Error  struct{ Error struct{ Code string } }
		}
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("node printed %s: %v", out, err)
	}
	if got.Stats.StageARN != stageARN || got.Stats.TotalViews != 3 || got.Stats.UniqueViewer != 2 {
		t.Errorf("stats: %+v, want 3 views by 2 viewers of %s", got.Stats, stageARN)
	}
	if got.History.UserID != "alice" || len(got.History.Sessions) != 1 || got.History.NextCursor == "" ||
		len(got.Next.Sessions) != 1 || got.Next.NextCursor != "" {
		t.Errorf("history pages: %+v then %+v, want alice's two sessions one per page", got.History, got.Next)
	}
	if got.Denied.Status != 401 || got.Denied.Error.Error.Code != "unauthorized" {
		t.Errorf("without the key: %+v, want 401 unauthorized", got.Denied)
	}
}

// post sends body as a browser would: Go's own User-Agent is a bot's, and
// bots are left out of the stats the test reads back.
func post(t *testing.T, addr, path string, body, out any) {
	t.Helper()
	b, _ := json.Marshal(body)
	req, err := http.NewRequest(http.MethodPost, "http://"+addr+path, bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("POST %s: %s", path, resp.Status)
	}
	if out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			t.Fatal(err)
		}
	}
}
