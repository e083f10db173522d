package api_test

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/viewpulse/viewpulse/api"
	"github.com/viewpulse/viewpulse/internal/testutil"
	"github.com/viewpulse/viewpulse/store"
)

// User agents of the analytics tests.
const (
	uaWindowsChrome = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
	uaIPhone        = "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1.1 Mobile/15E148 Safari/604.1"
	uaAndroid       = "Mozilla/5.0 (Linux; Android 13; Pixel 7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.6778.81 Mobile Safari/537.36"
	uaMacSafari     = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15"
	uaIPad          = "Mozilla/5.0 (iPad; CPU OS 17_7 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1"
	uaTizen         = "Mozilla/5.0 (SMART-TV; LINUX; Tizen 6.0) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/4.0 Chrome/76.0.3809.146 TV Safari/537.36"
	uaLinuxFirefox  = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"
	uaGooglebot     = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
	uaCurl          = "curl/8.5.0"
	uaPython        = "python-requests/2.32.3"
	// uaQuoted needs CSV quoting: quotes and commas.
	uaQuoted = `Mozilla/5.0 (X11; Linux x86_64) "Quoted, Agent" Firefox/133.0, like "x",y`
)

// view is one session a test plays through ingest: a join with the user
// agent and country, watch seconds later a leave (open: no leave).
type view struct {
	user, ua, country string
	watch             int
	open              bool
}

