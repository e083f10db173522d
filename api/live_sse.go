package api

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/viewpulse/viewpulse/events"
)

// LiveConfig tunes GET /v1/live. Zero fields take the defaults.
type LiveConfig struct {
	// Tick is how often the hub reads the live counts from Redis (1s).
	Tick time.Duration
	// Ping is how often every stream gets a ": ping" comment (15s).
	Ping time.Duration
	// Buffer is how many events may wait for one client (16); a client
	// further behind is dropped.
	Buffer int
	// WriteWait bounds each write to a client (10s); a client that does not
	// take an event within it is dropped.
	WriteWait time.Duration
	// Draining, when closed, ends every stream (cmd/ingest closes it when
	// the server begins its shutdown: http.Server.Shutdown does not cancel
	// the contexts of requests still running).
	Draining <-chan struct{}
}

// liveRoute is the template of the SSE route: the metrics middleware counts
// it but keeps it out of the latency histogram.
const liveRoute = "/v1/live"

// maxLiveStages bounds the ?stage= filters of one stream.
const maxLiveStages = 100

// liveHub reads every stage's live count once per tick, however many clients
// listen, and fans the changes out to them. It runs only while a client is
// subscribed. Each client has a bounded queue; the hub never waits for one.
type liveHub struct {
	stream  *events.Stream
	timeout time.Duration
	cfg     LiveConfig
	log     *slog.Logger

	clientsGauge prometheus.Gauge
	dropped      prometheus.Counter
	readErrors   prometheus.Counter

	mu      sync.Mutex
	clients map[*liveClient]struct{}
	running bool
	gen     uint64           // the run loop's generation: an older loop exits
	ready   bool             // counts holds a successful read
	down    bool             // the last read failed
	counts  map[string]int64 // the last read, stages with a count above 0
	groups  []byte           // the last groups event sent (nil: no group yet)
	seq     uint64
}

// liveClient is one stream: the stages it wants (nil: all) and its queue.
type liveClient struct {
	stages map[string]bool
	queue  chan []byte
	gone   chan struct{} // closed when the hub dropped the client
	primed bool          // got its first counts event
	cut    bool          // counted in viewpulse_live_clients_dropped_total
}

// liveCount is one stage of a counts event.
type liveCount struct {
	Stage   string `json:"stage_arn"`
	Viewers int64  `json:"viewers"`
}

func newLiveHub(stream *events.Stream, timeout time.Duration, cfg LiveConfig, log *slog.Logger, reg *prometheus.Registry) *liveHub {
	if cfg.Tick <= 0 {
		cfg.Tick = time.Second
	}
	if cfg.Ping <= 0 {
		cfg.Ping = 15 * time.Second
	}
	if cfg.Buffer <= 0 {
		cfg.Buffer = 16
	}
	if cfg.WriteWait <= 0 {
		cfg.WriteWait = 10 * time.Second
	}
	h := &liveHub{
		stream: stream, timeout: timeout, cfg: cfg, log: log,
		clientsGauge: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "viewpulse_live_clients", Help: "Clients connected to GET /v1/live."}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "viewpulse_live_clients_dropped_total", Help: "Live clients cut off because they fell behind."}),
		readErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "viewpulse_live_read_errors_total", Help: "Reads of the live counts for GET /v1/live that failed."}),
		clients: map[*liveClient]struct{}{},
	}
	if reg != nil {
		reg.MustRegister(h.clientsGauge, h.dropped, h.readErrors)
	}
	return h
}

// subscribe adds a client and starts the hub if it is idle. The client's
// first counts event is queued at once when the hub has a reading, else after
// its next successful read.
func (h *liveHub) subscribe(stages map[string]bool) *liveClient {
	c := &liveClient{stages: stages, queue: make(chan []byte, h.cfg.Buffer), gone: make(chan struct{})}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.clients[c] = struct{}{}
	h.clientsGauge.Inc()
	switch {
	case h.ready && !h.down:
		h.prime(c)
	case h.down:
		h.offer(c, statusEvent(false))
	}
	if !h.running {
		h.running = true
		h.gen++
		go h.run(h.gen)
	}
	return c
}

// unsubscribe removes a client (repeat-safe).
func (h *liveHub) unsubscribe(c *liveClient) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.remove(c)
}

// remove drops c; the last client's going stops the hub at once, so the
// next client never starts from an old reading. The hub's lock is held.
func (h *liveHub) remove(c *liveClient) {
	if _, ok := h.clients[c]; ok {
		delete(h.clients, c)
		h.clientsGauge.Dec()
		if len(h.clients) == 0 {
			h.stop()
		}
	}
}

