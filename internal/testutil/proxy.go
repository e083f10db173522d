package testutil

import (
	"fmt"
	"net"
	"net/url"
	"sync"
	"testing"
)

// Proxy forwards TCP connections to a service and can be stopped and started
// again on the same port: an outage of "the database" (or Redis) that leaves
// the shared server alone. It can also black-hole the traffic (Blackhole):
// connections stay open and nothing gets through, as when packets are
// dropped rather than refused.
type Proxy struct {
	Addr   string
	tb     testing.TB
	target string
	mu     sync.Mutex
	ln     net.Listener
	conns  []net.Conn
	// hole is closed while traffic flows; a black hole replaces it with an
	// open channel that forwarders wait on.
	hole chan struct{}
}

// StartProxy listens on a free loopback port and forwards to target
// (host:port). It is stopped when the test ends.
func StartProxy(tb testing.TB, target string) *Proxy {
	tb.Helper()
	p := &Proxy{tb: tb, target: target, Addr: fmt.Sprintf("127.0.0.1:%d", FreePort(tb)), hole: closed()}
	p.Start()
	tb.Cleanup(p.Stop)
	return p
}

// ProxyURL returns rawURL with its host replaced by a proxy to that host.
func ProxyURL(tb testing.TB, rawURL string) (*Proxy, string) {
	tb.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		tb.Fatal(err)
	}
	p := StartProxy(tb, u.Host)
	u.Host = p.Addr
	return p, u.String()
}

// Start listens again after Stop.
func (p *Proxy) Start() {
	p.tb.Helper()
	ln, err := net.Listen("tcp", p.Addr)
	if err != nil {
		p.tb.Fatal(err)
	}
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", p.target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, up)
			p.mu.Unlock()
			go p.forward(c, up)
			go p.forward(up, c)
		}
	}()
}

func closed() chan struct{} { c := make(chan struct{}); close(c); return c }

// Blackhole holds every byte in either direction, on open and new
// connections alike, until Restore.
func (p *Proxy) Blackhole() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.hole:
		p.hole = make(chan struct{})
	default: // already black-holed
	}
}

// Restore lets the held bytes and all later ones through.
func (p *Proxy) Restore() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.hole:
	default:
		close(p.hole)
	}
}

func (p *Proxy) gate() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.hole
}

func (p *Proxy) forward(dst, src net.Conn) {
	defer dst.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			<-p.gate()
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// Stop closes the listener and every forwarded connection.
func (p *Proxy) Stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}
