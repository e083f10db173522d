package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/viewpulse/viewpulse/events"
	"github.com/viewpulse/viewpulse/internal/testutil"
)

// TestTwoIngestsShareOneJoinLimit: two ingest processes on one Redis and one
// REDIS_PREFIX enforce JOIN_RATE together: of 20 joins from one address,
// alternating between them, exactly 10 succeed, the rest are 429 with
// Retry-After, and the stream holds exactly the 10.
func TestTwoIngestsShareOneJoinLimit(t *testing.T) {
	rdb, prefix := testutil.Redis(t)
	env := map[string]string{"JOIN_RATE": "10/m", "JOIN_RATE_PER_USER": "off", "READ_API": "false"}
	bases := []string{startIngest(t, prefix, env, nil), startIngest(t, prefix, env, nil)}
	ok := map[string]bool{}
	for i := range 20 {
		user := fmt.Sprint("viewer-", i)
		status, header, body := postJoin(t, bases[i%2], user)
		switch status {
		case http.StatusOK:
			ok[user] = true
		case http.StatusTooManyRequests:
			retry, err := strconv.Atoi(header.Get("Retry-After"))
			if err != nil || retry < 1 || retry > 6 || !strings.Contains(body, `"rate_limited"`) {
				t.Fatalf("join %d: 429 %s, Retry-After %q (want 1-6: one join per 6 s)", i, body, header.Get("Retry-After"))
			}
		default:
			t.Fatalf("join %d: %d %s", i, status, body)
		}
	}
	if len(ok) != 10 {
		t.Fatalf("%d joins succeeded across the two processes, want 10", len(ok))
	}
	msgs, err := rdb.XRange(context.Background(), events.NewKeys(prefix).Stream(), "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	inStream := map[string]bool{}
	for _, m := range msgs {
		e, err := events.Decode(m.ID, m.Values)
		if err != nil || e.Type != events.Join {
			t.Fatalf("entry %v: %+v %v", m.Values, e, err)
		}
		inStream[e.User] = true
	}
	if len(msgs) != 10 || len(inStream) != 10 {
		t.Fatalf("stream holds %d entries of %d users, want the 10 accepted joins", len(msgs), len(inStream))
	}
	for u := range ok {
		if !inStream[u] {
			t.Fatalf("accepted join of %s is not in the stream", u)
		}
	}
}

// TestRunRefusesBadTrustConfig: a bad rate or IP_STORAGE refuses the start,
// naming each variable.
func TestRunRefusesBadLimitConfig(t *testing.T) {
	env := map[string]string{"JOIN_RATE": "600/min", "JOIN_RATE_PER_USER": "0/m", "TOKEN_RATE": "fast", "IP_STORAGE": "hashed", "HEARTBEAT_SKIP": "maybe"}
	err := run(context.Background(), nil, func(k string) string { return env[k] }, &bytes.Buffer{})
	if err == nil {
		t.Fatal("started with bad values")
	}
	for name := range env {
		if !strings.Contains(err.Error(), name+"=") {
			t.Errorf("error does not name %s: %v", name, err)
		}
	}
}

func postJoin(t *testing.T, base, user string) (int, http.Header, string) {
	t.Helper()
	resp, err := http.Post(base+"/v1/viewers/join", "application/json",
		strings.NewReader(`{"stage_arn":"arn:aws:ivs:us-east-1:1:stage/x","user_id":"`+user+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

// TestRunIPStorageNone: IP_STORAGE=none reaches the join step: the stream
// holds no address (the full mode would hold 127.0.0.1).
func TestRunIPStorageNone(t *testing.T) {
	for mode, wantIP := range map[string]string{"none": "", "full": "127.0.0.1"} {
		t.Run(mode, func(t *testing.T) {
			rdb, prefix := testutil.Redis(t)
			base := startIngest(t, prefix, map[string]string{"IP_STORAGE": mode, "READ_API": "false"}, nil)
			if status, _, body := postJoin(t, base, "u"); status != 200 {
				t.Fatalf("join: %d %s", status, body)
			}
			msgs, err := rdb.XRange(context.Background(), events.NewKeys(prefix).Stream(), "-", "+").Result()
			if err != nil || len(msgs) != 1 {
				t.Fatalf("stream: %v %v", msgs, err)
			}
			if ip, _ := msgs[0].Values[events.FieldIP].(string); ip != wantIP {
				t.Fatalf("join event ip %q, want %q", ip, wantIP)
			}
		})
	}
}
