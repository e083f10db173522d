package webhooks_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/viewpulse/viewpulse/events"
	"github.com/viewpulse/viewpulse/internal/testutil"
	"github.com/viewpulse/viewpulse/store"
	"github.com/viewpulse/viewpulse/webhooks"
)

// watchRig is a deployment's stream, an outbox delivered by a dispatcher to
// a real endpoint, and a way to start stage watchers on them.
type watchRig struct {
	t      *testing.T
	stream *events.Stream
	outbox *store.Outbox
	recv   *receiver
	prefix string
}

func newWatchRig(t *testing.T) *watchRig {
	t.Helper()
	rdb, prefix := testutil.Redis(t)
	r := &watchRig{t: t, stream: events.NewStream(rdb, prefix, 2*time.Minute), outbox: newOutbox(t),
		recv: newReceiver(t, nil), prefix: prefix}
	startDispatcher(t, r.outbox, fastDispatch())
	return r
}

// watcher starts a stage watcher named name; stop ends it (and gives its
// lease back).
func (r *watchRig) watcher(name string) (reg *prometheus.Registry, stop func()) {
	r.t.Helper()
	reg = prometheus.NewRegistry()
	w := webhooks.NewStageWatcher(r.stream, webhooks.NewEmitter(r.outbox, []string{r.recv.URL()}),
		webhooks.WatcherConfig{Interval: 20 * time.Millisecond, LeaseTTL: 5 * time.Second, Name: name},
		slog.New(slog.DiscardHandler), reg)
	return reg, run(r.t, w.Run)
}

func (r *watchRig) join(stage, user string) string {
	r.t.Helper()
	res, err := r.stream.Join(context.Background(), events.JoinRequest{Stage: stage, User: user})
	if err != nil {
		r.t.Fatal(err)
	}
	return res.Session
}

func (r *watchRig) leave(session string) {
	r.t.Helper()
	if closed, err := r.stream.Leave(context.Background(), session); err != nil || !closed {
		r.t.Fatalf("leave = %v, %v", closed, err)
	}
}

// waitEvents waits until the endpoint has n events of typ for stage and
// returns their data.
func (r *watchRig) waitEvents(typ, stage string, n int) []webhooks.StageData {
	r.t.Helper()
	var got []webhooks.StageData
	testutil.Eventually(r.t, 20*time.Second, func() (bool, string) {
		got = r.events(typ, stage)
		return len(got) == n, fmt.Sprintf("%d %s events of %s, want %d: %s", len(got), typ, stage, n, r.recv.summary())
	})
	return got
}

func (r *watchRig) events(typ, stage string) []webhooks.StageData {
	var out []webhooks.StageData
	for _, ev := range r.recv.byType(typ) {
		var d webhooks.StageData
		if err := json.Unmarshal(ev.Data.(json.RawMessage), &d); err != nil {
			r.t.Fatal(err)
		}
		if d.StageARN == stage {
			out = append(out, d)
		}
	}
	return out
}

const (
	stageA = "arn:aws:ivs:us-east-1:123456789012:stage/aaaa"
	stageB = "arn:aws:ivs:us-east-1:123456789012:stage/bbbb"
	stageC = "arn:aws:ivs:us-east-1:123456789012:stage/cccc"
)

// TestStageWatcherSendsLiveAndEmptyOnce: real joins and leaves make one
// stage.live at the first viewer and one stage.empty after the last, with
// two watchers running, of which one (the lease holder) sends them all.
func TestStageWatcherSendsLiveAndEmptyOnce(t *testing.T) {
	t.Parallel()
	r := newWatchRig(t)
	regA, _ := r.watcher("a")
	regB, _ := r.watcher("b")

	s1 := r.join(stageA, "u1")
	if live := r.waitEvents(webhooks.StageLive, stageA, 1); live[0].Viewers != 1 || live[0].At.IsZero() {
		t.Fatalf("stage.live data = %+v", live[0])
	}
	s2 := r.join(stageA, "u2") // 1 -> 2: no event
	r.leave(s1)
	r.leave(s2)
	if empty := r.waitEvents(webhooks.StageEmpty, stageA, 1); empty[0].Viewers != 0 {
		t.Fatalf("stage.empty data = %+v", empty[0])
	}
	// A later transition, delivered, shows that no duplicate of stage A's
	// came meanwhile.
	r.join(stageB, "u3")
	r.waitEvents(webhooks.StageLive, stageB, 1)
	if n := len(r.events(webhooks.StageLive, stageA)) + len(r.events(webhooks.StageEmpty, stageA)); n != 2 {
		t.Fatalf("%d events of stage A, want 2", n)
	}
	leaders := testutil.Metric(t, regA, "viewpulse_webhook_watcher_leader") + testutil.Metric(t, regB, "viewpulse_webhook_watcher_leader")
	sent := func(reg *prometheus.Registry) float64 {
		return testutil.Metric(t, reg, "viewpulse_webhook_stage_transitions_total", "type", "stage.live") +
			testutil.Metric(t, reg, "viewpulse_webhook_stage_transitions_total", "type", "stage.empty")
	}
	a, b := sent(regA), sent(regB)
	if leaders != 1 || a+b != 3 || (a != 0 && b != 0) {
		t.Fatalf("leaders %v; transitions sent by a %v, by b %v; want 1 leader sending all 3", leaders, a, b)
	}
}

