package api_test

import (
	"context"
	"net/http"
	"net/netip"
	"testing"
	"time"

	"github.com/viewpulse/viewpulse/api"
	"github.com/viewpulse/viewpulse/events"
	"github.com/viewpulse/viewpulse/internal/testutil"
	"github.com/viewpulse/viewpulse/projector"
	"github.com/viewpulse/viewpulse/store"
)

// TestIPStorage: what of each viewer's address reaches the stream and, through
// the real projector, viewer_sessions, per IP_STORAGE mode; the country is
// found from the full address in every mode.
func TestIPStorage(t *testing.T) {
	cases := []struct {
		mode api.IPStorage
		// client address -> address kept ("" none)
		kept map[string]string
	}{
		{api.IPNone, map[string]string{"8.8.8.8": "", "203.0.113.77": "", "2001:db8:1234:5678::1": ""}},
		{api.IPTruncated, map[string]string{"8.8.8.8": "8.8.8.0", "203.0.113.77": "203.0.113.0", "2001:db8:1234:5678::1": "2001:db8:1234::"}},
		{api.IPFull, map[string]string{"8.8.8.8": "8.8.8.8", "203.0.113.77": "203.0.113.77", "2001:db8:1234:5678::1": "2001:db8:1234:5678::1"}},
	}
	for _, tc := range cases {
		t.Run(string(tc.mode), func(t *testing.T) {
			h := newHarness(t, func(c *api.Config) {
				c.IPStorage = tc.mode
				c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
			})
			users := map[string]string{} // user -> client address
			for ip := range tc.kept {
				user := "viewer-" + ip
				users[user] = ip
				a := h.do(http.MethodPost, "/v1/viewers/join", "application/json",
					`{"stage_arn":"`+stage+`","user_id":"`+user+`"}`, "X-Forwarded-For", ip)
				if a.status != 200 {
					t.Fatalf("join from %s: %d %v", ip, a.status, a.body)
				}
			}
			// The stream.
			msgs, err := h.rdb.XRange(context.Background(), h.stream.Keys().Stream(), "-", "+").Result()
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range msgs {
				e, err := events.Decode(m.ID, m.Values)
				if err != nil {
					t.Fatal(err)
				}
				ip := users[e.User]
				if _, has := m.Values[events.FieldIP]; has != (tc.kept[ip] != "") || e.IP != tc.kept[ip] {
					t.Errorf("stream: join from %s holds ip %q, want %q", ip, e.IP, tc.kept[ip])
				}
				if want := map[bool]string{true: "US"}[ip == "8.8.8.8"]; e.Country != want {
					t.Errorf("stream: join from %s has country %q, want %q", ip, e.Country, want)
				}
			}
			// PostgreSQL, written by the projector from that stream.
			rows := project(t, h)
			if len(rows) != len(tc.kept) {
				t.Fatalf("%d rows, want %d", len(rows), len(tc.kept))
			}
			for user, got := range rows {
				if ip := users[user]; got != tc.kept[ip] {
					t.Errorf("viewer_sessions: join from %s holds ip_address %q, want %q", ip, got, tc.kept[ip])
				}
			}
		})
	}
}

// project runs the real projector over the harness's stream into a fresh
// schema and returns user -> host(ip_address) ("" for NULL).
func project(t *testing.T, h *harness) map[string]string {
	t.Helper()
	ctx := context.Background()
	db, err := store.Open(ctx, testutil.Schema(t), store.Options{Migrate: true, MaxConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	p := projector.New(h.rdb, h.stream.Keys(), db, projector.Config{Consumer: "ip-test", Block: time.Millisecond})
	if err := p.Init(ctx); err != nil {
		t.Fatal(err)
	}
	total := h.streamLen()
	for done, i := int64(0), 0; done < total; i++ {
		if i > 100 {
			t.Fatalf("projected %d of %d entries", done, total)
		}
		n, err := p.Step(ctx)
		if err != nil {
			t.Fatal(err)
		}
		done += int64(n)
	}
	rs, err := db.Pool.Query(ctx, `SELECT user_id, coalesce(host(ip_address), '') FROM viewer_sessions`)
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	out := map[string]string{}
	for rs.Next() {
		var user, ip string
		if err := rs.Scan(&user, &ip); err != nil {
			t.Fatal(err)
		}
		out[user] = ip
	}
	if err := rs.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}
