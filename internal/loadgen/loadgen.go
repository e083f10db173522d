// Package loadgen sends HTTP requests at an open-loop rate: each request
// leaves at its scheduled time whether or not earlier ones were answered, so
// a slow server shows as latency instead of a lower, politer rate. Latency is
// measured from the scheduled time, not from the moment a worker got free, so
// a generator that falls behind cannot hide it either.
//
// cmd/loadgen wraps it for operators; cmd/bench uses the same code against the
// bare ceiling handler and against ingest, so both are measured alike.
package loadgen

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// Request is one HTTP request a Source schedules.
type Request struct {
	// Kind names the request in results ("join", "heartbeat", "leave").
	Kind        string
	Method, URL string
	ContentType string
	Body        []byte
	// UserAgent and ForwardedFor, when set, are sent as User-Agent and
	// X-Forwarded-For (a mixed audience, Target.Mixed).
	UserAgent, ForwardedFor string
	// Viewer is the Source's own reference (for example a viewer index), given
	// back to Result.
	Viewer int
}

// Source decides what to send and when. Next is called from one goroutine;
// Result from many, concurrently, once per answered (or failed) request.
type Source interface {
	// Next returns the next request and its send time as an offset from the
	// start of the run; ok is false when the source has nothing more to send.
	// Offsets never decrease.
	Next() (at time.Duration, r Request, ok bool)
	// Result reports a request's answer: its HTTP status (0 on a transport
	// error) and body.
	Result(r Request, status int, body []byte)
}

// Config bounds a run. Duration and MaxRequests both stop the schedule, the
// first one reached wins; a run always ends within Duration plus Timeout.
type Config struct {
	Duration    time.Duration // no request is sent after this
	MaxRequests int           // no more than this many are sent
	Workers     int           // most requests in flight at once
	Timeout     time.Duration // per request
	Client      *http.Client  // nil: NewClient(Workers, Timeout)
	// Warmup leaves the answers to requests scheduled in the first Warmup out
	// of the summary (connections being opened, caches filling).
	Warmup time.Duration
	// Progress, when set, gets a line each second: rate, errors, p99.
	Progress io.Writer
}

// Validate reports the first out-of-range field.
func (c Config) Validate() error {
	switch {
	case c.Duration <= 0 || c.Duration > 24*time.Hour:
		return fmt.Errorf("duration %s: want above 0 and at most 24h", c.Duration)
	case c.MaxRequests <= 0:
		return fmt.Errorf("max requests %d: want above 0", c.MaxRequests)
	case c.Workers <= 0 || c.Workers > 100_000:
		return fmt.Errorf("workers %d: want 1 to 100000", c.Workers)
	case c.Timeout <= 0:
		return fmt.Errorf("timeout %s: want above 0", c.Timeout)
	case c.Warmup < 0 || c.Warmup >= c.Duration:
		return fmt.Errorf("warmup %s: want 0 or more and below the duration", c.Warmup)
	}
	return nil
}

// NewClient returns an HTTP client for workers concurrent requests: one
// keep-alive connection per worker, no compression.
func NewClient(workers int, timeout time.Duration) *http.Client {
	return &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			DialContext:         (&net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:        workers,
			MaxIdleConnsPerHost: workers,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
		},
	}
}

// Run sends src's requests on schedule until src ends, cfg's bounds are
// reached or ctx ends, waits for the answers in flight, and returns the
// summary. Errors: an invalid cfg.
func Run(ctx context.Context, cfg Config, src Source) (Summary, error) {
	if err := cfg.Validate(); err != nil {
		return Summary{}, err
	}
	client := cfg.Client
	if client == nil {
		client = NewClient(cfg.Workers, cfg.Timeout)
	}
	rec := newRecorder()
	start := time.Now()
	rec.start = start

	var progressDone chan struct{}
	stopProgress := make(chan struct{})
	if cfg.Progress != nil {
		progressDone = make(chan struct{})
		go func() {
			defer close(progressDone)
			rec.progress(cfg.Progress, stopProgress)
		}()
	}

	type job struct {
		due time.Time
		r   Request
	}
	jobs := make(chan job)
	var wg sync.WaitGroup
	workers := 0
	worker := func() {
		defer wg.Done()
		for j := range jobs {
			status, body, err := send(client, j.r)
			lat := time.Since(j.due)
			rec.add(j.due.Sub(start) < cfg.Warmup, status, err, lat)
			src.Result(j.r, status, body)
		}
	}

	sent := 0
	var planned time.Duration // the schedule's own end, when Duration cut it
schedule:
	for sent < cfg.MaxRequests {
		at, r, ok := src.Next()
		if !ok {
			break
		}
		if at >= cfg.Duration {
			planned = cfg.Duration
			break
		}
		due := start.Add(at)
		if d := time.Until(due); d > time.Millisecond {
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				break schedule
			}
		}
		j := job{due: due, r: r}
		select {
		case jobs <- j:
		default:
			if workers < cfg.Workers {
				workers++
				wg.Add(1)
				go worker()
			}
			select {
			case jobs <- j:
			case <-ctx.Done():
				break schedule
			}
		}
		sent++
	}
	sendDur := max(time.Since(start), planned)
	close(jobs)
	wg.Wait()
	close(stopProgress)
	if progressDone != nil {
		<-progressDone
	}
	return rec.summary(sent-rec.warm(), sendDur-cfg.Warmup, max(time.Since(start), sendDur)-cfg.Warmup, workers), nil
}

// send makes one request and reads the whole answer, so the connection is
// reused.
func send(client *http.Client, r Request) (int, []byte, error) {
	req, err := http.NewRequest(r.Method, r.URL, bytesReader(r.Body))
	if err != nil {
		return 0, nil, err
	}
	if r.ContentType != "" {
		req.Header.Set("Content-Type", r.ContentType)
	}
	if r.UserAgent != "" {
		req.Header.Set("User-Agent", r.UserAgent)
	}
	if r.ForwardedFor != "" {
		req.Header.Set("X-Forwarded-For", r.ForwardedFor)
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return resp.StatusCode, nil, err
	}
	return resp.StatusCode, body, nil
}

// errorKey names a failed request in Summary.Errors: its HTTP status, or
// "timeout" / "transport" when there was no answer.
func errorKey(status int, err error) string {
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return "timeout"
		}
		return "transport"
	}
	return strconv.Itoa(status)
}
