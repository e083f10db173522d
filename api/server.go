// Package api is ViewPulse's HTTP surface: the player routes that append
// events, and the read routes over live state and history. Every route is
// listed in routes.go.
package api

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/viewpulse/viewpulse/events"
	"github.com/viewpulse/viewpulse/internal/ops"
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
}

type server struct {
	Config
	heartbeatEvery time.Duration
}

// NewServer returns the HTTP handler with every route of routes.go.
func NewServer(cfg Config) http.Handler {
	if cfg.RedisTimeout <= 0 {
		cfg.RedisTimeout = time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	s := &server{Config: cfg, heartbeatEvery: cfg.Stream.Timeout() / 4}
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = s.errorHandler
	e.IPExtractor = ipExtractor(cfg.TrustedProxies)
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
	}
	level := slog.LevelWarn
	if errors.Is(err, context.Canceled) {
		level = slog.LevelInfo // the client went away
	}
	s.log().Log(c.Request().Context(), level, "redis step failed", "op", op, "err", err)
	return errUnavailable
}

func (s *server) log() *slog.Logger { return s.Log }

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
