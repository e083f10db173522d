package loadgen

import (
	"bytes"
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"strings"
	"sync"
	"time"
)

// Summary is what a run achieved.
type Summary struct {
	Sent      int            `json:"sent"`
	Completed int            `json:"completed"`
	OK        int            `json:"ok"`     // 2xx answers
	Errors    map[string]int `json:"errors"` // by status, "timeout" or "transport"
	// SendDuration is how long the schedule ran; Elapsed adds the wait for
	// the last answers.
	SendDuration time.Duration `json:"send_duration_ns"`
	Elapsed      time.Duration `json:"elapsed_ns"`
	Rate         float64       `json:"rate"`       // requests sent per second of the schedule
	Throughput   float64       `json:"throughput"` // 2xx answers per second of the whole run
	P50          time.Duration `json:"p50_ns"`
	P99          time.Duration `json:"p99_ns"`
	P999         time.Duration `json:"p999_ns"`
	Max          time.Duration `json:"max_ns"`
	Workers      int           `json:"workers"` // most requests that were in flight at once
}

// ErrorCount is the number of requests that got no 2xx answer.
func (s Summary) ErrorCount() int { return s.Completed - s.OK }

// ErrorRatio is ErrorCount over Completed (0 for an empty run).
func (s Summary) ErrorRatio() float64 {
	if s.Completed == 0 {
		return 0
	}
	return float64(s.ErrorCount()) / float64(s.Completed)
}

// Print writes the summary for an operator.
func (s Summary) Print(w io.Writer) {
	fmt.Fprintf(w, "requests  sent %d, answered %d, 2xx %d, errors %d (%.2f%%)\n",
		s.Sent, s.Completed, s.OK, s.ErrorCount(), 100*s.ErrorRatio())
	fmt.Fprintf(w, "rate      %.1f/s sent over %s, %.1f/s 2xx over %s\n",
		s.Rate, s.SendDuration.Round(time.Millisecond), s.Throughput, s.Elapsed.Round(time.Millisecond))
	fmt.Fprintf(w, "latency   p50 %s  p99 %s  p99.9 %s  max %s\n", ms(s.P50), ms(s.P99), ms(s.P999), ms(s.Max))
	if len(s.Errors) > 0 {
		fmt.Fprintf(w, "errors    %s\n", formatCounts(s.Errors))
	}
	fmt.Fprintf(w, "workers   %d in flight at most\n", s.Workers)
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond)) }

func formatCounts(m map[string]int) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s=%d", k, m[k]))
	}
	return strings.Join(parts, " ")
}

// Percentile returns the nearest-rank p-quantile (0 < p <= 1) of sorted
// latencies: the smallest value at or above which lies no more than 1-p of
// them. It returns 0 for no latencies.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	i = max(0, min(i, len(sorted)-1))
	return sorted[i]
}

// recorder collects results from the workers.
type recorder struct {
	mu        sync.Mutex
	start     time.Time
	latencies []time.Duration
	window    []time.Duration // since the last progress line
	ok        int
	errs      map[string]int
	windowErr int
	warmup    int // answers left out
}

func (r *recorder) warm() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.warmup
}

func newRecorder() *recorder { return &recorder{errs: map[string]int{}} }

func (r *recorder) add(warmup bool, status int, err error, lat time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if warmup {
		r.warmup++
		return
	}
	r.latencies = append(r.latencies, lat)
	r.window = append(r.window, lat)
	if err == nil && status >= 200 && status < 300 {
		r.ok++
		return
	}
	r.errs[errorKey(status, err)]++
	r.windowErr++
}

// progress writes one line a second until stop closes.
func (r *recorder) progress(w io.Writer, stop <-chan struct{}) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	last := time.Now()
	for {
		select {
		case <-stop:
			return
		case now := <-t.C:
			r.mu.Lock()
			win, errs := r.window, r.windowErr
			r.window, r.windowErr = make([]time.Duration, 0, len(win)), 0
			total, ok := len(r.latencies), r.ok
			r.mu.Unlock()
			slices.Sort(win)
			fmt.Fprintf(w, "%6s  answered %7.0f/s  errors %5d  p99 %9s  total %d (2xx %d)\n",
				now.Sub(r.start).Round(time.Second), float64(len(win))/now.Sub(last).Seconds(),
				errs, ms(Percentile(win, 0.99)), total, ok)
			last = now
		}
	}
}

func (r *recorder) summary(sent int, sendDur, elapsed time.Duration, workers int) Summary {
	r.mu.Lock()
	defer r.mu.Unlock()
	lat := slices.Clone(r.latencies)
	slices.Sort(lat)
	s := Summary{
		Sent: sent, Completed: len(lat), OK: r.ok, Errors: maps.Clone(r.errs),
		SendDuration: sendDur, Elapsed: elapsed, Workers: workers,
		P50: Percentile(lat, 0.50), P99: Percentile(lat, 0.99), P999: Percentile(lat, 0.999),
	}
	if len(lat) > 0 {
		s.Max = lat[len(lat)-1]
	}
	if sendDur > 0 {
		s.Rate = float64(sent) / sendDur.Seconds()
	}
	if elapsed > 0 {
		s.Throughput = float64(r.ok) / elapsed.Seconds()
	}
	return s
}

func bytesReader(b []byte) io.Reader {
	if b == nil {
		return nil
	}
	return bytes.NewReader(b)
}
