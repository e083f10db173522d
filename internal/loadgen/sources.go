package loadgen

import (
	"container/heap"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/sourcegraph/conc/pool"
)

// Target builds the player API's requests against one ingest base URL, such
// as http://127.0.0.1:8080.
type Target struct {
	Base string
	// Mixed gives each viewer's joins one of a few real User-Agents (desktop,
	// phone, tablet, TV browsers and a crawler) and a client address in one
	// of several countries, sent as X-Forwarded-For: for analytics. Ingest
	// believes the address only with 127.0.0.1 in TRUSTED_PROXIES.
	Mixed bool
}

// Join is a join of user to stage.
func (t Target) Join(stage, user string, viewer int) Request {
	body, _ := json.Marshal(map[string]string{"stage_arn": stage, "user_id": user, "participant_id": "p" + strconv.Itoa(viewer)})
	r := Request{Kind: "join", Method: http.MethodPost, URL: t.Base + "/v1/viewers/join", ContentType: "application/json", Body: body, Viewer: viewer}
	if t.Mixed {
		r.UserAgent = audienceAgents[viewer%len(audienceAgents)]
		r.ForwardedFor = audienceAddrs[(viewer/len(audienceAgents))%len(audienceAddrs)]
	}
	return r
}

// audienceAgents and audienceAddrs make a mixed audience (Target.Mixed).
var (
	audienceAgents = []string{
		"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
		"Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
		"Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36",
		"Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15",
		"Mozilla/5.0 (iPad; CPU OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
		"Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
		"Mozilla/5.0 (SMART-TV; LINUX; Tizen 7.0) AppleWebKit/537.36 (KHTML, like Gecko) 94.0.4606.31/7.0 TV Safari/537.36",
		"Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
	}
	// US, GB, DK, FR, JP, BR and AU in the embedded IP-to-country table
	audienceAddrs = []string{"8.8.8.8", "81.2.69.160", "85.214.132.117", "193.51.224.1", "133.242.0.3", "200.160.2.3", "1.1.1.1"}
)

// Heartbeat is a heartbeat of session.
func (t Target) Heartbeat(session string, viewer int) Request {
	return Request{Kind: "heartbeat", Method: http.MethodPost, URL: t.Base + "/v1/viewers/heartbeat",
		ContentType: "application/json", Body: sessionBody(session), Viewer: viewer}
}

// Leave is a leave of session, sent as navigator.sendBeacon does (text/plain).
func (t Target) Leave(session string, viewer int) Request {
	return Request{Kind: "leave", Method: http.MethodPost, URL: t.Base + "/v1/viewers/leave",
		ContentType: "text/plain;charset=UTF-8", Body: sessionBody(session), Viewer: viewer}
}

func sessionBody(session string) []byte { return []byte(`{"session_id":"` + session + `"}`) }

// Stages returns n distinct, valid stage ARNs.
func Stages(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("arn:aws:ivs:us-east-1:123456789012:stage/loadgen%05d", i)
	}
	return out
}

// UserID is the user of viewer i in run.
func UserID(run string, i int) string { return "lg-" + run + "-" + strconv.Itoa(i) }

// ConstantRate schedules gen(0), gen(1), … evenly at rate per second.
func ConstantRate(rate float64, gen func(i int) Request) Source {
	return &constantRate{interval: float64(time.Second) / rate, gen: gen}
}

type constantRate struct {
	interval float64
	i        int
	gen      func(i int) Request
}

func (c *constantRate) Next() (time.Duration, Request, bool) {
	at := time.Duration(float64(c.i) * c.interval)
	r := c.gen(c.i)
	c.i++
	return at, r, true
}

func (c *constantRate) Result(Request, int, []byte) {}

// Joins schedules joins of distinct users at rate per second, spread over
// stages in turn.
func Joins(t Target, rate float64, stages []string, run string) Source {
	return ConstantRate(rate, func(i int) Request { return t.Join(stages[i%len(stages)], UserID(run, i), i) })
}

// Heartbeats schedules heartbeats at rate per second, cycling over sessions.
func Heartbeats(t Target, rate float64, sessions []string) Source {
	bodies := make([][]byte, len(sessions))
	for i, s := range sessions {
		bodies[i] = sessionBody(s)
	}
	return ConstantRate(rate, func(i int) Request {
		r := t.Heartbeat("", i%len(sessions))
		r.Body = bodies[i%len(sessions)]
		return r
	})
}