// run reads once at once, then every tick, and pings every Ping, until no
// client is left or the server drains.
func (h *liveHub) run(gen uint64) {
	tick := time.NewTicker(h.cfg.Tick)
	defer tick.Stop()
	ping := time.NewTicker(h.cfg.Ping)
	defer ping.Stop()
	if !h.read(gen) {
		return
	}
	for {
		select {
		case <-tick.C:
			if !h.read(gen) {
				return
			}
		case <-ping.C:
			if !h.broadcast(gen, []byte(": ping\n\n")) {
				return
			}
		case <-h.cfg.Draining:
			h.mu.Lock()
			if h.current(gen) {
				h.stop()
			}
			h.mu.Unlock()
			return
		}
	}
}

// read takes the live counts and queues each client's changes. It reports
// false once the loop of generation gen is no longer the hub's.
func (h *liveHub) read(gen uint64) bool {
	ctx, cancel := context.WithTimeout(context.Background(), h.timeout)
	defer cancel()
	h.mu.Lock()
	current := h.current(gen)
	h.mu.Unlock()
	if !current {
		return false
	}
	live, err := h.stream.Stages(ctx, time.Time{})
	var groups []events.GroupCount
	if err == nil {
		groups, err = h.stream.Groups(ctx)
	}

	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.current(gen) {
		return false
	}
	if err != nil {
		h.readErrors.Inc()
		if !h.down {
			h.log.Warn("live counts unavailable", "err", err)
			h.down = true
			h.fanout(statusEvent(false))
		}
		return true
	}
	now := make(map[string]int64, len(live))
	for _, sc := range live {
		if sc.Viewers > 0 {
			now[sc.Stage] = sc.Viewers
		}
	}
	var changed []liveCount
	if h.ready {
		for stage, n := range now {
			if h.counts[stage] != n {
				changed = append(changed, liveCount{stage, n})
			}
		}
		for stage := range h.counts {
			if _, ok := now[stage]; !ok {
				changed = append(changed, liveCount{stage, 0}) // emptied: once, with 0
			}
		}
		slices.SortFunc(changed, func(a, b liveCount) int { return strings.Compare(a.Stage, b.Stage) })
	}
	h.seq++
	h.counts, h.ready = now, true
	if h.down {
		h.down = false
		h.fanout(statusEvent(true))
	}
	var all []byte // the changes for clients without a filter, encoded once
	if len(changed) > 0 {
		all = countsEvent(h.seq, changed)
	}
	var groupsChanged []byte // a groups event, when a group's figures changed
	if g := groupsEvent(groups); !slices.Equal(g, h.groups) {
		h.groups, groupsChanged = g, g
		if g == nil { // the last group is gone
			groupsChanged = []byte("event: groups\ndata: {\"groups\":[]}\n\n")
		}
	}
	for c := range h.clients {
		switch {
		case !c.primed:
			h.prime(c)
		case c.stages == nil:
			if all != nil {
				h.offer(c, all)
			}
			if groupsChanged != nil {
				h.offer(c, groupsChanged)
			}
		default:
			var mine []liveCount
			for _, lc := range changed {
				if c.stages[lc.Stage] {
					mine = append(mine, lc)
				}
			}
			if len(mine) > 0 {
				h.offer(c, countsEvent(h.seq, mine))
			}
		}
	}
	return true
}

// prime queues c's first counts event: every stage with viewers, or, with a
// filter, each stage of it (0 when empty). The hub's lock is held.
func (h *liveHub) prime(c *liveClient) {
	var list []liveCount
	if c.stages == nil {
		for stage, n := range h.counts {
			list = append(list, liveCount{stage, n})
		}
	} else {
		for stage := range c.stages {
			list = append(list, liveCount{stage, h.counts[stage]})
		}
	}
	slices.SortFunc(list, func(a, b liveCount) int { return strings.Compare(a.Stage, b.Stage) })
	c.primed = true
	h.offer(c, countsEvent(h.seq, list))
	if c.stages == nil && h.groups != nil {
		h.offer(c, h.groups)
	}
}

// stop marks the hub idle and forgets its reading, which would be stale
// when the next client comes. The hub's lock is held.
func (h *liveHub) stop() {
	h.running, h.ready, h.down, h.counts = false, false, false, nil
}

// current reports whether gen is the running loop's. The hub's lock is
// held.
func (h *liveHub) current(gen uint64) bool { return h.running && h.gen == gen }

// broadcast queues msg for every client; false once the loop of generation
// gen is no longer the hub's.
func (h *liveHub) broadcast(gen uint64, msg []byte) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.current(gen) {
		return false
	}
	h.fanout(msg)
	return true
}

// fanout queues msg for every client. The hub's lock is held.
func (h *liveHub) fanout(msg []byte) {
	for c := range h.clients {
		h.offer(c, msg)
	}
}