// TestStageWatcherTakeoverSendsNothingTwice: when the active watcher stops,
// the other takes over from the state in Redis: it does not send stage A's
// stage.live again, and it sends what happens next.
func TestStageWatcherTakeoverSendsNothingTwice(t *testing.T) {
	t.Parallel()
	r := newWatchRig(t)
	regA, stopA := r.watcher("a")
	s1 := r.join(stageA, "u1")
	r.waitEvents(webhooks.StageLive, stageA, 1)
	if testutil.Metric(t, regA, "viewpulse_webhook_watcher_leader") != 1 {
		t.Fatal("a is not the leader")
	}
	stopA()
	regB, _ := r.watcher("b")
	testutil.Eventually(t, 10*time.Second, func() (bool, string) {
		return testutil.Metric(t, regB, "viewpulse_webhook_watcher_leader") == 1, "b did not take the lease"
	})
	r.leave(s1)
	r.join(stageB, "u2")
	r.waitEvents(webhooks.StageEmpty, stageA, 1)
	r.waitEvents(webhooks.StageLive, stageB, 1)
	if n := len(r.events(webhooks.StageLive, stageA)); n != 1 {
		t.Fatalf("%d stage.live of A after the takeover, want 1", n)
	}
	if live, empty := testutil.Metric(t, regB, "viewpulse_webhook_stage_transitions_total", "type", "stage.live"),
		testutil.Metric(t, regB, "viewpulse_webhook_stage_transitions_total", "type", "stage.empty"); live != 1 || empty != 1 {
		t.Fatalf("b sent %v live, %v empty; want 1 (B), 1 (A)", live, empty)
	}
}

// TestStageWatcherCommitsTransitionQueuedByDeadWatcher: a watcher that died
// after queueing stage A's stage.live and before committing it, while A
// emptied meanwhile: the next watcher commits the queued transition and
// sends stage.empty, rather than leaving the receiver believing A is live.
// A stage still live whose stage.live was queued is not sent twice.
func TestStageWatcherCommitsTransitionQueuedByDeadWatcher(t *testing.T) {
	t.Parallel()
	r := newWatchRig(t)
	rdb := r.stream.Client()
	const epoch = "0123456789abcdef"
	if err := rdb.Set(context.Background(), webhooks.KeyEpoch(r.prefix), epoch, 0).Err(); err != nil {
		t.Fatal(err)
	}
	r.leave(r.join(stageA, "u1")) // listed, empty
	r.join(stageC, "u2")          // listed, live
	emit := webhooks.NewEmitter(r.outbox, []string{r.recv.URL()})
	for _, stage := range []string{stageA, stageC} {
		ev := webhooks.Event{ID: webhooks.TransitionID(epoch, stage, 1), Type: webhooks.StageLive,
			Data: webhooks.StageData{StageARN: stage, Viewers: 1}}
		if err := emit.Notify(context.Background(), ev); err != nil {
			t.Fatal(err)
		}
	}
	reg, _ := r.watcher("b")
	r.waitEvents(webhooks.StageEmpty, stageA, 1)
	r.join(stageB, "u3")
	r.waitEvents(webhooks.StageLive, stageB, 1)
	if a, c := len(r.events(webhooks.StageLive, stageA)), len(r.events(webhooks.StageLive, stageC)); a != 1 || c != 1 {
		t.Fatalf("stage.live of A %d, of C %d; want 1, 1", a, c)
	}
	if live := testutil.Metric(t, reg, "viewpulse_webhook_stage_transitions_total", "type", "stage.live"); live != 1 {
		t.Fatalf("the watcher sent %v stage.live, want 1 (B)", live)
	}
	n, err := rdb.HGetAll(context.Background(), webhooks.KeyTransitions(r.prefix)).Result()
	if err != nil || n[stageA] != "2" || n[stageC] != "1" || n[stageB] != "1" {
		t.Fatalf("transitions = %v, %v", n, err)
	}
}

// TestStageWatcherSendsEmptyWhenAStageIsNoLongerListed: a live stage that
// disappears from the live state (its keys lost) gets stage.empty.
func TestStageWatcherSendsEmptyWhenAStageIsNoLongerListed(t *testing.T) {
	t.Parallel()
	r := newWatchRig(t)
	r.watcher("a")
	r.join(stageA, "u1")
	r.waitEvents(webhooks.StageLive, stageA, 1)
	if err := r.stream.Client().ZRem(context.Background(), r.stream.KeysOf(stageA).Stages(), stageA).Err(); err != nil {
		t.Fatal(err)
	}
	if empty := r.waitEvents(webhooks.StageEmpty, stageA, 1); empty[0].Viewers != 0 {
		t.Fatalf("stage.empty data = %+v", empty[0])
	}
}
