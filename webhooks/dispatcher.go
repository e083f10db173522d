package webhooks

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sourcegraph/conc"

	"github.com/viewpulse/viewpulse/store"
)

// DispatcherConfig tunes a Dispatcher; zero values take the defaults.
type DispatcherConfig struct {
	Secret string // WEBHOOK_SECRET; required
	// Concurrency is how many deliveries one dispatcher has in flight at
	// most. Default 4.
	Concurrency int
	// Timeout bounds one POST, answer included. Default 10s.
	Timeout time.Duration
	// Lease is how long a claimed delivery is hidden from other claims: a
	// dispatcher that dies mid-delivery leaves it to be retried this long
	// after its claim. It must exceed Timeout, or a slow attempt could be
	// claimed a second time while in flight: default Timeout + 20s, and
	// never less than Timeout + 5s.
	Lease time.Duration
	// Poll is how often the outbox is looked at when nothing is in flight.
	// Default 1s.
	Poll time.Duration
	// BackoffBase is the wait after a first failed attempt; it doubles with
	// each failure up to BackoffMax, and each wait is jittered between half
	// of it and all of it. Defaults 5s and 1h.
	BackoffBase, BackoffMax time.Duration
	// RetryFor is how long after an event its deliveries are retried; the
	// last attempt is made then, and one failing at or after it gives up.
	// Default 24h.
	RetryFor time.Duration
	// Retention is how long delivered and given-up rows stay in the outbox,
	// pruned every PruneEvery. Defaults 7 days and 1h.
	Retention, PruneEvery time.Duration
	// GaugeEvery is how often viewpulse_webhook_outbox_due is refreshed.
	// Default 15s.
	GaugeEvery time.Duration
}

func (c DispatcherConfig) withDefaults() DispatcherConfig {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	if c.Concurrency <= 0 {
		c.Concurrency = 4
	}
	def(&c.Timeout, 10*time.Second)
	def(&c.Lease, c.Timeout+20*time.Second)
	// an attempt lasts up to Timeout and its record a few seconds more
	c.Lease = max(c.Lease, c.Timeout+5*time.Second)
	def(&c.Poll, time.Second)
	def(&c.BackoffBase, 5*time.Second)
	def(&c.BackoffMax, time.Hour)
	def(&c.RetryFor, 24*time.Hour)
	def(&c.Retention, 7*24*time.Hour)
	def(&c.PruneEvery, time.Hour)
	def(&c.GaugeEvery, 15*time.Second)
	return c
}

// UserAgent is the User-Agent of every webhook request.
const UserAgent = "ViewPulse-Webhooks/1"

// Dispatcher delivers the outbox's due rows. Any number may run on one
// outbox, in one process or many: a row is claimed by one at a time.
type Dispatcher struct {
	outbox *store.Outbox
	cfg    DispatcherConfig
	client *http.Client
	log    *slog.Logger
	m      *dispatchMetrics
	wake   chan struct{}
	// Now is the clock of claims, signatures and retry times.
	Now func() time.Time
}

// NewDispatcher returns a Dispatcher over outbox whose metrics are
// registered on reg. It panics if reg already holds them (a programming
// error).
func NewDispatcher(outbox *store.Outbox, cfg DispatcherConfig, log *slog.Logger, reg prometheus.Registerer) *Dispatcher {
	cfg = cfg.withDefaults()
	return &Dispatcher{
		outbox: outbox,
		cfg:    cfg,
		client: &http.Client{
			Timeout: cfg.Timeout,
			// A redirect is an answer that is not 2xx: a failure, as with
			// Stripe. Following it would POST the event elsewhere.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		log:  log,
		m:    newDispatchMetrics(reg),
		wake: make(chan struct{}, 1),
		Now:  time.Now,
	}
}

// Run claims due deliveries and POSTs them, at most Concurrency at a time,
// until ctx ends; it also prunes old rows and refreshes the due gauge. A
// failed claim is logged and retried at the next poll. Deliveries in flight
// when ctx ends are finished (each is bounded by Timeout) before Run returns
// nil.
func (d *Dispatcher) Run(ctx context.Context) error {
	var wg conc.WaitGroup
	defer wg.Wait()
	slots := make(chan struct{}, d.cfg.Concurrency)
	poll := time.NewTimer(0)
	defer poll.Stop()
	prune := time.NewTicker(d.cfg.PruneEvery)
	defer prune.Stop()
	gauge := time.NewTicker(d.cfg.GaugeEvery)
	defer gauge.Stop()
	d.refreshDue(ctx)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-poll.C:
			poll.Reset(d.cfg.Poll)
		case <-d.wake:
		case <-prune.C:
			d.prune(ctx)
			continue
		case <-gauge.C:
			d.refreshDue(ctx)
			continue
		}
		free := cap(slots) - len(slots)
		if free == 0 {
			continue // a finished delivery wakes the loop
		}
		rows, err := d.outbox.ClaimDue(ctx, d.Now(), free, d.cfg.Lease)
		if err != nil {
			if ctx.Err() == nil {
				d.log.Error("webhook claim failed", "err", err)
			}
			continue
		}
		for _, row := range rows {
			slots <- struct{}{}
			wg.Go(func() {
				defer func() {
					<-slots
					d.Wake()
				}()
				d.deliver(ctx, row)
			})
		}
	}
}