// offer queues msg for c without waiting; a client whose queue is full has
// fallen behind and is dropped. The hub's lock is held.
func (h *liveHub) offer(c *liveClient, msg []byte) {
	select {
	case c.queue <- msg:
	default:
		h.remove(c)
		h.cutOff(c)
		close(c.gone)
	}
}

// cutOff counts c as dropped for falling behind, once. The hub's lock is held.
func (h *liveHub) cutOff(c *liveClient) {
	if !c.cut {
		c.cut = true
		h.dropped.Inc()
	}
}

// timedOut drops c, whose write did not finish within WriteWait.
func (h *liveHub) timedOut(c *liveClient) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.remove(c)
	h.cutOff(c)
}

// countsEvent is one SSE counts event.
func countsEvent(seq uint64, list []liveCount) []byte {
	if list == nil {
		list = []liveCount{}
	}
	data, _ := json.Marshal(map[string]any{"stages": list})
	b := make([]byte, 0, len(data)+48)
	b = append(b, "id: "...)
	b = strconv.AppendUint(b, seq, 10)
	b = append(b, "\nevent: counts\ndata: "...)
	b = append(b, data...)
	return append(b, "\n\n"...)
}

// liveGroup is one group of a groups event.
type liveGroup struct {
	Master   string `json:"master_stage_arn"`
	Viewers  int64  `json:"viewers"`
	Capacity *int   `json:"capacity"`
	Stages   int    `json:"stages"`
}

// groupsEvent is every group's live count and capacity (distinct users,
// groups.go), for the clients without a stage filter; nil when there is no
// group.
func groupsEvent(gs []events.GroupCount) []byte {
	if len(gs) == 0 {
		return nil
	}
	list := make([]liveGroup, len(gs))
	for i, g := range gs {
		v := newGroupView(g)
		list[i] = liveGroup{Master: g.Master, Viewers: g.Viewers, Capacity: v.Capacity, Stages: len(g.Stages)}
	}
	data, _ := json.Marshal(map[string]any{"groups": list})
	return append(append([]byte("event: groups\ndata: "), data...), "\n\n"...)
}

// statusEvent tells the clients whether the live counts can be read.
func statusEvent(ok bool) []byte {
	if ok {
		return []byte("event: status\ndata: {\"redis\":\"ok\"}\n\n")
	}
	return []byte("event: status\ndata: {\"redis\":\"unavailable\"}\n\n")
}

// handleLive: GET /v1/live, Server-Sent Events: a counts event with every
// active stage's live count, then one per tick with the stages whose count
// changed, ": ping" every Ping. ?stage= (repeatable, at most 100) narrows it;
// a bad one is 400 invalid_stage_arn.
func (s *server) handleLive() echo.HandlerFunc {
	return func(c echo.Context) error {
		var stages map[string]bool
		if q := c.QueryParams()["stage"]; len(q) > 0 {
			if len(q) > maxLiveStages {
				return invalid("stage_arn", "may be repeated at most 100 times")
			}
			stages = make(map[string]bool, len(q))
			for _, arn := range q {
				if err := checkStage(arn); err != nil {
					return err
				}
				stages[arn] = true
			}
		}
		w := c.Response()
		rc := http.NewResponseController(w)
		// The server's WriteTimeout is a deadline for the whole response: a
		// stream replaces it with one per write.
		if err := rc.SetWriteDeadline(time.Time{}); err != nil && !isNotSupported(err) {
			return err
		}
		h := w.Header()
		h.Set(echo.HeaderContentType, "text/event-stream")
		h.Set(echo.HeaderCacheControl, "no-store")
		h.Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
		// A stream the server ends (a client dropped, a drain) closes its
		// connection too, rather than leaving it idle for keep-alive.
		h.Set(echo.HeaderConnection, "close")
		w.WriteHeader(http.StatusOK)

		client := s.live.subscribe(stages)
		defer s.live.unsubscribe(client)
		write := func(b []byte) bool {
			_ = rc.SetWriteDeadline(time.Now().Add(s.live.cfg.WriteWait))
			_, err := w.Write(b)
			if err == nil {
				err = rc.Flush()
			}
			if errors.Is(err, os.ErrDeadlineExceeded) {
				s.live.timedOut(client) // not reading: fallen behind
			}
			return err == nil
		}
		if !write([]byte("retry: 2000\n\n")) {
			return nil
		}
		ctx := c.Request().Context()
		for {
			select {
			case msg := <-client.queue:
				if !write(msg) {
					return nil
				}
			case <-client.gone:
				return nil
			case <-ctx.Done():
				return nil
			case <-s.live.cfg.Draining:
				return nil
			}
		}
	}
}

func isNotSupported(err error) bool { return errors.Is(err, http.ErrNotSupported) }
