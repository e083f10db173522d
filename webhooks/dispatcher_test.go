package webhooks_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/viewpulse/viewpulse/internal/testutil"
	"github.com/viewpulse/viewpulse/webhooks"
)

// TestDeliveryIsSignedAndVerified: an event reaches a real endpoint as the
// README documents it: POST, JSON body {id, type, created_at, data}, the
// signature header verified by Verify at the receiver and, independently,
// by openssl over "<t>.<body>".
func TestDeliveryIsSignedAndVerified(t *testing.T) {
	t.Parallel()
	outbox := newOutbox(t)
	recv := newReceiver(t, nil)
	reg := startDispatcher(t, outbox, fastDispatch())
	emit := webhooks.NewEmitter(outbox, []string{recv.URL()})
	at := time.Date(2026, 12, 2, 7, 30, 0, 123_000_000, time.UTC)
	id := webhooks.NewID()
	data := webhooks.GroupData{MasterStageARN: "arn:aws:ivs:us-east-1:123456789012:stage/master", Viewers: 810,
		Capacity: 1000, Ratio: 0.81, Stages: []webhooks.GroupStage{{StageARN: "arn:aws:ivs:us-east-1:123456789012:stage/master", Viewers: 810, MaxViewers: 1000}}}
	if err := emit.Notify(context.Background(), webhooks.Event{ID: id, Type: webhooks.GroupScaleUp, At: at, Data: data}); err != nil {
		t.Fatal(err)
	}
	recv.waitFor(id)

	recv.mu.Lock()
	ev, header, body := recv.events[id], recv.headers[id], recv.bodies[id]
	recv.mu.Unlock()
	var raw map[string]any
	if err := json.Unmarshal(body, &raw); err != nil {
		t.Fatal(err)
	}
	if raw["id"] != id || raw["type"] != "group.scale_up" || raw["created_at"] != "2026-12-02T07:30:00.123Z" {
		t.Fatalf("body = %s", body)
	}
	var got webhooks.GroupData
	if err := json.Unmarshal(ev.Data.(json.RawMessage), &got); err != nil || fmt.Sprint(got) != fmt.Sprint(data) {
		t.Fatalf("data = %+v (%v), want %+v", got, err, data)
	}
	if !strings.Contains(string(body), `"master_stage_arn"`) || !strings.Contains(string(body), `"ratio"`) {
		t.Fatalf("body lacks the documented fields: %s", body)
	}

	sig := header.Get(webhooks.SignatureHeader)
	var ts, v1 string
	for _, part := range strings.Split(sig, ",") {
		k, v, _ := strings.Cut(part, "=")
		switch k {
		case "t":
			ts = v
		case "v1":
			v1 = v
		}
	}
	if want := openssl(t, secret, ts+"."+string(body)); v1 != want {
		t.Fatalf("v1 = %s, openssl says %s (header %q)", v1, want, sig)
	}
	waitMetric(t, reg, 1, "viewpulse_webhook_deliveries_total", "result", "delivered")
	if n := testutil.Metric(t, reg, "viewpulse_webhook_delivery_seconds"); n != 1 {
		t.Fatalf("delivery_seconds count = %v", n)
	}
}

// openssl is HMAC-SHA256 of msg with key in hex, computed by openssl.
func openssl(t *testing.T, key, msg string) string {
	t.Helper()
	cmd := exec.Command("openssl", "dgst", "-sha256", "-hmac", key, "-hex")
	cmd.Stdin = strings.NewReader(msg)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("openssl: %v", err)
	}
	// "SHA2-256(stdin)= <hex>" or "(stdin)= <hex>"
	f := strings.Fields(string(out))
	return f[len(f)-1]
}