// newAnalyticsHarness is a read harness that takes the country from
// CloudFront-Viewer-Country, as behind CloudFront.
func newAnalyticsHarness(t *testing.T) (*harness, *store.DB) {
	return newReadHarness(t, func(c *api.Config) { c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")} })
}

// play joins and leaves each view in turn on stage, moving the clock.
func (h *harness) play(stage string, views ...view) {
	h.t.Helper()
	for _, v := range views {
		raw, _ := json.Marshal(map[string]string{"stage_arn": stage, "user_id": v.user})
		body := string(raw)
		headers := []string{"User-Agent", v.ua}
		if v.country != "" {
			headers = append(headers, "CloudFront-Viewer-Country", v.country)
		}
		a := h.do(http.MethodPost, "/v1/viewers/join", "application/json", body, headers...)
		if a.status != 200 {
			h.t.Fatalf("join %+v: %d %v", v, a.status, a.body)
		}
		h.clock.Add(time.Duration(v.watch) * time.Second)
		if !v.open {
			if a := h.post("/v1/viewers/leave", map[string]string{"session_id": a.body["session_id"].(string)}); a.status != 200 {
				h.t.Fatalf("leave %+v: %d %v", v, a.status, a.body)
			}
		}
		h.clock.Add(time.Second)
	}
}

// tableRows is every viewer_sessions row of stage.
func tableRows(t *testing.T, db *store.DB, stage string) []store.SessionRow {
	t.Helper()
	all, err := db.SessionsAfter(context.Background(), "", 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	var out []store.SessionRow
	for _, r := range all {
		if r.StageARN == stage {
			out = append(out, r)
		}
	}
	return out
}

// percentile is PostgreSQL's percentile_cont over vs, rounded to hundredths.
func percentile(vs []float64, p float64) float64 {
	vs = slices.Clone(vs)
	sort.Float64s(vs)
	pos := p * float64(len(vs)-1)
	lo := int(math.Floor(pos))
	v := vs[lo]
	if lo+1 < len(vs) {
		v += (pos - float64(lo)) * (vs[lo+1] - vs[lo])
	}
	return math.Round(v*100) / 100
}

// analyticsViews: a returning viewer's earlier session two days before, then
// in the window eight viewers' sessions (one open) and three bots' (one open).
var (
	earlierViews = []view{{user: "returner", ua: uaWindowsChrome, country: "GB", watch: 30}}
	windowViews  = []view{
		{"alice", uaWindowsChrome, "US", 10, false},
		{"alice", uaIPhone, "US", 25, false},
		{"bob", uaAndroid, "DE", 40, false},
		{"returner", uaMacSafari, "GB", 55, false},
		{"carol", uaIPad, "FR", 70, false},
		{"dave", uaTizen, "US", 15, false},
		{"erin", uaLinuxFirefox, "", 90, false},
		{"gbot", uaGooglebot, "US", 5, false},
		{"cbot", uaCurl, "US", 33, false},
		{"frank", uaWindowsChrome, "US", 20, true},
		{"pbot", uaPython, "NL", 3, true},
	}
)

func TestStatsBreakdownsAndBotsThroughProjector(t *testing.T) {
	h, db := newAnalyticsHarness(t)
	h.play(stage, earlierViews...)
	h.clock.Add(48 * time.Hour)
	h.play(stage, windowViews...)
	h.project(db)
	now := h.clock.Now()

	rows := tableRows(t, db, stage)
	if len(rows) != len(earlierViews)+len(windowViews) {
		t.Fatalf("%d rows, want %d", len(rows), len(earlierViews)+len(windowViews))
	}
	devices := map[string]string{}
	for _, r := range rows {
		devices[r.UserID+"/"+r.UserAgent] = r.DeviceType
	}
	for key, want := range map[string]string{"gbot/" + uaGooglebot: "bot", "cbot/" + uaCurl: "bot", "pbot/" + uaPython: "bot",
		"alice/" + uaIPhone: "mobile", "carol/" + uaIPad: "tablet", "dave/" + uaTizen: "tv", "erin/" + uaLinuxFirefox: "desktop"} {
		if devices[key] != want {
			t.Errorf("device_type of %s = %q, want %q", key, devices[key], want)
		}
	}

	for _, bots := range []bool{false, true} {
		t.Run(fmt.Sprintf("include_bots=%v", bots), func(t *testing.T) {
			// The expected figures, from the table's rows of the 1-day window.
			var views, watched int64
			var closed []float64
			users, returning := map[string]bool{}, map[string]bool{}
			for _, r := range rows {
				if !r.JoinedAt.After(now.Add(-24*time.Hour)) || (!bots && r.DeviceType == "bot") {
					continue
				}
				views++
				users[r.UserID] = true
				if r.LeftAt.IsZero() {
					watched += int64(now.Sub(r.JoinedAt) / time.Second)
				} else {
					watched += int64(r.WatchDurationSeconds.Int32)
					closed = append(closed, float64(r.WatchDurationSeconds.Int32))
				}
				for _, o := range rows {
					if o.UserID == r.UserID && !o.JoinedAt.After(now.Add(-24*time.Hour)) {
						returning[r.UserID] = true
					}
				}
			}
			q := "?days=1&include_bots=" + strconv.FormatBool(bots)
			a := h.get(stagePath(stage, "/stats"+q))
			if a.status != 200 {
				t.Fatalf("stats = %d %v", a.status, a.body)
			}
			want := map[string]float64{"total_views": float64(views), "unique_viewers": float64(len(users)),
				"total_watch_seconds": float64(watched), "returning_viewers": float64(len(returning)),
				"median_watch_seconds": percentile(closed, 0.5), "p90_watch_seconds": percentile(closed, 0.9)}
			for k, v := range want {
				if a.body[k] != v {
					t.Errorf("%s = %v, want %v", k, a.body[k], v)
				}
			}
			if n := map[bool]float64{false: 8, true: 11}[bots]; a.body["total_views"] != n || a.body["returning_viewers"] != 1.0 {
				t.Errorf("stats = %v, want %v views and 1 returning viewer", a.body, n)
			}

			// Every breakdown sums to the totals.
			for _, by := range []string{"country", "device", "os", "browser"} {
				b := h.get(stagePath(stage, "/breakdown"+q+"&by="+by))
				if b.status != 200 {
					t.Fatalf("breakdown by %s = %d %v", by, b.status, b.body)
				}
				var sumViews, sumWatch float64
				keys := map[string]float64{}
				prev := math.Inf(1)
				for _, r := range b.body["rows"].([]any) {
					m := r.(map[string]any)
					v := m["views"].(float64)
					if v > prev {
						t.Errorf("by %s: rows not sorted by views: %v", by, b.body["rows"])
					}
					prev = v
					sumViews += v
					sumWatch += m["watch_seconds"].(float64)
					keys[m["key"].(string)] = v
					if m["unique_viewers"].(float64) > v {
						t.Errorf("by %s: %v has more viewers than views", by, m)
					}
				}
				if sumViews != a.body["total_views"] || sumWatch != a.body["total_watch_seconds"] {
					t.Errorf("by %s: sums %v views %v watch, stats %v and %v", by, sumViews, sumWatch, a.body["total_views"], a.body["total_watch_seconds"])
				}
				switch by {
				case "device":
					if keys["bot"] != map[bool]float64{false: 0, true: 3}[bots] || keys["desktop"] != 4 || keys["tv"] != 1 || keys["tablet"] != 1 {
						t.Errorf("by device = %v", keys)
					}
				case "country":
					if keys["unknown"] != 1 || keys["US"] != map[bool]float64{false: 4, true: 6}[bots] {
						t.Errorf("by country = %v", keys)
					}
				}
			}
		})
	}
}

func TestBreakdownTopFiftyAndOther(t *testing.T) {
	h, db := newReadHarness(t)
	now := h.clock.Now()
	// Browser bNN has NN views (one user each), 10 s each: 60 keys.
	n := 0
	for k := 1; k <= 60; k++ {
		for i := 0; i < k; i++ {
			n++
			exec(t, db, `INSERT INTO viewer_sessions (session_id, user_id, stage_arn, joined_at, last_seen_at, left_at, device_type, browser)
				VALUES ($1, $2, $3, $4, $5, $5, 'desktop', $6)`, sid(n), fmt.Sprintf("u%d", i), stage, now.Add(-time.Hour), now.Add(-time.Hour+10*time.Second), fmt.Sprintf("b%02d", k))
		}
	}
	a := h.get(stagePath(stage, "/breakdown?by=browser"))
	got := a.body["rows"].([]any)
	if a.status != 200 || len(got) != 51 {
		t.Fatalf("breakdown = %d, %d rows", a.status, len(got))
	}
	for i, r := range got[:50] {
		m := r.(map[string]any)
		if want := fmt.Sprintf("b%02d", 60-i); m["key"] != want || m["views"] != float64(60-i) {
			t.Errorf("row %d = %v, want %s", i, m, want)
		}
	}
	// b01..b10: 55 views by users u0..u9, 550 s.
	if other := got[50].(map[string]any); other["key"] != "other" || other["views"] != 55.0 || other["unique_viewers"] != 10.0 || other["watch_seconds"] != 550.0 {
		t.Errorf("other = %v", other)
	}
}

func TestSeriesBuckets(t *testing.T) {
	h, db := newReadHarness(t)
	T := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	for _, s := range []struct {
		at          time.Duration
		count, peak int
	}{{0, 2, 3}, {30 * time.Second, 4, 5}, {time.Minute, 0, 0}, {10 * time.Minute, 6, 6}, {2 * time.Hour, 1, 2}, {24*time.Hour + 5*time.Minute, 3, 3}} {
		snapshot(t, db, stage, T.Add(s.at), s.count, s.peak)
	}
	snapshot(t, db, otherStage, T, 100, 100)

	type pt struct {
		at   time.Duration
		avg  float64
		peak float64
	}
	q := func(from, to time.Time, step string) string {
		return stagePath(stage, "/series?from="+url.QueryEscape(from.Format(time.RFC3339))+"&to="+url.QueryEscape(to.Format(time.RFC3339))+"&step="+step)
	}
	cases := []struct {
		from, to time.Time
		step     string
		wantStep string
		want     []pt
	}{
		// The 0 row makes a point of 0; the empty minutes between are absent.
		{T, T.Add(48 * time.Hour), "1m", "1m", []pt{{0, 3, 5}, {time.Minute, 0, 0}, {10 * time.Minute, 6, 6}, {2 * time.Hour, 1, 2}, {24*time.Hour + 5*time.Minute, 3, 3}}},
		{T, T.Add(48 * time.Hour), "5m", "5m", []pt{{0, 2, 5}, {10 * time.Minute, 6, 6}, {2 * time.Hour, 1, 2}, {24*time.Hour + 5*time.Minute, 3, 3}}},
		{T, T.Add(48 * time.Hour), "1h", "1h", []pt{{0, 3, 6}, {2 * time.Hour, 1, 2}, {24 * time.Hour, 3, 3}}},
		{T, T.Add(48 * time.Hour), "1d", "1d", []pt{{0, 2.6, 6}, {24 * time.Hour, 3, 3}}},
		// auto: 2,880 minutes and 576 five-minute buckets are over 500.
		{T, T.Add(48 * time.Hour), "auto", "1h", []pt{{0, 3, 6}, {2 * time.Hour, 1, 2}, {24 * time.Hour, 3, 3}}},
		{T, T.Add(6 * time.Hour), "", "1m", []pt{{0, 3, 5}, {time.Minute, 0, 0}, {10 * time.Minute, 6, 6}, {2 * time.Hour, 1, 2}}},
		// from is inclusive, to exclusive; the bucket keeps its aligned time.
		{T.Add(30 * time.Second), T.Add(2 * time.Hour), "1h", "1h", []pt{{0, 3.33, 6}}},
		{T.Add(3 * time.Hour), T.Add(23 * time.Hour), "1h", "1h", nil},
	}
	for _, c := range cases {
		a := h.get(q(c.from, c.to, c.step))
		if a.status != 200 || a.body["step"] != c.wantStep {
			t.Errorf("%s: %d %v, want step %s", q(c.from, c.to, c.step), a.status, a.body, c.wantStep)
			continue
		}
		got := a.body["points"].([]any)
		if len(got) != len(c.want) {
			t.Errorf("step %s from %v: %d points %v, want %v", c.step, c.from, len(got), got, c.want)
			continue
		}
		for i, w := range c.want {
			m := got[i].(map[string]any)
			at, _ := time.Parse(time.RFC3339Nano, m["time"].(string))
			if !at.Equal(T.Add(w.at)) || m["avg_viewers"] != w.avg || m["peak_viewers"] != w.peak {
				t.Errorf("step %s point %d = %v, want %v avg %v peak %v", c.step, i, m, T.Add(w.at), w.avg, w.peak)
			}
		}
	}

	year := T.Add(-365 * 24 * time.Hour)
	if a := h.get(q(year, T.Add(time.Hour), "auto")); a.status != 200 || a.body["step"] != "1d" {
		t.Errorf("a year, auto = %d %v", a.status, a.body["step"])
	}
	for _, bad := range []struct{ path, code string }{
		{q(T, T.Add(time.Hour), "2m"), "invalid_step"},
		{q(year, T, "1m"), "invalid_step"},
		{q(T, T.Add(-time.Hour), "1h"), "invalid_window"},
		{q(T.Add(-367*24*time.Hour), T, "1d"), "invalid_window"},
		{stagePath(stage, "/series?from=yesterday"), "invalid_from"},
		{stagePath(stage, "/series?to=1"), "invalid_to"},
		{"/v1/stages/not-an-arn/series", "invalid_stage_arn"},
	} {
		if a := h.get(bad.path); a.status != 400 || a.code() != bad.code {
			t.Errorf("%s = %d %v, want 400 %s", bad.path, a.status, a.body, bad.code)
		}
	}
}

func TestAnalyticsBadParameters(t *testing.T) {
	h, _ := newReadHarness(t)
	for _, bad := range []struct{ path, code string }{
		{stagePath(stage, "/breakdown"), "invalid_by"},
		{stagePath(stage, "/breakdown?by=city"), "invalid_by"},
		{stagePath(stage, "/breakdown?by=os&days=0"), "invalid_days"},
		{stagePath(stage, "/breakdown?by=os&include_bots=yes"), "invalid_include_bots"},
		{stagePath(stage, "/stats?include_bots=1"), "invalid_include_bots"},
		{"/v1/stages/x/breakdown?by=os", "invalid_stage_arn"},
		{stagePath(stage, "/sessions.csv?from=x"), "invalid_from"},
		{stagePath(stage, "/sessions.csv?from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z"), "invalid_window"},
		{"/v1/stages/x/sessions.csv", "invalid_stage_arn"},
		{"/v1/users/%01/history.csv", "invalid_user_id"},
	} {
		if a := h.get(bad.path); a.status != 400 || a.code() != bad.code {
			t.Errorf("%s = %d %v, want 400 %s", bad.path, a.status, a.body, bad.code)
		}
	}
	// An empty stage has empty answers, not errors.
	if a := h.get(stagePath(stage, "/breakdown?by=device")); a.status != 200 || len(a.body["rows"].([]any)) != 0 {
		t.Errorf("empty breakdown = %d %v", a.status, a.body)
	}
	if a := h.get(stagePath(stage, "/stats")); a.status != 200 || a.body["median_watch_seconds"] != nil || a.body["returning_viewers"] != 0.0 {
		t.Errorf("empty stats = %d %v", a.status, a.body)
	}
}

// getCSV fetches path and parses its body as CSV.
func (h *harness) getCSV(path string) (*http.Response, [][]string) {
	h.t.Helper()
	resp, err := http.Get(h.srv.URL + path)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		h.t.Fatalf("GET %s = %d %s", path, resp.StatusCode, raw)
	}
	r := csv.NewReader(strings.NewReader(string(raw)))
	recs, err := r.ReadAll()
	if err != nil {
		h.t.Fatalf("GET %s: not CSV: %v\n%s", path, err, raw)
	}
	if !strings.HasSuffix(string(raw), "\r\n") {
		h.t.Errorf("GET %s: records do not end in CRLF", path)
	}
	return resp, recs
}

// csvRow is a CSV record as a store.SessionRow.
func csvRow(t *testing.T, rec []string) store.SessionRow {
	t.Helper()
	f := map[string]string{}
	for i, c := range store.ExportColumns {
		f[c] = rec[i]
	}
	tm := func(c string) time.Time {
		if f[c] == "" {
			return time.Time{}
		}
		v, err := time.Parse(time.RFC3339Nano, f[c])
		if err != nil {
			t.Fatalf("%s %q: %v", c, f[c], err)
		}
		return v
	}
	r := store.SessionRow{SessionID: f["session_id"], UserID: f["user_id"], StageARN: f["stage_arn"], ParticipantID: f["participant_id"],
		JoinedAt: tm("joined_at"), LastSeenAt: tm("last_seen_at"), LeftAt: tm("left_at"), EndReason: f["end_reason"],
		UserAgent: f["user_agent"], IPAddress: f["ip_address"], CountryCode: f["country_code"],
		DeviceType: f["device_type"], OS: f["os"], Browser: f["browser"]}
	if w := f["watch_duration_seconds"]; w != "" {
		n, err := strconv.Atoi(w)
		if err != nil {
			t.Fatalf("watch_duration_seconds %q", w)
		}
		r.WatchDurationSeconds.Int32, r.WatchDurationSeconds.Valid = int32(n), true
	}
	return r
}

func TestCSVExportsParseBackIntoTheTable(t *testing.T) {
	h, db := newAnalyticsHarness(t)
	start := h.clock.Now()
	h.play(stage, view{"quoted,\"user\"", uaQuoted, "US", 12, false}, view{"alice", uaIPhone, "GB", 7, false},
		view{"gbot", uaGooglebot, "", 3, false}, view{"alice", uaWindowsChrome, "", 5, true})
	h.play(otherStage, view{"alice", uaAndroid, "DE", 4, false})
	h.project(db)
	rows := tableRows(t, db, stage)
	if len(rows) != 4 {
		t.Fatalf("%d rows", len(rows))
	}

	resp, recs := h.getCSV(stagePath(stage, "/sessions.csv?from="+url.QueryEscape(start.Add(-time.Second).Format(time.RFC3339Nano))))
	if cd := resp.Header.Get("Content-Disposition"); !strings.HasPrefix(cd, `attachment; filename="sessions-AbCd1234.csv"`) {
		t.Errorf("Content-Disposition = %q", cd)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/csv; charset=utf-8" {
		t.Errorf("Content-Type = %q", ct)
	}
	if !slices.Equal(recs[0], store.ExportColumns) {
		t.Fatalf("header = %v", recs[0])
	}
	// Every session, the bot's too, in join order, equal to the table's.
	got := make([]store.SessionRow, 0, len(recs)-1)
	for _, rec := range recs[1:] {
		got = append(got, csvRow(t, rec))
	}
	want := slices.Clone(rows)
	slices.SortFunc(want, func(a, b store.SessionRow) int { return a.JoinedAt.Compare(b.JoinedAt) })
	if !slices.Equal(got, want) {
		t.Errorf("CSV rows\n%+v\nwant the table's\n%+v", got, want)
	}
	var quoted, bot bool
	for _, r := range got {
		quoted = quoted || (r.UserAgent == uaQuoted && r.UserID == `quoted,"user"`)
		bot = bot || r.DeviceType == "bot"
	}
	if !quoted || !bot {
		t.Errorf("quoted user agent kept: %v, bot exported: %v", quoted, bot)
	}

	// The window bounds the export: from after every join is the header only.
	if _, recs := h.getCSV(stagePath(stage, "/sessions.csv?from="+url.QueryEscape(h.clock.Now().Format(time.RFC3339Nano)))); len(recs) != 1 {
		t.Errorf("empty window: %d records", len(recs))
	}

	// alice's history: her sessions of both stages, newest first.
	resp, recs = h.getCSV("/v1/users/alice/history.csv")
	if cd := resp.Header.Get("Content-Disposition"); !strings.HasPrefix(cd, "attachment;") {
		t.Errorf("Content-Disposition = %q", cd)
	}
	var hist []store.SessionRow
	for _, rec := range recs[1:] {
		hist = append(hist, csvRow(t, rec))
	}
	var wantHist []store.SessionRow
	for _, st := range []string{stage, otherStage} {
		for _, r := range tableRows(t, db, st) {
			if r.UserID == "alice" {
				wantHist = append(wantHist, r)
			}
		}
	}
	slices.SortFunc(wantHist, func(a, b store.SessionRow) int { return b.JoinedAt.Compare(a.JoinedAt) })
	if len(wantHist) != 3 || !slices.Equal(hist, wantHist) {
		t.Errorf("history CSV\n%+v\nwant\n%+v", hist, wantHist)
	}
	if _, recs := h.getCSV("/v1/users/nobody/history.csv"); len(recs) != 1 {
		t.Errorf("unknown user: %d records", len(recs))
	}
}

// TestCSVExportCutShortAbortsTheConnection: when PostgreSQL goes away in the
// middle of an export, the answer (already 200) is cut off without its end,
// so the client sees an error rather than a complete-looking file.
func TestCSVExportCutShortAbortsTheConnection(t *testing.T) {
	proxy, dsn := testutil.ProxyURL(t, testutil.Schema(t))
	db, err := store.Open(context.Background(), dsn, store.Options{Migrate: true, MaxConns: 4})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	h := newHarness(t, func(c *api.Config) { c.ReadDB = db })
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	exec(t, db, `INSERT INTO viewer_sessions (session_id, user_id, stage_arn, joined_at, last_seen_at, user_agent)
		SELECT lpad(i::text, 26, '0'), 'u', $1, $2::timestamptz + i * interval '1 second', $2::timestamptz + i * interval '1 second', repeat('x', 200)
		  FROM generate_series(1, 100000) AS i`, stage, start)

	resp, err := http.Get(h.srv.URL + stagePath(stage, "/sessions.csv?from=2025-12-31T00:00:00Z&to=2026-02-01T00:00:00Z"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if _, err := io.ReadFull(resp.Body, make([]byte, 64<<10)); err != nil {
		t.Fatal(err)
	}
	proxy.Stop()
	rest, err := io.ReadAll(resp.Body)
	if err == nil {
		t.Fatalf("the export ended cleanly after PostgreSQL went away (%d more bytes)", len(rest))
	}
	t.Logf("cut short after %d more bytes: %v", len(rest), err)
}