// Prejoin joins n distinct users of run (closed loop, concurrency at a time)
// and returns their session IDs, for Heartbeats. A server whose join answer
// holds no session_id (the bare ceiling handler) gets made-up IDs, so the
// heartbeats it then receives have the same shape as real ones. Errors: the
// first join that failed or got no 2xx, or ctx's.
func Prejoin(ctx context.Context, client *http.Client, t Target, n int, stages []string, run string, concurrency int) ([]string, error) {
	sessions := make([]string, n)
	p := pool.New().WithContext(ctx).WithCancelOnError().WithFirstError().WithMaxGoroutines(concurrency)
	for i := range n {
		p.Go(func(ctx context.Context) error {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			status, body, err := send(client, t.Join(stages[i%len(stages)], UserID(run, i), i))
			if err != nil {
				return fmt.Errorf("prejoin %d: %w", i, err)
			}
			if status < 200 || status > 299 {
				return fmt.Errorf("prejoin %d: status %d: %.200s", i, status, body)
			}
			sessions[i] = sessionID(body)
			if sessions[i] == "" {
				sessions[i] = ulid.Make().String()
			}
			return nil
		})
	}
	if err := p.Wait(); err != nil {
		return nil, err
	}
	return sessions, nil
}

func sessionID(body []byte) string {
	var ans struct {
		SessionID string `json:"session_id"`
	}
	_ = json.Unmarshal(body, &ans)
	return ans.SessionID
}

// ViewersConfig shapes a crowd of viewers behaving as players do.
type ViewersConfig struct {
	Viewers     int           // how many arrive in all
	ArrivalRate float64       // viewers arriving per second
	Heartbeat   time.Duration // between a viewer's heartbeats
	Watch       time.Duration // mean time a viewer stays (uniform from half to 1.5 times), or the median with LongTail
	// LongTail draws stays from a log-normal distribution of median Watch
	// (σ = 1): most viewers stay a few minutes, a few for hours, as real
	// audiences do (a mean of 1.65 × Watch).
	LongTail bool
	Vanish   float64 // fraction who close the tab without a leave
	// Rejoin is the fraction of viewers who, when their stay ends (by a
	// leave or by vanishing), join the same stage again 1-5 s later, as a
	// page reload does, for a stay of their own.
	Rejoin float64
	Stages []string // viewers pick one with a Zipf skew: a few popular stages, a long tail
	Run    string   // distinguishes this run's user IDs
	Seed   uint64
}

// Validate reports the first out-of-range field.
func (c ViewersConfig) Validate() error {
	switch {
	case c.Viewers <= 0:
		return fmt.Errorf("viewers %d: want above 0", c.Viewers)
	case c.ArrivalRate <= 0:
		return fmt.Errorf("arrival rate %g: want above 0", c.ArrivalRate)
	case c.Heartbeat <= 0:
		return fmt.Errorf("heartbeat interval %s: want above 0", c.Heartbeat)
	case c.Watch <= 0:
		return fmt.Errorf("watch time %s: want above 0", c.Watch)
	case c.Vanish < 0 || c.Vanish > 1:
		return fmt.Errorf("vanish fraction %g: want 0 to 1", c.Vanish)
	case c.Rejoin < 0 || c.Rejoin > 1:
		return fmt.Errorf("rejoin fraction %g: want 0 to 1", c.Rejoin)
	case len(c.Stages) == 0:
		return fmt.Errorf("no stages")
	}
	return nil
}

// Viewers is a Source of viewers who each join, heartbeat every Heartbeat
// while they watch, then leave or vanish. A viewer whose join failed, or
// whose heartbeat got 404 session_not_found, joins again at their next
// heartbeat time, as a player does; a viewer whose join is still unanswered
// skips that heartbeat.
type Viewers struct {
	cfg     ViewersConfig
	target  Target
	rng     *rand.Rand
	zipf    *rand.Zipf
	arrived int
	queue   eventQueue

	mu    sync.Mutex
	state []viewerState
}

type viewerState struct {
	stage   int
	session string
	joining bool
}

// NewViewers returns the crowd cfg describes, against t. Errors: an invalid cfg.
func NewViewers(t Target, cfg ViewersConfig) (*Viewers, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	rng := rand.New(rand.NewPCG(cfg.Seed, 0x766965777075))
	v := &Viewers{cfg: cfg, target: t, rng: rng, state: make([]viewerState, cfg.Viewers)}
	if len(cfg.Stages) > 1 {
		v.zipf = rand.NewZipf(rng, 1.2, 1, uint64(len(cfg.Stages)-1))
	}
	return v, nil
}