// TestFailingReceiverGetsTheEventOnceMore: an endpoint that answers 500
// twice gets the event a third time, with the same id in the header and the
// body each time, and never again once it answered 200.
func TestFailingReceiverGetsTheEventOnceMore(t *testing.T) {
	t.Parallel()
	outbox := newOutbox(t)
	id := webhooks.NewID()
	recv := newReceiver(t, func(got string, attempt int) int {
		if got == id && attempt <= 2 {
			return http.StatusInternalServerError
		}
		return http.StatusOK
	})
	reg := startDispatcher(t, outbox, fastDispatch())
	emit := webhooks.NewEmitter(outbox, []string{recv.URL()})
	err := emit.Notify(context.Background(), webhooks.Event{ID: id, Type: webhooks.StageLive,
		Data: webhooks.StageData{StageARN: "arn:aws:ivs:us-east-1:1:stage/a", Viewers: 1}})
	if err != nil {
		t.Fatal(err)
	}
	recv.waitFor(id)

	// A later event delivered proves the dispatcher went on; the first,
	// marked delivered, is never claimed again.
	sentinel := notify(t, emit, webhooks.StageEmpty, webhooks.StageData{StageARN: "arn:aws:ivs:us-east-1:1:stage/a"})
	recv.waitFor(sentinel)
	recv.mu.Lock()
	attempts, delivered, ids := recv.attempts[id], recv.delivered[id], recv.headerIDs[id]
	recv.mu.Unlock()
	if attempts != 3 || delivered != 1 || fmt.Sprint(ids) != fmt.Sprint([]string{id, id, id}) {
		t.Fatalf("attempts %d, delivered %d, header ids %v; want 3, 1, %s three times", attempts, delivered, ids, id)
	}
	// the dispatcher records a delivery once it has read the answer
	waitMetric(t, reg, 2, "viewpulse_webhook_deliveries_total", "result", "delivered")
	if f := testutil.Metric(t, reg, "viewpulse_webhook_deliveries_total", "result", "failed"); f != 2 {
		t.Fatalf("failed %v, want 2", f)
	}
	rows, err := outbox.Deliveries(context.Background(), id)
	if err != nil || len(rows) != 1 || rows[0].DeliveredAt.IsZero() || rows[0].Attempts != 3 {
		t.Fatalf("outbox row = %+v, %v", rows, err)
	}
}

// TestReceiverDownLosesNothing: events queued while the endpoint refuses
// connections are retried until it is back; then each arrives, once.
func TestReceiverDownLosesNothing(t *testing.T) {
	t.Parallel()
	outbox := newOutbox(t)
	recv := newReceiver(t, nil)
	recv.stop()
	reg := startDispatcher(t, outbox, fastDispatch())
	emit := webhooks.NewEmitter(outbox, []string{recv.URL()})
	const events = 20
	var ids []string
	for i := range events {
		ids = append(ids, notify(t, emit, webhooks.StageLive, webhooks.StageData{StageARN: fmt.Sprintf("arn:aws:ivs:us-east-1:1:stage/s%d", i), Viewers: 1}))
	}
	// every event failed at least twice while the endpoint was down
	testutil.Eventually(t, 20*time.Second, func() (bool, string) {
		for _, id := range ids {
			rows, err := outbox.Deliveries(context.Background(), id)
			if err != nil || len(rows) != 1 || rows[0].Attempts < 2 || rows[0].LastError == "" {
				return false, fmt.Sprintf("%s: %+v %v", id, rows, err)
			}
		}
		return true, ""
	})
	// a row is claimed again only once its failure is recorded
	if f := testutil.Metric(t, reg, "viewpulse_webhook_deliveries_total", "result", "failed"); f < events {
		t.Fatalf("failed = %v, want at least %d", f, events)
	}
	recv.start()
	for _, id := range ids {
		recv.waitFor(id)
	}
	sentinel := notify(t, emit, webhooks.StageEmpty, webhooks.StageData{StageARN: "arn:aws:ivs:us-east-1:1:stage/s0"})
	recv.waitFor(sentinel)
	recv.mu.Lock()
	defer recv.mu.Unlock()
	for _, id := range ids {
		if recv.attempts[id] != 1 || recv.delivered[id] != 1 {
			t.Errorf("%s: %d requests, %d delivered after the endpoint came back; want 1, 1", id, recv.attempts[id], recv.delivered[id])
		}
	}
	if g := testutil.Metric(t, reg, "viewpulse_webhook_deliveries_total", "result", "given_up"); g != 0 {
		t.Fatalf("given up %v", g)
	}
}

// TestTwoDispatchersNeverDeliverARowTwice: two dispatchers on one outbox,
// a slow endpoint: each event is requested once, never two requests of one
// event in flight, and both dispatchers did part of the work.
func TestTwoDispatchersNeverDeliverARowTwice(t *testing.T) {
	t.Parallel()
	outbox := newOutbox(t)
	recv := newReceiver(t, nil)
	recv.delay = 100 * time.Millisecond
	emit := webhooks.NewEmitter(outbox, []string{recv.URL()})
	const events = 30
	var ids []string
	for i := range events {
		ids = append(ids, notify(t, emit, webhooks.StageLive, webhooks.StageData{StageARN: fmt.Sprintf("arn:aws:ivs:us-east-1:1:stage/s%d", i), Viewers: 1}))
	}
	cfg := fastDispatch()
	regA, regB := startDispatcher(t, outbox, cfg), startDispatcher(t, outbox, cfg)
	// the dispatchers count a delivery once its answer is read
	var a, b float64
	testutil.Eventually(t, 20*time.Second, func() (bool, string) {
		a = testutil.Metric(t, regA, "viewpulse_webhook_deliveries_total", "result", "delivered")
		b = testutil.Metric(t, regB, "viewpulse_webhook_deliveries_total", "result", "delivered")
		return a+b >= events, fmt.Sprintf("delivered by A %v, by B %v: %s", a, b, recv.summary())
	})
	recv.mu.Lock()
	defer recv.mu.Unlock()
	for _, id := range ids {
		if recv.attempts[id] != 1 {
			t.Errorf("%s requested %d times", id, recv.attempts[id])
		}
	}
	if recv.maxInflight != 1 {
		t.Errorf("%d requests of one event in flight at once", recv.maxInflight)
	}
	if a+b != events || a == 0 || b == 0 {
		t.Errorf("delivered by A %v, by B %v; want both, %d in all", a, b, events)
	}
}

