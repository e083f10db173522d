package api_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/viewpulse/viewpulse/api"
	"github.com/viewpulse/viewpulse/events"
)

// TestStageViewersGaugeIsBounded: viewpulse_stage_viewers exports the 100
// stages with the most viewers however many are live, and viewpulse_viewers
// the total over all of them.
func TestStageViewersGaugeIsBounded(t *testing.T) {
	h := newLiveHarness(t, api.LiveConfig{})
	ctx := context.Background()
	arn := func(i int) string { return fmt.Sprintf("arn:aws:ivs:eu-west-1:123456789012:stage/G%03d", i) }
	for i := range 130 {
		if _, err := h.stream.Join(ctx, events.JoinRequest{Stage: arn(i), User: "u"}); err != nil {
			t.Fatal(err)
		}
	}
	// The last stage by name has the most viewers: it must be exported.
	for _, u := range []string{"v", "w"} {
		if _, err := h.stream.Join(ctx, events.JoinRequest{Stage: arn(129), User: u}); err != nil {
			t.Fatal(err)
		}
	}
	body := h.metrics()
	series := strings.Count(body, "\nviewpulse_stage_viewers{")
	if series != 100 {
		t.Fatalf("%d viewpulse_stage_viewers series, want 100", series)
	}
	if !strings.Contains(body, `viewpulse_stage_viewers{stage="`+arn(129)+`"} 3`) {
		t.Fatalf("the stage with the most viewers is missing:\n%s", body)
	}
	if strings.Contains(body, `stage="`+arn(128)+`"`) {
		t.Fatalf("a stage past the top 100 is exported")
	}
	if !strings.Contains(body, "\nviewpulse_viewers 132\n") {
		t.Fatalf("viewpulse_viewers is not 132")
	}
}
