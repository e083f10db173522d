package api_test

import (
	"bufio"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/viewpulse/viewpulse/api"
	"github.com/viewpulse/viewpulse/events"
	"github.com/viewpulse/viewpulse/internal/testutil"
)

// discardWriter is an http.ResponseWriter (and Flusher) that counts and
// drops the body.
type discardWriter struct {
	h      http.Header
	status int
	n      int64
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) WriteHeader(s int)           { w.status = s }
func (w *discardWriter) Write(p []byte) (int, error) { w.n += int64(len(p)); return len(p), nil }
func (w *discardWriter) Flush()                      {}

// peakRSS is the process's peak resident set (VmHWM), in bytes.
func peakRSS(tb testing.TB) int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// BenchmarkExportOneMillionSessionsCSV streams a 1,000,000-session export
// through the real handler into a discarding writer, sampling the Go heap
// every 5 ms. It reports the peak heap in use during the export, its rise
// over the heap before, and the process's peak RSS. Run it once:
//
//	go test -run XXX -bench ExportOneMillion -benchtime=1x ./api/
func BenchmarkExportOneMillionSessionsCSV(b *testing.B) {
	const rows = 1_000_000
	db := newReadDB(b)
	rdb, prefix := testutil.Redis(b)
	ctx := context.Background()
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	if _, err := db.Pool.Exec(ctx, `
INSERT INTO viewer_sessions (session_id, user_id, stage_arn, participant_id, joined_at, last_seen_at, left_at, end_reason,
    user_agent, ip_address, country_code, device_type, os, browser)
SELECT lpad(i::text, 26, '0'), 'user-' || (i % 50000), $1, 'p' || i, $2::timestamptz + i * interval '1 second',
       $2::timestamptz + i * interval '1 second' + interval '95 seconds', $2::timestamptz + i * interval '1 second' + interval '95 seconds', 'leave',
       'Mozilla/5.0 (X11; Linux x86_64) "Quoted, Agent" Firefox/133.0', '81.2.69.160', 'GB', 'desktop', 'Linux', 'Firefox'
  FROM generate_series(1, $3::int) AS i`, stage, start, rows); err != nil {
		b.Fatal(err)
	}
	if _, err := db.Pool.Exec(ctx, `VACUUM (ANALYZE) viewer_sessions`); err != nil {
		b.Fatal(err)
	}
	srv := api.NewServer(api.Config{Stream: events.NewStream(rdb, prefix, 120*time.Second), ReadDB: db})
	path := stagePath(stage, "/sessions.csv?from=2025-12-31T00:00:00Z&to=2026-02-01T00:00:00Z")

	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	before := ms.HeapInuse
	var peak uint64
	var bytes int64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		done := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			t := time.NewTicker(5 * time.Millisecond)
			defer t.Stop()
			var m runtime.MemStats
			for {
				runtime.ReadMemStats(&m)
				peak = max(peak, m.HeapInuse)
				select {
				case <-done:
					return
				case <-t.C:
				}
			}
		}()
		w := &discardWriter{h: http.Header{}}
		srv.ServeHTTP(w, httptest.NewRequest(http.MethodGet, path, nil))
		close(done)
		wg.Wait()
		if w.status != http.StatusOK || w.n < rows*100 {
			b.Fatalf("export: status %d, %d bytes", w.status, w.n)
		}
		bytes = w.n
	}
	b.StopTimer()
	b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MiB")
	b.ReportMetric(float64(peak-min(peak, before))/(1<<20), "heap-rise-MiB")
	b.ReportMetric(float64(peakRSS(b))/(1<<20), "peak-RSS-MiB")
	b.ReportMetric(float64(bytes)/(1<<20), "csv-MiB")
}