// TestGivesUpAfterTheDeadline: an endpoint that always fails is retried
// until RetryFor after the event, then the delivery is given up, counted,
// and not attempted again.
func TestGivesUpAfterTheDeadline(t *testing.T) {
	t.Parallel()
	outbox := newOutbox(t)
	var mu sync.Mutex
	last := map[string]int{}
	recv := newReceiver(t, func(id string, attempt int) int {
		mu.Lock()
		defer mu.Unlock()
		last[id] = attempt
		return http.StatusServiceUnavailable
	})
	cfg := fastDispatch()
	cfg.RetryFor = 500 * time.Millisecond
	reg := startDispatcher(t, outbox, cfg)
	emit := webhooks.NewEmitter(outbox, []string{recv.URL()})
	id := notify(t, emit, webhooks.StageLive, webhooks.StageData{StageARN: "arn:aws:ivs:us-east-1:1:stage/a", Viewers: 1})
	testutil.Eventually(t, 20*time.Second, func() (bool, string) {
		n := testutil.Metric(t, reg, "viewpulse_webhook_deliveries_total", "result", "given_up")
		return n == 1, fmt.Sprintf("given_up = %v, %s", n, recv.summary())
	})
	rows, err := outbox.Deliveries(context.Background(), id)
	if err != nil || len(rows) != 1 || rows[0].GivenUpAt.IsZero() || !strings.Contains(rows[0].LastError, "HTTP 503") {
		t.Fatalf("row = %+v, %v", rows, err)
	}
	if rows[0].GivenUpAt.Before(rows[0].CreatedAt.Add(cfg.RetryFor)) {
		t.Fatalf("given up at %s, before the deadline %s", rows[0].GivenUpAt, rows[0].CreatedAt.Add(cfg.RetryFor))
	}
	mu.Lock()
	attempts := last[id]
	mu.Unlock()
	if attempts < 3 || attempts != rows[0].Attempts {
		t.Fatalf("endpoint saw %d attempts, the row counts %d; want at least 3, equal", attempts, rows[0].Attempts)
	}
	if f := testutil.Metric(t, reg, "viewpulse_webhook_deliveries_total", "result", "failed"); int(f) != attempts-1 {
		t.Fatalf("failed = %v, want %d (the last is given_up)", f, attempts-1)
	}
	if due, _ := outbox.Due(context.Background(), time.Now().Add(time.Hour)); due != 0 {
		t.Fatalf("a given-up delivery is still due")
	}
}

// TestDeliveryClaimedByADeadDispatcherIsRetried: a row claimed by a
// dispatcher that died before sending it is sent by another once the claim's
// lease has run out, as its second attempt.
func TestDeliveryClaimedByADeadDispatcherIsRetried(t *testing.T) {
	t.Parallel()
	outbox := newOutbox(t)
	recv := newReceiver(t, nil)
	emit := webhooks.NewEmitter(outbox, []string{recv.URL()})
	id := notify(t, emit, webhooks.StageLive, webhooks.StageData{StageARN: "arn:aws:ivs:us-east-1:1:stage/a", Viewers: 1})
	// the dead dispatcher's claim
	claimed, err := outbox.ClaimDue(context.Background(), time.Now(), 10, 300*time.Millisecond)
	if err != nil || len(claimed) != 1 || claimed[0].ID != id {
		t.Fatalf("claim = %+v, %v", claimed, err)
	}
	startDispatcher(t, outbox, fastDispatch())
	recv.waitFor(id)
	testutil.Eventually(t, 10*time.Second, func() (bool, string) {
		rows, err := outbox.Deliveries(context.Background(), id)
		return err == nil && len(rows) == 1 && !rows[0].DeliveredAt.IsZero() && rows[0].Attempts == 2, fmt.Sprintf("%+v %v", rows, err)
	})
	recv.mu.Lock()
	defer recv.mu.Unlock()
	if recv.attempts[id] != 1 {
		t.Fatalf("requests %d, want 1", recv.attempts[id])
	}
}
