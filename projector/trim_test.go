package projector

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TestTrimKeepsWhatAnyGroupHasNotAcknowledged: two groups at different
// places; Trim removes only what both acknowledged and what is older than
// the retention.
func TestTrimKeepsWhatAnyGroupHasNotAcknowledged(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	e.workload(31, 150)
	all := e.rdb.XRange(ctx, e.keys.Stream(), "-", "+").Val()
	ids := make([]string, len(all))
	for i, m := range all {
		ids[i] = m.ID
	}
	stream := e.keys.Stream()
	far := time.Now().Add(1000 * time.Hour) // retention cut-off beyond every entry
	p := e.projector("p", e.db, func(c *Config) { c.Retention = time.Hour; c.Now = func() time.Time { return far } })

	// Another group that has read 60 entries and acknowledged 10..39.
	if err := e.rdb.XGroupCreate(ctx, stream, "archive", "0").Err(); err != nil {
		t.Fatal(err)
	}
	if err := e.rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "archive", Consumer: "x",
		Streams: []string{stream, ">"}, Count: 60, Block: -1}).Err(); err != nil {
		t.Fatal(err)
	}
	e.rdb.XAck(ctx, stream, "archive", ids[10:40]...)

	trim := func(want int64, firstLeft string) {
		t.Helper()
		n, err := p.Trim(ctx)
		if err != nil {
			t.Fatal(err)
		}
		first := e.rdb.XRangeN(ctx, stream, "-", "+", 1).Val()
		if n != want || len(first) == 0 || first[0].ID != firstLeft {
			t.Fatalf("trimmed %d, first left %v; want %d, %s", n, first, want, firstLeft)
		}
	}
	// The projector group has read nothing yet: nothing goes.
	trim(0, ids[0])
	e.stepUntilDrained(rand.New(rand.NewPCG(1, 1)), p)
	// The projector acknowledged everything; archive still holds 0..9 pending.
	trim(0, ids[0])
	e.rdb.XAck(ctx, stream, "archive", ids[:10]...)
	// Now archive's oldest unacknowledged entry is 40.
	trim(40, ids[40])
	e.rdb.XAck(ctx, stream, "archive", ids[40:60]...)
	// Nothing pending: everything up to archive's last delivered (59) is
	// acknowledged; that entry itself stays.
	trim(19, ids[59])

	// With the real clock and a day's retention, acknowledged entries stay.
	keep := e.projector("q", e.db, func(c *Config) { c.Retention = 24 * time.Hour; c.Now = time.Now })
	if err := e.rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "archive", Consumer: "x",
		Streams: []string{stream, ">"}, Block: -1}).Err(); err != nil {
		t.Fatal(err)
	}
	e.rdb.XAck(ctx, stream, "archive", ids[60:]...)
	if n, err := keep.Trim(ctx); err != nil || n != 0 {
		t.Fatalf("trim within retention = %d, %v", n, err)
	}
	// Trimming disabled.
	off := e.projector("r", e.db, nil)
	if n, err := off.Trim(ctx); err != nil || n != 0 {
		t.Fatalf("trim disabled = %d, %v", n, err)
	}
}