// Wake makes Run look at the outbox now rather than at its next poll.
func (d *Dispatcher) Wake() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// deliver makes one attempt of row and records its outcome. The attempt and
// its record outlive ctx (a shutdown lets them finish, bounded by Timeout
// and a few seconds): a row left claimed would wait for its lease.
func (d *Dispatcher) deliver(ctx context.Context, row store.WebhookDelivery) {
	ctx = context.WithoutCancel(ctx)
	start := time.Now()
	err := d.post(ctx, row)
	d.m.seconds.Observe(time.Since(start).Seconds())
	now := d.Now()
	mctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	log := d.log.With("event_id", row.ID, "type", row.Type, "host", host(row.URL), "attempt", row.Attempts)
	if err == nil {
		if err := d.outbox.MarkDelivered(mctx, row, now); err != nil {
			// delivered again after its lease: at-least-once
			log.Error("webhook delivered but not marked", "err", err)
		}
		d.m.delivered.Inc() // after the mark, so that the count implies it
		return
	}
	next := now.Add(d.backoff(row.Attempts))
	gaveUp, merr := d.outbox.MarkFailed(mctx, row, now, next, d.cfg.RetryFor, err.Error())
	switch {
	case merr != nil:
		d.m.failed.Inc()
		log.Error("webhook failure not recorded; retried after its lease", "err", merr, "failure", err)
	case gaveUp:
		d.m.givenUp.Inc()
		log.Warn("webhook given up", "err", err, "retried_for", d.cfg.RetryFor)
	default:
		d.m.failed.Inc()
		log.Info("webhook failed; will retry", "err", err, "next_attempt_at", next)
	}
}

// post sends row once. Errors: the transport's (refused, timed out), or an
// answer that is not 2xx.
func (d *Dispatcher) post(ctx context.Context, row store.WebhookDelivery) error {
	ctx, cancel := context.WithTimeout(ctx, d.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, row.URL, bytes.NewReader(row.Payload))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", UserAgent)
	req.Header.Set(SignatureHeader, Sign(d.cfg.Secret, d.Now(), row.Payload))
	req.Header.Set(EventIDHeader, row.ID)
	resp, err := d.client.Do(req)
	if err != nil {
		// the url.Error's URL may carry a token; the row names it anyway
		var uerr *url.Error
		if errors.As(err, &uerr) {
			return uerr.Err
		}
		return err
	}
	defer resp.Body.Close()
	// read a little of the answer: for last_error, and so the connection
	// can be reused
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("HTTP %d: %s", resp.StatusCode, bytes.TrimSpace(snippet))
	}
	return nil
}

// backoff is the wait after the attempt-th failed attempt: BackoffBase
// doubled attempt-1 times, at most BackoffMax, jittered into [w/2, w] so
// that deliveries failed together do not come back together.
func (d *Dispatcher) backoff(attempt int) time.Duration {
	w := d.cfg.BackoffMax
	if attempt < 1 {
		attempt = 1
	}
	if attempt <= 40 {
		w = min(d.cfg.BackoffBase<<(attempt-1), d.cfg.BackoffMax)
	}
	if w <= 0 { // overflowed
		w = d.cfg.BackoffMax
	}
	return w/2 + rand.N(w/2+1)
}

func (d *Dispatcher) prune(ctx context.Context) {
	n, err := d.outbox.PruneWebhooks(ctx, d.Now().Add(-d.cfg.Retention), 0)
	if err != nil && ctx.Err() == nil {
		d.log.Error("webhook outbox pruning failed", "err", err, "deleted", n)
	}
}

func (d *Dispatcher) refreshDue(ctx context.Context) {
	n, err := d.outbox.Due(ctx, d.Now())
	if err != nil {
		if ctx.Err() == nil {
			d.log.Warn("counting due webhooks failed", "err", err)
		}
		return
	}
	d.m.due.Set(float64(n))
}

// host is u's host, for logs: a webhook URL's path or query may hold a
// token.
func host(u string) string {
	if p, err := url.Parse(u); err == nil {
		return p.Host
	}
	return ""
}

type dispatchMetrics struct {
	delivered, failed, givenUp prometheus.Counter
	due                        prometheus.Gauge
	seconds                    prometheus.Histogram
}

func newDispatchMetrics(reg prometheus.Registerer) *dispatchMetrics {
	const ns, sub = "viewpulse", "webhook"
	deliveries := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
		Name: "deliveries_total", Help: "Webhook delivery attempts by result: delivered (2xx), failed (retried later), given_up (failed at or after the retry deadline)."},
		[]string{"result"})
	m := &dispatchMetrics{
		delivered: deliveries.WithLabelValues("delivered"),
		failed:    deliveries.WithLabelValues("failed"),
		givenUp:   deliveries.WithLabelValues("given_up"),
		due: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub,
			Name: "outbox_due", Help: "Webhook deliveries due and not claimed, as last counted."}),
		seconds: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub,
			Name: "delivery_seconds", Help: "Time of one webhook POST, answer included.",
			Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}}),
	}
	reg.MustRegister(deliveries, m.due, m.seconds)
	return m
}
