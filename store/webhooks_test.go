package store_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/viewpulse/viewpulse/store"
)

func webhookEvent(i int, at time.Time) store.WebhookEvent {
	id := fmt.Sprintf("evt_%03d", i)
	return store.WebhookEvent{ID: id, Type: "stage.live", CreatedAt: at,
		Payload: []byte(`{"id":"` + id + `","type":"stage.live","data":{"viewers":1}}`)}
}

// TestOutboxEnqueueIsIdempotent: one row per URL with one id; the same event
// enqueued again adds nothing; the payload comes back as the same JSON.
func TestOutboxEnqueueIsIdempotent(t *testing.T) {
	t.Parallel()
	ob := NewDB(t).Outbox()
	ctx := context.Background()
	t0 := time.Date(2026, 1, 15, 12, 0, 0, 0, time.UTC)
	urls := []string{"https://a.example/hook", "https://b.example/hook"}
	ev := webhookEvent(1, t0)
	if n, err := ob.Enqueue(ctx, ev, urls); err != nil || n != 2 {
		t.Fatalf("first enqueue = %d, %v; want 2", n, err)
	}
	if n, err := ob.Enqueue(ctx, ev, urls); err != nil || n != 0 {
		t.Fatalf("second enqueue = %d, %v; want 0", n, err)
	}
	if n, err := ob.Enqueue(ctx, ev, append(urls, "https://c.example/hook")); err != nil || n != 1 {
		t.Fatalf("enqueue to a new URL = %d, %v; want 1", n, err)
	}
	rows, err := ob.Deliveries(ctx, ev.ID)
	if err != nil || len(rows) != 3 {
		t.Fatalf("deliveries = %+v, %v", rows, err)
	}
	for _, r := range rows {
		var got, want any
		_ = json.Unmarshal(r.Payload, &got)
		_ = json.Unmarshal(ev.Payload, &want)
		if r.ID != ev.ID || fmt.Sprint(got) != fmt.Sprint(want) || !r.NextAttemptAt.Equal(t0) || r.Attempts != 0 {
			t.Fatalf("row = %+v, payload %s", r, r.Payload)
		}
	}
	if _, err := ob.Enqueue(ctx, store.WebhookEvent{ID: "evt_bad", Type: "x", CreatedAt: t0, Payload: []byte("{")}, urls); err == nil {
		t.Fatal("a payload that is not JSON was enqueued")
	}
}

