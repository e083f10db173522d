package projector

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/viewpulse/viewpulse/events"
)

// TestMeasureThroughput appends 200,000 realistic events (2,000 sessions on
// 10 stages: a join, 98 heartbeats and a leave each, interleaved in time)
// and times one projector draining them, per batch size. It only runs with
// VIEWPULSE_MEASURE=1 and asserts nothing about speed.
func TestMeasureThroughput(t *testing.T) {
	if os.Getenv("VIEWPULSE_MEASURE") == "" {
		t.Skip("set VIEWPULSE_MEASURE=1 to measure the projector's events/s")
	}
	for _, size := range []int{1000, 5000} {
		t.Run(fmt.Sprint("batch", size), func(t *testing.T) {
			e := newEnv(t)
			ctx := context.Background()
			const sessions, perSession = 2000, 100
			start := e.clock.Now()
			var batch []events.Event
			flush := func() {
				_, err := e.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
					for _, ev := range batch {
						p.XAdd(ctx, &redis.XAddArgs{Stream: e.keys.Stream(), Values: ev.Values()})
					}
					return nil
				})
				if err != nil {
					t.Fatal(err)
				}
				batch = batch[:0]
			}
			for step := range perSession {
				for s := range sessions {
					ev := events.Event{
						Type: events.Heartbeat, Session: fmt.Sprintf("01JZ%022d", s), User: fmt.Sprint("user-", s%1500),
						Stage: fmt.Sprintf("%s%d", stage, s%10), At: start.Add(time.Duration(step*30_000+s) * time.Millisecond),
					}
					switch step {
					case 0:
						ev.Type, ev.Participant, ev.UA, ev.IP, ev.Country = events.Join, "p", "Mozilla/5.0", "203.0.113.7", "DE"
					case perSession - 1:
						ev.Type, ev.Participant, ev.Joined, ev.LastSeen = events.Leave, "p", start, ev.At
					}
					batch = append(batch, ev)
					if len(batch) == 2000 {
						flush()
					}
				}
			}
			flush()
			p := e.projector("bench", e.db, func(c *Config) { c.BatchSize = size })
			began := time.Now()
			total := 0
			for {
				n, err := p.Step(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if n == 0 {
					break
				}
				total += n
			}
			took := time.Since(began)
			t.Logf("batch %d: %d events in %s: %.0f events/s", size, total, took.Round(time.Millisecond), float64(total)/took.Seconds())
			if total != sessions*perSession {
				t.Fatalf("projected %d", total)
			}
		})
	}
}
