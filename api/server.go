// Package api is ViewPulse's HTTP surface: the player routes that append
// events, and the read routes over live state and history. Every route is
// listed in routes.go.
package api

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/viewpulse/viewpulse/events"
	"github.com/viewpulse/viewpulse/internal/ops"
	"github.com/viewpulse/viewpulse/store"
)

// Config is what the server depends on.
type Config struct {
	Stream *events.Stream
	Log    *slog.Logger
	// Registry receives the HTTP metrics and is served on /metrics.
	Registry *prometheus.Registry
	// Ready lists the dependencies /readyz checks.
	Ready map[string]ops.Check
	// TrustedProxies are the peers whose X-Forwarded-For and CDN country
	// headers are believed.
	TrustedProxies []netip.Prefix
	// RedisTimeout bounds each player write; past it the answer is 503.
	RedisTimeout time.Duration

	// ReadDB serves the read API: stage configuration, stats, snapshots and
	// user history (DATABASE_READ_URL, else DATABASE_URL). Nil switches the
	// read API off (READ_API=false): only the player, live and ops routes
	// are served, and GET /v1/stages lists live stages without configuration.
	ReadDB *store.DB
	// WriteDB takes the configuration writes (DATABASE_URL); nil: ReadDB.
	WriteDB *store.DB
	// Snapshots returns a stage's count series in time order; nil:
	// ReadDB.Snapshots.
	Snapshots func(ctx context.Context, stage string, from, to time.Time) ([]store.Snapshot, error)
	// DBTimeout bounds each PostgreSQL call of a request; past it the answer
	// is 503. Default 5s.
	DBTimeout time.Duration
	// APIKeys, when not empty, are the bearer keys that every route but the
	// player writes and the ops probes requires (API_KEYS).
	APIKeys []string

	// Tokens configures viewer tokens on joins and POST /v1/tokens (token.go).
	Tokens TokenConfig
	// CORSOrigins are the origins browsers may call from (CORS_ORIGINS; "*"
	// allowed, nil means "*"): the player routes and /sdk/ take all of
	// them, the other routes only the ones listed explicitly (cors.go).
	CORSOrigins []string
	// Limits are the rate limits (zero value: none).
	Limits RateLimits
	// IPStorage is how much of a viewer's address is kept (IP_STORAGE;
	// "": full).
	IPStorage IPStorage
	// NoHeartbeatSkip runs the Redis step for every heartbeat, also those
	// heartbeat_skip.go answers from memory (HEARTBEAT_SKIP=false): for
	// benchmarks of the step.
	NoHeartbeatSkip bool
	// WriteBehind, when set, answers the heartbeats that record no event
	// from memory and flushes their presence to Redis within its interval
	// (PRESENCE_WRITE_BEHIND; events.WriteBehind); the caller runs its
	// flush loop.
	WriteBehind *events.WriteBehind
	// Live tunes GET /v1/live (live_sse.go); its Draining ends the streams.
	Live LiveConfig
	// SeatTTL is how long a seat assigned by POST /v1/groups/{master}/assign
	// waits for the user's join (SEAT_TTL); default DefaultSeatTTL.
	SeatTTL time.Duration
}

// DefaultSeatTTL is Config.SeatTTL's default.
const DefaultSeatTTL = 60 * time.Second

type server struct {
	Config
	heartbeatEvery time.Duration
	keys           [][sha256.Size]byte
	tokens         *tokens
	beats          *beatCache
	trust          *trustMetrics
	live           *liveHub
}

