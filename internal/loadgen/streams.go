package loadgen

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Streams are clients of GET /v1/live held open, as operators' dashboards
// would hold them, reading and counting what arrives.
type Streams struct {
	// Connected is the number of streams that received their first counts
	// event; Failed those refused or cut before it.
	Connected, Failed atomic.Int64
	// Events counts the counts events received, Pings the pings.
	Events, Pings atomic.Int64
	// SlowestFirst is the longest wait of a stream for its first event.
	SlowestFirst time.Duration

	mu     sync.Mutex
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// OpenStreams opens n streams on base's /v1/live (with the API key when not
// empty), at most 50 connecting at once, and returns once each has received
// its first event or failed, or ctx ended. Close ends them.
func OpenStreams(ctx context.Context, base, key string, n int, timeout time.Duration) *Streams {
	sctx, cancel := context.WithCancel(ctx)
	s := &Streams{cancel: cancel}
	client := &http.Client{Transport: &http.Transport{
		DialContext:        (&net.Dialer{Timeout: timeout}).DialContext,
		DisableCompression: true, MaxIdleConnsPerHost: -1,
	}}
	sem := make(chan struct{}, 50)
	settled := make(chan struct{}, n)
	for range n {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return s
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			first := true
			settle := func() {
				if first {
					first = false
					<-sem
					settled <- struct{}{}
				}
			}
			defer settle()
			s.read(sctx, client, base, key, func() {
				if first {
					s.Connected.Add(1)
				}
				settle()
			})
			if first {
				s.Failed.Add(1)
			}
		}()
	}
	for range n {
		select {
		case <-settled:
		case <-ctx.Done():
			return s
		}
	}
	return s
}

// read follows one stream until it ends, calling onEvent at each counts
// event.
func (s *Streams) read(ctx context.Context, client *http.Client, base, key string, onEvent func()) {
	opened := time.Now()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/live", nil)
	if err != nil {
		return
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := client.Do(req)
	if err != nil {
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return
	}
	br := bufio.NewReader(resp.Body)
	firstSeen := false
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		switch {
		case strings.HasPrefix(line, "event: counts"):
			if !firstSeen {
				firstSeen = true
				s.mu.Lock()
				s.SlowestFirst = max(s.SlowestFirst, time.Since(opened))
				s.mu.Unlock()
			}
			s.Events.Add(1)
			onEvent()
		case strings.HasPrefix(line, ": ping"):
			s.Pings.Add(1)
		}
	}
}

// String summarises the streams.
func (s *Streams) String() string {
	s.mu.Lock()
	slowest := s.SlowestFirst
	s.mu.Unlock()
	return fmt.Sprintf("%d streams connected (%d failed), slowest first event %s",
		s.Connected.Load(), s.Failed.Load(), slowest.Round(time.Millisecond))
}

// Close ends every stream and waits for their readers.
func (s *Streams) Close() {
	s.cancel()
	s.wg.Wait()
}