// TestOutboxClaimsAreDisjointAndLeased: claims racing over one outbox never
// return one row twice; a claimed row is not due again until its lease ends,
// then it comes back with its attempt counted.
func TestOutboxClaimsAreDisjointAndLeased(t *testing.T) {
	t.Parallel()
	ob := NewDB(t).Outbox()
	ctx := context.Background()
	t0 := time.Date(2026, 1, 15, 12, 0, 0, 0, time.UTC)
	const events = 40
	for i := range events {
		if _, err := ob.Enqueue(ctx, webhookEvent(i, t0), []string{"https://a.example/hook"}); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	claimed := map[string]int{}
	for range 8 {
		wg.Go(func() {
			for {
				rows, err := ob.ClaimDue(ctx, t0, 3, time.Minute)
				if err != nil {
					t.Error(err)
					return
				}
				if len(rows) == 0 {
					return
				}
				mu.Lock()
				for _, r := range rows {
					claimed[r.ID]++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(claimed) != events {
		t.Fatalf("claimed %d distinct rows, want %d", len(claimed), events)
	}
	for id, n := range claimed {
		if n != 1 {
			t.Fatalf("%s claimed %d times", id, n)
		}
	}
	if due, err := ob.Due(ctx, t0.Add(59*time.Second)); err != nil || due != 0 {
		t.Fatalf("due within the lease = %d, %v", due, err)
	}
	rows, err := ob.ClaimDue(ctx, t0.Add(time.Minute), 100, time.Minute)
	if err != nil || len(rows) != events {
		t.Fatalf("after the lease: claimed %d, %v; want %d", len(rows), err, events)
	}
	if rows[0].Attempts != 2 {
		t.Fatalf("attempts = %d, want 2", rows[0].Attempts)
	}
}

// TestOutboxFailedRetriesThenGivesUp: a failure schedules the next attempt,
// never past the deadline; a failure at the deadline gives up; a stale
// claim's failure changes nothing; delivered and given-up rows are never
// claimed again and are pruned after their retention, pending ones never.
func TestOutboxFailedRetriesThenGivesUp(t *testing.T) {
	t.Parallel()
	ob := NewDB(t).Outbox()
	ctx := context.Background()
	t0 := time.Date(2026, 1, 15, 12, 0, 0, 0, time.UTC)
	const retry = time.Hour
	url := []string{"https://a.example/hook"}
	for i := range 3 {
		if _, err := ob.Enqueue(ctx, webhookEvent(i, t0), url); err != nil {
			t.Fatal(err)
		}
	}
	claim := func(at time.Time) map[string]store.WebhookDelivery {
		t.Helper()
		rows, err := ob.ClaimDue(ctx, at, 10, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]store.WebhookDelivery{}
		for _, r := range rows {
			out[r.ID] = r
		}
		return out
	}
	first := claim(t0)
	if len(first) != 3 {
		t.Fatalf("claimed %d", len(first))
	}
	if err := ob.MarkDelivered(ctx, first["evt_000"], t0.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"evt_001", "evt_002"} {
		gaveUp, err := ob.MarkFailed(ctx, first[id], t0.Add(time.Second), t0.Add(time.Minute), retry, "HTTP 500: oops")
		if err != nil || gaveUp {
			t.Fatalf("mark failed %s = %v, %v", id, gaveUp, err)
		}
	}
	if got := claim(t0.Add(59 * time.Second)); len(got) != 0 {
		t.Fatalf("claimed before the next attempt: %v", got)
	}
	second := claim(t0.Add(time.Minute))
	if len(second) != 2 || second["evt_001"].Attempts != 2 || second["evt_001"].LastError != "HTTP 500: oops" {
		t.Fatalf("second claim = %+v", second)
	}
	// the first claim's failure, recorded late, leaves the second alone
	if gaveUp, err := ob.MarkFailed(ctx, first["evt_001"], t0.Add(retry), t0.Add(retry), retry, "late"); err != nil || gaveUp {
		t.Fatalf("stale mark failed = %v, %v", gaveUp, err)
	}
	if rows, _ := ob.Deliveries(ctx, "evt_001"); rows[0].LastError != "HTTP 500: oops" || !rows[0].NextAttemptAt.Equal(t0.Add(time.Minute+10*time.Second)) {
		t.Fatalf("a stale claim changed the row: %+v", rows[0])
	}
	// next attempt wanted past the deadline: made at the deadline
	if _, err := ob.MarkFailed(ctx, second["evt_001"], t0.Add(time.Minute), t0.Add(5*retry), retry, "down"); err != nil {
		t.Fatal(err)
	}
	if err := ob.MarkDelivered(ctx, second["evt_002"], t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if got := claim(t0.Add(retry - time.Second)); len(got) != 0 {
		t.Fatalf("claimed before the deadline: %v", got)
	}
	last := claim(t0.Add(retry))
	if len(last) != 1 {
		t.Fatalf("claim at the deadline = %+v", last)
	}
	gaveUp, err := ob.MarkFailed(ctx, last["evt_001"], t0.Add(retry), t0.Add(retry+time.Minute), retry, "down")
	if err != nil || !gaveUp {
		t.Fatalf("failure at the deadline: given up %v, %v", gaveUp, err)
	}
	if got := claim(t0.Add(10 * retry)); len(got) != 0 {
		t.Fatalf("finished rows claimed again: %v", got)
	}
	rows, _ := ob.Deliveries(ctx, "evt_001")
	if len(rows) != 1 || rows[0].GivenUpAt.IsZero() || rows[0].Attempts != 3 {
		t.Fatalf("given-up row = %+v", rows)
	}

	// a pending row survives pruning however old
	if _, err := ob.Enqueue(ctx, webhookEvent(9, t0), url); err != nil {
		t.Fatal(err)
	}
	n, err := ob.PruneWebhooks(ctx, t0.Add(retry/2), 1)
	if err != nil || n != 2 { // evt_000 and evt_002, delivered before the cut
		t.Fatalf("prune = %d, %v; want 2", n, err)
	}
	n, err = ob.PruneWebhooks(ctx, t0.Add(100*retry), 0)
	if err != nil || n != 1 { // evt_001, given up
		t.Fatalf("prune = %d, %v; want 1", n, err)
	}
	left, err := ob.Enqueued(ctx, []string{"evt_000", "evt_001", "evt_002", "evt_009"})
	if err != nil || !slices.Equal([]bool{left["evt_000"], left["evt_001"], left["evt_002"], left["evt_009"]}, []bool{false, false, false, true}) {
		t.Fatalf("left after pruning = %v, %v", left, err)
	}
}
