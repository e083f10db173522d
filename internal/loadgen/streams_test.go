package loadgen

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/viewpulse/viewpulse/api"
	"github.com/viewpulse/viewpulse/events"
	"github.com/viewpulse/viewpulse/internal/testutil"
)

// TestOpenStreams holds streams on a real ingest handler: each gets its first
// event, a join reaches all of them, Close ends them; a refused key counts
// every stream as failed.
func TestOpenStreams(t *testing.T) {
	rdb, prefix := testutil.Redis(t)
	stream := events.NewStream(rdb, prefix, time.Minute)
	srv := httptest.NewServer(api.NewServer(api.Config{Stream: stream, APIKeys: []string{"k"},
		Live: api.LiveConfig{Tick: 50 * time.Millisecond}}))
	t.Cleanup(srv.Close)
	ctx := context.Background()

	s := OpenStreams(ctx, srv.URL, "k", 20, 5*time.Second)
	if s.Connected.Load() != 20 || s.Failed.Load() != 0 {
		t.Fatalf("%s", s)
	}
	resp, err := http.Post(srv.URL+"/v1/viewers/join", "application/json",
		strings.NewReader(`{"stage_arn":"arn:aws:ivs:us-east-1:1:stage/streams","user_id":"u"}`))
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("join: %v %v", resp, err)
	}
	resp.Body.Close()
	testutil.Eventually(t, 5*time.Second, func() (bool, string) {
		n := s.Events.Load()
		return n >= 40, fmt.Sprintf("%d counts events over 20 streams", n)
	})
	s.Close()

	refused := OpenStreams(ctx, srv.URL, "wrong", 5, 5*time.Second)
	defer refused.Close()
	if refused.Connected.Load() != 0 || refused.Failed.Load() != 5 {
		t.Fatalf("with a refused key: %s", refused)
	}
}