// NewServer returns the HTTP handler with every route of routes.go.
func NewServer(cfg Config) http.Handler {
	if cfg.RedisTimeout <= 0 {
		cfg.RedisTimeout = time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.DBTimeout <= 0 {
		cfg.DBTimeout = 5 * time.Second
	}
	if cfg.SeatTTL <= 0 {
		cfg.SeatTTL = DefaultSeatTTL
	}
	if cfg.WriteDB == nil {
		cfg.WriteDB = cfg.ReadDB
	}
	if cfg.Snapshots == nil && cfg.ReadDB != nil {
		cfg.Snapshots = cfg.ReadDB.Snapshots
	}
	s := &server{Config: cfg, heartbeatEvery: cfg.Stream.Timeout() / 4}
	if cfg.Registry != nil && cfg.ReadDB != nil {
		registerReplicaLag(cfg.Registry, cfg.ReadDB)
	}
	s.tokens = newTokens(cfg.Tokens, cfg.Registry, s.now)
	s.beats = newBeatCache(s.heartbeatEvery)
	s.trust = newTrustMetrics(s)
	s.live = newLiveHub(cfg.Stream, cfg.RedisTimeout, cfg.Live, cfg.Log, cfg.Registry)
	registerStageViewers(cfg.Registry, cfg.Stream, cfg.RedisTimeout)
	for _, k := range cfg.APIKeys {
		if k != "" {
			s.keys = append(s.keys, sha256.Sum256([]byte(k)))
		}
	}
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = s.errorHandler
	e.IPExtractor = ipExtractor(cfg.TrustedProxies)
	e.Pre(routeOnEscapedPath)
	s.routes(e)
	return e
}

// redisError turns a failed Redis step into the contract's answer: the
// domain errors keep their meaning, everything else is a dependency outage.
func (s *server) redisError(c echo.Context, op string, err error) error {
	switch {
	case errors.Is(err, events.ErrSessionNotFound):
		return errSessionNotFound
	case errors.Is(err, events.ErrBackpressure):
		return errBackpressure
	case errors.Is(err, events.ErrStageFull):
		return errStageFull
	case errors.Is(err, events.ErrGroupNotFound):
		return errGroupNotFound
	case errors.Is(err, events.ErrGroupFull):
		return errGroupFull
	case errors.Is(err, events.ErrStageMoving):
		return errStageMoving
	case errors.Is(err, events.ErrStageCollision):
		s.Log.Error("stage hash collision: a join was refused", "op", op, "err", err)
		return errStageCollision
	}
	answer := errUnavailable
	if errors.Is(err, events.ErrOutcomeUnknown) {
		answer = errOutcomeUnknown
	}
	level := slog.LevelWarn
	if errors.Is(err, context.Canceled) {
		level = slog.LevelInfo // the client went away
	}
	s.Log.Log(c.Request().Context(), level, "redis step failed", "op", op, "err", err)
	return answer
}

// dbError turns a failed PostgreSQL step into the contract's answer: the
// domain errors keep their meaning, an unreachable or unready database is 503
// dependency_unavailable, anything else is a bug (500, logged).
func (s *server) dbError(c echo.Context, op string, err error) error {
	switch {
	case errors.Is(err, store.ErrStageNotFound):
		return errStageNotFound
	case errors.Is(err, store.ErrUserNotFound):
		return errUserNotFound
	case errors.Is(err, store.ErrInvalidCursor):
		return invalid("cursor", "must be a next_cursor returned by this route")
	case errors.Is(err, store.ErrInvalidGroup):
		return errorf(http.StatusConflict, "invalid_group", groupRule(err))
	case errors.Is(err, events.ErrStageHasViewers):
		return errStageHasViewers
	case errors.Is(err, context.Canceled):
		s.Log.Info("database step cancelled", "op", op, "err", err)
		return errUnavailable
	case store.Unavailable(err):
		s.Log.Warn("database step failed", "op", op, "err", err)
		return errUnavailable
	}
	return fmt.Errorf("%s: %w", op, err)
}

// now is the server's clock: the stream's, so that live and history answers
// agree and tests move both.
func (s *server) now() time.Time { return s.Stream.Now() }

// ipExtractor takes the client address from the connection, or from
// X-Forwarded-For when the peer is a trusted proxy.
func ipExtractor(trusted []netip.Prefix) echo.IPExtractor {
	if len(trusted) == 0 {
		return echo.ExtractIPDirect()
	}
	opts := []echo.TrustOption{echo.TrustLoopback(false), echo.TrustLinkLocal(false), echo.TrustPrivateNet(false)}
	for _, p := range trusted {
		opts = append(opts, echo.TrustIPRange(&net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}))
	}
	return echo.ExtractIPFromXFFHeader(opts...)
}

// peerTrusted reports whether the direct peer of r is a trusted proxy.
func peerTrusted(r *http.Request, trusted []netip.Prefix) bool {
	if len(trusted) == 0 {
		return false
	}
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return false
	}
	addr := ap.Addr().Unmap()
	for _, p := range trusted {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}
