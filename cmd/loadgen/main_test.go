package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

func TestFlagsRejectBadValues(t *testing.T) {
	env := func(string) string { return "" }
	for _, args := range [][]string{
		{"-mode", "storm"},
		{"-rate", "0"},
		{"-rate", "-3"},
		{"-target", "127.0.0.1:8080"},
		{"-target", "ftp://127.0.0.1"},
		{"-duration", "0s"},
		{"-duration", "48h"},
		{"-max-requests", "0"},
		{"-stages", "0"},
		{"-vanish", "1.2"},
		{"-heartbeat", "0s"},
		{"-workers", "0"},
		{"extra"},
	} {
		var out strings.Builder
		if _, err := parseFlags(args, env, &out); err == nil {
			t.Errorf("%v: accepted", args)
		}
	}
}

func TestFlagsDefaults(t *testing.T) {
	var out strings.Builder
	o, err := parseFlags(nil, func(k string) string {
		if k == "LOADGEN_TARGET" {
			return "http://127.0.0.1:9999"
		}
		return ""
	}, &out)
	if err != nil {
		t.Fatal(err)
	}
	if o.target != "http://127.0.0.1:9999" || o.mode != "viewers" || o.stages != 200 || o.heartbeat.Seconds() != 30 {
		t.Errorf("defaults %+v", o)
	}
}

func TestRunJoinModeCounts(t *testing.T) {
	var joins atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/viewers/join" {
			joins.Add(1)
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"session_id":"01K0000000000000000000000A","viewers":1}`))
	}))
	defer srv.Close()
	var out strings.Builder
	err := run(context.Background(), []string{"-target", srv.URL, "-mode", "join", "-rate", "1000", "-max-requests", "40", "-duration", "10s"},
		func(string) string { return "" }, &out)
	if err != nil {
		t.Fatal(err)
	}
	if joins.Load() != 40 {
		t.Errorf("server saw %d joins, want 40", joins.Load())
	}
	if !strings.Contains(out.String(), "sent 40, answered 40, 2xx 40, errors 0") {
		t.Errorf("summary:\n%s", out.String())
	}
}

func TestRunHeartbeatModeJoinsThePoolFirst(t *testing.T) {
	var joins, beats atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v1/viewers/join":
			joins.Add(1)
		case "/v1/viewers/heartbeat":
			beats.Add(1)
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	var out strings.Builder
	err := run(context.Background(), []string{"-target", srv.URL, "-mode", "heartbeat", "-pool", "7", "-rate", "1000", "-max-requests", "30"},
		func(string) string { return "" }, &out)
	if err != nil {
		t.Fatal(err)
	}
	if joins.Load() != 7 || beats.Load() != 30 {
		t.Errorf("joins %d, heartbeats %d; want 7, 30", joins.Load(), beats.Load())
	}
}