type slot int

const (
	slotJoin slot = iota
	slotHeartbeat
	slotLeave
	slotRejoin // a reload: the old session, if any, is forgotten and a join sent
)

type event struct {
	at     time.Duration
	viewer int
	slot   slot
	end    time.Duration // when the viewer stops watching
}

// Next implements Source.
func (v *Viewers) Next() (time.Duration, Request, bool) {
	for {
		arrival := time.Duration(float64(v.arrived) * float64(time.Second) / v.cfg.ArrivalRate)
		var e event
		switch {
		case v.arrived < v.cfg.Viewers && (len(v.queue) == 0 || arrival <= v.queue[0].at):
			e = event{at: arrival, viewer: v.arrived, slot: slotJoin, end: arrival + v.stay()}
			stage := 0
			if v.zipf != nil {
				stage = int(v.zipf.Uint64())
			}
			v.mu.Lock()
			v.state[e.viewer].stage = stage
			v.mu.Unlock()
			v.arrived++
		case len(v.queue) > 0:
			e = heap.Pop(&v.queue).(event)
		default:
			return 0, Request{}, false
		}
		v.plan(e)
		if r, ok := v.request(e); ok {
			return e.at, r, true
		}
	}
}

// stay draws how long a viewer watches.
func (v *Viewers) stay() time.Duration {
	if v.cfg.LongTail {
		return time.Duration(float64(v.cfg.Watch) * math.Exp(v.rng.NormFloat64()))
	}
	return time.Duration(float64(v.cfg.Watch) * (0.5 + v.rng.Float64()))
}

// plan queues the viewer's next step after e.
func (v *Viewers) plan(e event) {
	if e.slot == slotLeave {
		return
	}
	next := e.at + v.cfg.Heartbeat
	if next < e.end {
		heap.Push(&v.queue, event{at: next, viewer: e.viewer, slot: slotHeartbeat, end: e.end})
		return
	}
	// The stay ends: a leave, or nothing (vanished); then maybe a reload.
	if v.rng.Float64() >= v.cfg.Vanish {
		heap.Push(&v.queue, event{at: e.end, viewer: e.viewer, slot: slotLeave, end: e.end})
	}
	if v.cfg.Rejoin > 0 && v.rng.Float64() < v.cfg.Rejoin {
		at := e.end + time.Second + time.Duration(v.rng.Int64N(int64(4*time.Second)))
		heap.Push(&v.queue, event{at: at, viewer: e.viewer, slot: slotRejoin, end: at + v.stay()})
	}
}

// request turns a step into the request the viewer's state calls for, if any.
func (v *Viewers) request(e event) (Request, bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	st := &v.state[e.viewer]
	if e.slot == slotRejoin {
		st.session, st.joining = "", true // a reload forgets the tab's session
		return v.target.Join(v.cfg.Stages[st.stage], UserID(v.cfg.Run, e.viewer), e.viewer), true
	}
	switch {
	case st.joining:
		return Request{}, false
	case st.session == "" && e.slot == slotLeave:
		return Request{}, false
	case st.session == "":
		st.joining = true
		return v.target.Join(v.cfg.Stages[st.stage], UserID(v.cfg.Run, e.viewer), e.viewer), true
	case e.slot == slotLeave:
		s := st.session
		st.session = ""
		return v.target.Leave(s, e.viewer), true
	default:
		return v.target.Heartbeat(st.session, e.viewer), true
	}
}

// Result implements Source.
func (v *Viewers) Result(r Request, status int, body []byte) {
	v.mu.Lock()
	defer v.mu.Unlock()
	st := &v.state[r.Viewer]
	switch r.Kind {
	case "join":
		st.joining = false
		if status >= 200 && status < 300 {
			st.session = sessionID(body)
			if st.session == "" {
				st.session = ulid.Make().String()
			}
		}
	case "heartbeat":
		if status == http.StatusNotFound {
			st.session = ""
		}
	}
}

type eventQueue []event

func (q eventQueue) Len() int           { return len(q) }
func (q eventQueue) Less(i, j int) bool { return q[i].at < q[j].at }
func (q eventQueue) Swap(i, j int)      { q[i], q[j] = q[j], q[i] }
func (q *eventQueue) Push(x any)        { *q = append(*q, x.(event)) }
func (q *eventQueue) Pop() any {
	old := *q
	e := old[len(old)-1]
	*q = old[:len(old)-1]
	return e
}
