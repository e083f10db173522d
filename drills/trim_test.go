package drills

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/viewpulse/viewpulse/events"
	"github.com/viewpulse/viewpulse/internal/testutil"
)

// A steady load with trimming on (1 s retention, trimmed every 250 ms) and a
// second consumer group that reads slowly: the stream's length and memory
// stay flat, and the slow group still receives every entry ever added —
// nothing was trimmed before every group acknowledged it.
func TestDrillLongRunTrimming(t *testing.T) {
	rdb, prefix := testutil.Redis(t)
	keys := events.NewKeys(prefix)
	stream := keys.Stream()
	ctx := context.Background()
	if err := rdb.XGroupCreateMkStream(ctx, stream, "laggard", "0").Err(); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"REDIS_URL": testutil.RedisURL(t), "REDIS_PREFIX": prefix, "DATABASE_URL": testutil.Schema(t),
		"STREAM_RETENTION": "1s", "MAINTAIN_INTERVAL": "250ms", "HEARTBEAT_TIMEOUT": "3s", "SWEEP_INTERVAL": "500ms"}
	ingest := startProc(t, "ingest", env)
	startProc(t, "projector", env)
	startProc(t, "snapshotter", env)

	load, stopLoad := context.WithCancel(ctx)
	loadDone := make(chan struct{})
	c := newClient(ingest.addr)
	go func() { defer close(loadDone); c.viewers(load, 4, []string{stageARN(1), stageARN(2)}) }()

	// The laggard reads at most 2,000 entries every 100 ms, acknowledging each
	// batch only after a pause.
	received := map[string]bool{}
	lagCtx, stopLag := context.WithCancel(ctx)
	lagDone := make(chan error, 1)
	go func() {
		for {
			res, err := rdb.XReadGroup(lagCtx, &redis.XReadGroupArgs{Group: "laggard", Consumer: "slow",
				Streams: []string{stream, ">"}, Count: 2000, Block: 100 * time.Millisecond}).Result()
			if lagCtx.Err() != nil {
				lagDone <- nil
				return
			}
			if err != nil && err != redis.Nil {
				lagDone <- err
				return
			}
			var ids []string
			for _, s := range res {
				for _, m := range s.Messages {
					if received[m.ID] {
						lagDone <- fmt.Errorf("entry %s delivered twice", m.ID)
						return
					}
					received[m.ID] = true
					ids = append(ids, m.ID)
				}
			}
			pause(lagCtx, 100*time.Millisecond)
			if len(ids) > 0 {
				rdb.XAck(ctx, stream, "laggard", ids...)
			}
		}
	}()

	type sample struct{ len, mem int64 }
	var samples []sample
	for i := 0; i < 24; i++ {
		pause(ctx, 500*time.Millisecond)
		n, _ := rdb.XLen(ctx, stream).Result()
		m, _ := rdb.MemoryUsage(ctx, stream, 0).Result()
		samples = append(samples, sample{n, m})
	}
	stopLoad()
	<-loadDone

	// Let the laggard read what is left, then stop it. Its lag alone does
	// not say: Redis reports it unknown (nil, read as 0) while trimmed
	// entries lie in the unread range, so wait for its last delivered entry
	// to be the stream's last one.
	testutil.Eventually(t, 30*time.Second, func() (bool, string) {
		g, err := rdb.XInfoGroups(ctx, stream).Result()
		if err != nil {
			return false, err.Error()
		}
		info, err := rdb.XInfoStream(ctx, stream).Result()
		if err != nil {
			return false, err.Error()
		}
		for _, gr := range g {
			if gr.Name == "laggard" && gr.LastDeliveredID == info.LastGeneratedID && gr.Pending == 0 {
				return true, ""
			}
		}
		return false, fmt.Sprint("laggard still behind: ", g, " last entry ", info.LastGeneratedID)
	})
	stopLag()
	if err := <-lagDone; err != nil {
		t.Fatal(err)
	}
	info, err := rdb.XInfoStream(ctx, stream).Result()
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(received)) != info.EntriesAdded {
		t.Fatalf("the slow group received %d entries of %d added: some were trimmed before it read them", len(received), info.EntriesAdded)
	}
	if info.Length >= info.EntriesAdded/2 {
		t.Fatalf("trimming did not run: %d entries kept of %d added", info.Length, info.EntriesAdded)
	}
	// Flat: the second half of the run holds no more than the first half's
	// peak plus a margin for noise.
	peak := func(s []sample) (l, m int64) {
		for _, x := range s {
			l, m = max(l, x.len), max(m, x.mem)
		}
		return l, m
	}
	firstLen, firstMem := peak(samples[4:12])
	lastLen, lastMem := peak(samples[12:])
	if lastLen > 2*firstLen+500 || lastMem > 2*firstMem+256<<10 {
		t.Fatalf("stream grew: first half peak %d entries / %d B, second half %d / %d B", firstLen, firstMem, lastLen, lastMem)
	}
	t.Logf("trimming: %d entries added, %d kept at the end; stream peak %d entries / %d KiB in the first half, %d / %d KiB in the second; the slow group got all %d",
		info.EntriesAdded, info.Length, firstLen, firstMem>>10, lastLen, lastMem>>10, len(received))
}
