package webhooks_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/viewpulse/viewpulse/events"
	"github.com/viewpulse/viewpulse/internal/testutil"
	"github.com/viewpulse/viewpulse/webhooks"
)

// TestGroupEvents: a group of 3 stages of 2 places. At 5 of 6 viewers
// (over 0.8) one group.scale_up, not repeated within GROUP_ALERT_EVERY nor
// after a watcher takeover in the same window (same id), again in a later
// window; at 6 one group.full; when everyone has left, each child (not the
// master) empty for 10 minutes gets one group.scale_down.
func TestGroupEvents(t *testing.T) {
	rdb, prefix := testutil.Redis(t)
	clock := testutil.NewClock(time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC))
	stream := events.NewStream(rdb, prefix, 10*time.Minute) // the viewers outlive the 6-minute jump
	stream.Now = clock.Now
	outbox := newOutbox(t)
	recv := newReceiver(t, nil)
	startDispatcher(t, outbox, fastDispatch())
	ctx := context.Background()
	master := "arn:aws:ivs:us-east-1:123456789012:stage/master"
	children := []string{"arn:aws:ivs:us-east-1:123456789012:stage/child1", "arn:aws:ivs:us-east-1:123456789012:stage/child2"}
	for _, st := range append([]string{master}, children...) {
		if err := stream.Regroup(ctx, events.GroupChange{Stage: st, To: master, Capacity: 2}); err != nil {
			t.Fatal(err)
		}
	}
	d := webhooks.NewGroupDetector(stream, webhooks.NewEmitter(outbox, []string{recv.URL()}), webhooks.Config{})
	step := func() {
		t.Helper()
		if err := d.Step(ctx, "epoch-1", clock.Now()); err != nil {
			t.Fatal(err)
		}
	}
	count := func(typ string, want int) map[string]webhooks.Event {
		t.Helper()
		var got map[string]webhooks.Event
		testutil.Eventually(t, 20*time.Second, func() (bool, string) {
			got = recv.byType(typ)
			return len(got) == want, fmt.Sprintf("%d %s, want %d: %s", len(got), typ, want, recv.summary())
		})
		return got
	}
	var sessions []string
	join := func(stage, user string) {
		t.Helper()
		r, err := stream.Join(ctx, events.JoinRequest{Stage: stage, User: user})
		if err != nil {
			t.Fatal(err)
		}
		sessions = append(sessions, r.Session)
	}
	step() // nobody yet: nothing
	stages := []string{master, children[0], children[1], master, children[0]}
	for i, st := range stages {
		join(st, fmt.Sprint("u", i))
	}
	step()
	step()
	d.Reset() // another watcher took over, in the same window
	step()
	up := count(webhooks.GroupScaleUp, 1)
	for _, ev := range up {
		var data webhooks.GroupData
		if err := json.Unmarshal(ev.Data.(json.RawMessage), &data); err != nil {
			t.Fatal(err)
		}
		if data.MasterStageARN != master || data.Viewers != 5 || data.Capacity != 6 || len(data.Stages) != 3 {
			t.Fatalf("scale_up data %+v", data)
		}
	}
	join(children[1], "u5")
	step()
	step()
	count(webhooks.GroupFull, 1)
	clock.Add(6 * time.Minute) // a later window: still over 0.8 (everyone heartbeats)
	for _, sid := range sessions {
		if _, err := stream.Heartbeat(ctx, sid); err != nil {
			t.Fatal(err)
		}
	}
	step()
	count(webhooks.GroupScaleUp, 2)
	for _, sid := range sessions {
		if _, err := stream.Leave(ctx, sid); err != nil {
			t.Fatal(err)
		}
	}
	step() // the children are seen empty from now on
	clock.Add(9 * time.Minute)
	step()
	clock.Add(time.Minute + time.Second)
	step()
	step()
	down := count(webhooks.GroupScaleDown, 2)
	named := map[string]bool{}
	for _, ev := range down {
		var data webhooks.GroupData
		if err := json.Unmarshal(ev.Data.(json.RawMessage), &data); err != nil {
			t.Fatal(err)
		}
		named[data.StageARN] = true
	}
	if !named[children[0]] || !named[children[1]] || named[master] {
		t.Fatalf("scale_down named %v, want the two children", named)
	}
	count(webhooks.GroupFull, 1)
	count(webhooks.GroupScaleUp, 2)
}
