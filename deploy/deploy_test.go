// Package deploy_test checks the deployment files against the processes:
// every metric the Grafana dashboard names is exported, with Prometheus's
// naming conventions.
package deploy_test

import (
	"bufio"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/viewpulse/viewpulse/api"
	"github.com/viewpulse/viewpulse/events"
	"github.com/viewpulse/viewpulse/internal/ops"
	"github.com/viewpulse/viewpulse/internal/testutil"
	"github.com/viewpulse/viewpulse/projector"
	"github.com/viewpulse/viewpulse/snapshotter"
)

// dashboard is the part of deploy/grafana/viewpulse.json the test reads.
type dashboard struct {
	Panels []struct {
		Title      string `json:"title"`
		Type       string `json:"type"`
		Datasource *struct {
			UID string `json:"uid"`
		} `json:"datasource"`
		Targets []struct {
			Expr       string `json:"expr"`
			Datasource *struct {
				UID string `json:"uid"`
			} `json:"datasource"`
		} `json:"targets"`
	} `json:"panels"`
}

var metricName = regexp.MustCompile(`\bviewpulse_[a-z0-9_]+`)

// TestDashboardMetricsAreExported starts the three processes' metric
// handlers as their mains wire them (ingest's api.NewServer, the projector's
// NewMetrics, the snapshotter's New, each on its own ops registry), makes
// ingest answer a few requests, scrapes each /metrics over HTTP, and checks
// that every metric a panel of the dashboard queries is among them.
func TestDashboardMetricsAreExported(t *testing.T) {
	raw, err := os.ReadFile("grafana/viewpulse.json")
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("viewpulse.json: %v", err)
	}
	wanted := map[string][]string{} // metric -> panels
	for _, p := range d.Panels {
		if p.Type == "row" {
			continue
		}
		if p.Datasource == nil || p.Datasource.UID != "${DS_PROMETHEUS}" {
			t.Errorf("panel %q: datasource must be ${DS_PROMETHEUS}", p.Title)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			if tg.Datasource == nil || tg.Datasource.UID != "${DS_PROMETHEUS}" {
				t.Errorf("panel %q: a target's datasource must be ${DS_PROMETHEUS}", p.Title)
			}
			names := metricName.FindAllString(tg.Expr, -1)
			if len(names) == 0 {
				t.Errorf("panel %q: %q names no viewpulse_ metric", p.Title, tg.Expr)
			}
			for _, n := range names {
				wanted[n] = append(wanted[n], p.Title)
			}
		}
	}

	exported := map[string]string{} // family -> type, over the three processes
	for process, types := range scrapeProcesses(t) {
		for name, typ := range types {
			checkConventions(t, process, name, typ)
			exported[name] = typ
		}
	}
	for _, name := range sortedKeys(wanted) {
		base := name
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if b, ok := strings.CutSuffix(name, suffix); ok && exported[b] == "histogram" {
				base = b
			}
		}
		if _, ok := exported[base]; !ok {
			t.Errorf("%s (panels %q) is exported by no process", name, wanted[name])
		}
	}
	if len(wanted) < 12 {
		t.Errorf("the dashboard names only %d metrics: %v", len(wanted), sortedKeys(wanted))
	}
}

// scrapeProcesses serves each process's /metrics and returns, per process,
// the families it exports with their types.
func scrapeProcesses(t *testing.T) map[string]map[string]string {
	t.Helper()
	rdb, prefix := testutil.Redis(t)
	stream := events.NewStream(rdb, prefix, 2*time.Minute)
	log := slog.New(slog.DiscardHandler)

	ingestReg := ops.NewRegistry()
	ingest := httptest.NewServer(api.NewServer(api.Config{Stream: stream, Registry: ingestReg, Log: log}))
	t.Cleanup(ingest.Close)
	resp, err := http.Post(ingest.URL+"/v1/viewers/join", "application/json",
		strings.NewReader(`{"stage_arn":"arn:aws:ivs:us-east-1:1:stage/grafana","user_id":"u"}`))
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("join: %v %v", resp, err)
	}
	resp.Body.Close()
	for _, path := range []string{"/v1/stages", "/v1/stages/nope/viewers"} { // a 200 and a 400
		if resp, err := http.Get(ingest.URL + path); err == nil {
			resp.Body.Close()
		}
	}

	projReg := ops.NewRegistry()
	projector.NewMetrics(projReg)
	proj := httptest.NewServer(ops.Handler(projReg, nil, log))
	t.Cleanup(proj.Close)

	snapReg := ops.NewRegistry()
	snapshotter.New(stream, nil, snapshotter.Config{}, log, snapReg)
	snap := httptest.NewServer(ops.Handler(snapReg, nil, log))
	t.Cleanup(snap.Close)

	return map[string]map[string]string{
		"ingest": scrape(t, ingest.URL), "projector": scrape(t, proj.URL), "snapshotter": scrape(t, snap.URL),
	}
}

// scrape reads base's /metrics: family name -> type, from the TYPE lines.
func scrape(t *testing.T, base string) map[string]string {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET %s/metrics = %d %s", base, resp.StatusCode, b)
	}
	out := map[string]string{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 4 && f[0] == "#" && f[1] == "TYPE" {
			out[f[2]] = f[3]
		}
	}
	return out
}

var (
	ourName   = regexp.MustCompile(`^viewpulse_[a-z][a-z0-9]*(_[a-z0-9]+)*$`)
	badUnits  = regexp.MustCompile(`_(ms|milliseconds|micro(seconds)?|us|ns|minutes|hours|days|kb|mb|percent)(_|$)`)
	timeWords = regexp.MustCompile(`(duration|latency|_age_|_time_|_elapsed_)`) // viewpulse_projector_lag counts entries
)

// checkConventions applies Prometheus's naming rules to one family: ours
// start viewpulse_ in lower snake case, counters and only counters end in
// _total, units are base units (seconds, not ms) and a duration says
// _seconds.
func checkConventions(t *testing.T, process, name, typ string) {
	t.Helper()
	for _, foreign := range []string{"go_", "process_", "promhttp_"} {
		if strings.HasPrefix(name, foreign) {
			return
		}
	}
	if !ourName.MatchString(name) {
		t.Errorf("%s exports %s: not viewpulse_ in lower snake case", process, name)
	}
	if (typ == "counter") != strings.HasSuffix(name, "_total") {
		t.Errorf("%s exports %s (%s): counters, and only counters, end in _total", process, name, typ)
	}
	if badUnits.MatchString(name) {
		t.Errorf("%s exports %s: use base units (seconds, bytes)", process, name)
	}
	if timeWords.MatchString(name+"_") && !strings.Contains(name, "_seconds") {
		t.Errorf("%s exports %s: a duration ends in _seconds", process, name)
	}
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
