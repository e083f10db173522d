package main

import (
	"cmp"
	"fmt"
	"io"
	"math"
	"slices"
	"text/tabwriter"
)

// Results is what bench/results/*.json hold. The flat keys are the figures;
// the nested ones show how each was found.
type Results struct {
	Date      string  `json:"date"`
	Host      string  `json:"host"`
	DurationS float64 `json:"duration_s"`

	HeartbeatRPS        float64 `json:"heartbeat_rps"`
	HeartbeatP99Ms      float64 `json:"heartbeat_p99_ms"`
	HeartbeatCeilingRPS float64 `json:"heartbeat_ceiling_rps"`
	JoinRPS             float64 `json:"join_rps"`
	JoinP99Ms           float64 `json:"join_p99_ms"`
	JoinCeilingRPS      float64 `json:"join_ceiling_rps"`
	// CPU per request at the best step of each search, µs (http phase):
	// ingest's process, and the Redis server's (an upper bound: the
	// machine's Redis also serves whatever else runs meanwhile).
	HeartbeatIngestCPUUs float64 `json:"heartbeat_ingest_cpu_us"`
	HeartbeatRedisCPUUs  float64 `json:"heartbeat_redis_cpu_us"`
	JoinIngestCPUUs      float64 `json:"join_ingest_cpu_us"`
	JoinRedisCPUUs       float64 `json:"join_redis_cpu_us"`

	// Cluster phase: one ingest on ClusterMasters masters on loopback with
	// ClusterPartitions partitions against one ingest on the machine's Redis
	// with one partition; the ratios are cluster over single.
	ClusterMasters        int     `json:"cluster_masters,omitempty"`
	ClusterPartitions     int     `json:"cluster_partitions,omitempty"`
	ClusterSpread         []int   `json:"cluster_partitions_per_master,omitempty"`
	ClusterJoinRPS        float64 `json:"cluster_join_rps"`
	ClusterSingleJoinRPS  float64 `json:"cluster_single_redis_join_rps"`
	ClusterJoinRatio      float64 `json:"cluster_join_ratio"`
	ClusterHeartbeatRPS   float64 `json:"cluster_heartbeat_rps"`
	ClusterSingleHeartRPS float64 `json:"cluster_single_redis_heartbeat_rps"`
	ClusterHeartbeatRatio float64 `json:"cluster_heartbeat_ratio"`

	ProjectorEventsPerS    float64 `json:"projector_events_per_s"`
	Projector2EventsPerS   float64 `json:"projector_events_per_s_2_consumers"`
	CopyCeilingRowsPerS    float64 `json:"copy_ceiling_rows_per_s"`
	SeedPatternEventsPerS  float64 `json:"seed_pattern_events_per_s"`
	SeedPatternStatementsS float64 `json:"seed_pattern_statements_per_s"`
	ProjectedEvents        int     `json:"projected_events"`
	LagP99Ms               float64 `json:"lag_p99_ms"`
	LagP50Ms               float64 `json:"lag_p50_ms"`
	LagRateRPS             float64 `json:"lag_rate_rps"`

	RedisBytesPerViewer               float64 `json:"redis_bytes_per_viewer"`
	RedisViewers                      int     `json:"redis_viewers"`
	RedisLiveBytes                    int64   `json:"redis_live_bytes"`
	RedisUsedDeltaLessStreamPerViewer float64 `json:"redis_used_memory_delta_less_stream_per_viewer"`
	RedisStreamBytesPerEvent          float64 `json:"redis_stream_bytes_per_join_event"`
	SessionIDLen                      int     `json:"session_id_len"`

	// PostgreSQL after the one-consumer drain of the projector phase:
	// viewer_sessions' rows and its total size (heap, TOAST, indexes), as
	// the merges left it and after VACUUM FULL, and the users table's.
	PGSessionRows               int64   `json:"pg_session_rows"`
	PGSessionBytes              int64   `json:"pg_session_total_bytes"`
	PGSessionBytesPerRow        float64 `json:"pg_session_bytes_per_row"`
	PGSessionBytesCompact       int64   `json:"pg_session_total_bytes_vacuumed"`
	PGSessionBytesPerRowCompact float64 `json:"pg_session_bytes_per_row_vacuumed"`
	PGUserRows                  int64   `json:"pg_user_rows"`
	PGUserBytes                 int64   `json:"pg_user_total_bytes"`

	SteadyRefMinutes   float64 `json:"steady_ref_minutes"`
	SteadyMinutes      float64 `json:"steady_minutes"`
	SteadyRefBytes     int64   `json:"steady_ref_bytes"`
	SteadyEndBytes     int64   `json:"steady_end_bytes"`
	SteadyMemoryRatio  float64 `json:"steady_memory_ratio"`
	SteadyStreamRef    int64   `json:"steady_stream_len_ref"`
	SteadyStreamEnd    int64   `json:"steady_stream_len_end"`
	SteadyRequestsRate float64 `json:"steady_request_rps"`

	HeartbeatCeiling Search `json:"heartbeat_ceiling_search"`
	Heartbeat        Search `json:"heartbeat_search"`
	// Every heartbeat search of the http phase (-searches, alternating);
	// Heartbeat and HeartbeatCeiling are the pair of the median ratio.
	HeartbeatRuns        []Search  `json:"heartbeat_searches,omitempty"`
	HeartbeatCeilingRuns []Search  `json:"heartbeat_ceiling_searches,omitempty"`
	HeartbeatRatios      []float64 `json:"heartbeat_ratios,omitempty"`
	HeartbeatRatio       float64   `json:"heartbeat_ratio"` // median; target >= 0.6, none below 0.5
	JoinCeiling          Search    `json:"join_ceiling_search"`
	Join                 Search    `json:"join_search"`
	// Joins against a Redis with the append-only file on, per fsync policy.
	JoinEverysec Search `json:"join_aof_everysec_search"`
	// Ingest's heartbeats with SSEClients streams of GET /v1/live open
	// (-sse-clients).
	SSEClients   int     `json:"sse_clients,omitempty"`
	HeartbeatSSE *Search `json:"heartbeat_sse_search,omitempty"`
	JoinAlways   Search  `json:"join_aof_always_search"`
	// The cluster phase's searches.
	ClusterSingleHeartbeat Search `json:"cluster_single_redis_heartbeat_search"`
	ClusterSingleJoin      Search `json:"cluster_single_redis_join_search"`
	ClusterHeartbeat       Search `json:"cluster_heartbeat_search"`
	ClusterJoin            Search `json:"cluster_join_search"`
	// The CPU-cost phase (cpucost.go).
	CPUCost *CPUCost `json:"cpu_cost,omitempty"`
	// The viewers-per-box phase (viewers.go): the largest audience held,
	// and every level tried.
	ViewersPerBox int            `json:"viewers_per_box"`
	ViewersLevels []ViewersLevel `json:"viewers_levels,omitempty"`
	Notes         []string       `json:"notes,omitempty"`
}

func (r *Results) compute() {
	if n := min(len(r.HeartbeatRuns), len(r.HeartbeatCeilingRuns)); n > 0 {
		r.HeartbeatRatios = nil
		for i := range n {
			r.HeartbeatRatios = append(r.HeartbeatRatios, ratioOf(r.HeartbeatRuns[i].Best.Achieved, r.HeartbeatCeilingRuns[i].Best.Achieved))
		}
		r.HeartbeatRatio = median(r.HeartbeatRatios)
		// the pair whose ratio is the median (the lower middle of an even count)
		order := make([]int, n)
		for i := range order {
			order[i] = i
		}
		slices.SortFunc(order, func(a, b int) int { return cmp.Compare(r.HeartbeatRatios[a], r.HeartbeatRatios[b]) })
		mid := order[(n-1)/2]
		r.Heartbeat, r.HeartbeatCeiling = r.HeartbeatRuns[mid], r.HeartbeatCeilingRuns[mid]
	}
	r.HeartbeatRPS, r.HeartbeatP99Ms = r.Heartbeat.Best.Achieved, r.Heartbeat.Best.P99Ms
	r.JoinRPS, r.JoinP99Ms = r.Join.Best.Achieved, r.Join.Best.P99Ms
	r.HeartbeatCeilingRPS, r.JoinCeilingRPS = r.HeartbeatCeiling.Best.Achieved, r.JoinCeiling.Best.Achieved
	r.HeartbeatIngestCPUUs, r.HeartbeatRedisCPUUs = r.Heartbeat.Best.ServerCPUUs, r.Heartbeat.Best.RedisCPUUs
	r.JoinIngestCPUUs, r.JoinRedisCPUUs = r.Join.Best.ServerCPUUs, r.Join.Best.RedisCPUUs
	r.ClusterJoinRPS, r.ClusterSingleJoinRPS = r.ClusterJoin.Best.Achieved, r.ClusterSingleJoin.Best.Achieved
	r.ClusterHeartbeatRPS, r.ClusterSingleHeartRPS = r.ClusterHeartbeat.Best.Achieved, r.ClusterSingleHeartbeat.Best.Achieved
	r.ClusterJoinRatio = ratioOf(r.ClusterJoinRPS, r.ClusterSingleJoinRPS)
	r.ClusterHeartbeatRatio = ratioOf(r.ClusterHeartbeatRPS, r.ClusterSingleHeartRPS)
	if r.PGSessionRows > 0 {
		r.PGSessionBytesPerRow = math.Round(float64(r.PGSessionBytes) / float64(r.PGSessionRows))
		r.PGSessionBytesPerRowCompact = math.Round(float64(r.PGSessionBytesCompact) / float64(r.PGSessionRows))
	}
	if r.SteadyRefBytes > 0 {
		r.SteadyMemoryRatio = round2(float64(r.SteadyEndBytes) / float64(r.SteadyRefBytes))
	}
}

// Table prints each figure with its baseline, the ratio and whether its
// target is met.
func (r *Results) Table(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "figure\tvalue\tcompared with\tratio\ttarget\tmet")
	if n := len(r.ViewersLevels); n > 0 {
		at := r.ViewersLevels[max(0, n-1)]
		for _, lv := range r.ViewersLevels {
			if lv.Viewers == r.ViewersPerBox {
				at = lv
			}
		}
		fmt.Fprintf(tw, "concurrent viewers held, whole pipeline on this box\t%d\theartbeats %.0f/s, p99 %.1f ms, lag p99 %.0f ms, cores %v\t-\t(figure; the seed promised 50,000 on 4 vCPU)\t%s\n",
			r.ViewersPerBox, at.HeartbeatRPS, at.P99Ms, at.LagP99Ms, at.CPUShare, yesNo(r.ViewersPerBox >= 50_000))
	}
	if c := r.CPUCost; c != nil {
		fmt.Fprintf(tw, "heartbeat CPU µs/req at %.0f/s, ingest + Redis (write-behind hits %.0f%%)\t%s + %s\tbare 204 handler %s\t%.2fx\t<= 2.00x\t%s\n",
			c.Rate, 100*c.WBHitRatio, medianRange(c.HeartbeatIngestUs), medianRange(c.HeartbeatRedisUs), medianRange(c.HeartbeatBareUs), c.HeartbeatRatio, yesNo(c.HeartbeatRatio > 0 && c.HeartbeatRatio <= 2))
		if len(c.HeartbeatStepIngestUs) > 0 {
			fmt.Fprintf(tw, "heartbeat CPU µs/req, PRESENCE_WRITE_BEHIND=false\t%s + %s\tbare 204 handler %s\t%.2fx\t(baseline)\t-\n",
				medianRange(c.HeartbeatStepIngestUs), medianRange(c.HeartbeatStepRedisUs), medianRange(c.HeartbeatBareUs), c.HeartbeatStepRatio)
		}
		fmt.Fprintf(tw, "join CPU µs/req at %.0f/s, ingest + Redis\t%s + %s\tbare 204 handler %s\t%.2fx\t<= 3.50x\t%s\n",
			c.Rate, medianRange(c.JoinIngestUs), medianRange(c.JoinRedisUs), medianRange(c.JoinBareUs), c.JoinRatio, yesNo(c.JoinRatio > 0 && c.JoinRatio <= 3.5))
	}
	ratio := func(name string, v, base, target float64, unit, baseName string) {
		q := 0.0
		if base > 0 {
			q = v / base
		}
		fmt.Fprintf(tw, "%s\t%.0f %s\t%s %.0f\t%.2fx\t>= %.2fx\t%s\n", name, v, unit, baseName, base, q, target, yesNo(v > 0 && q >= target))
	}
	if len(r.HeartbeatRatios) > 1 {
		fmt.Fprintf(tw, "heartbeats/s, p99 <= 50 ms, median of %d searches\t%.0f /s\tbare 204 handler %.0f (ratios %v)\t%.2fx\t>= 0.60x, none < 0.50x\t%s\n",
			len(r.HeartbeatRatios), r.HeartbeatRPS, r.HeartbeatCeilingRPS, r.HeartbeatRatios, r.HeartbeatRatio,
			yesNo(r.HeartbeatRatio >= 0.6 && slices.Min(r.HeartbeatRatios) >= 0.5))
	} else {
		ratio("heartbeats/s, p99 <= 50 ms", r.HeartbeatRPS, r.HeartbeatCeilingRPS, 0.5, "/s", "bare 204 handler")
	}
	ratio("joins/s, p99 <= 50 ms", r.JoinRPS, r.JoinCeilingRPS, 0.35, "/s", "bare 204 handler")
	ratio("projector events/s", r.ProjectorEventsPerS, r.CopyCeilingRowsPerS, 0.5, "/s", "raw COPY rows/s")
	ratio("projector events/s", r.ProjectorEventsPerS, r.SeedPatternEventsPerS, 10, "/s", "seed pattern events/s")
	ratio("projector events/s, 2 consumers", r.Projector2EventsPerS, r.CopyCeilingRowsPerS, 0.5, "/s", "raw COPY rows/s")
	if r.HeartbeatSSE != nil && r.SSEClients > 0 {
		hb, with := r.Heartbeat.Best, r.HeartbeatSSE.Best
		q := 0.0
		if hb.Achieved > 0 {
			q = with.Achieved / hb.Achieved
		}
		fmt.Fprintf(tw, "heartbeats/s, %d SSE clients\t%.0f /s (p99 %.1f ms)\tno SSE client %.0f (p99 %.1f ms)\t%.2fx\t(cost, no target)\t-\n",
			r.SSEClients, with.Achieved, with.P99Ms, hb.Achieved, hb.P99Ms, q)
	}
	for _, c := range []struct {
		what          string
		cluster, base Step
	}{{"heartbeats/s", r.ClusterHeartbeat.Best, r.ClusterSingleHeartbeat.Best}, {"joins/s", r.ClusterJoin.Best, r.ClusterSingleJoin.Best}} {
		if c.cluster.Achieved > 0 && c.base.Achieved > 0 {
			fmt.Fprintf(tw, "%s, %d-master cluster, %d partitions\t%.0f /s (p99 %.1f ms)\tone Redis, 1 partition %.0f (p99 %.1f ms)\t%.2fx\t(cost, no target)\t-\n",
				c.what, r.ClusterMasters, r.ClusterPartitions, c.cluster.Achieved, c.cluster.P99Ms, c.base.Achieved, c.base.P99Ms, c.cluster.Achieved/c.base.Achieved)
		}
	}
	// CPU per request of both at the rate both searches began with: the
	// cost that does not depend on where each search's bound fell.
	for _, c := range []struct {
		what          string
		cluster, base Search
	}{{"heartbeat", r.ClusterHeartbeat, r.ClusterSingleHeartbeat}, {"join", r.ClusterJoin, r.ClusterSingleJoin}} {
		cs, ok1 := stepAt(c.cluster, searchStart)
		bs, ok2 := stepAt(c.base, searchStart)
		if ok1 && ok2 && bs.RedisCPUUs > 0 {
			fmt.Fprintf(tw, "CPU per %s at %.0f/s, cluster: Redis, ingest\t%.0f us, %.0f us\tone Redis %.0f us, ingest %.0f us\t%.2fx\t(cost, no target)\t-\n",
				c.what, searchStart, cs.RedisCPUUs, cs.ServerCPUUs, bs.RedisCPUUs, bs.ServerCPUUs, cs.RedisCPUUs/bs.RedisCPUUs)
		}
	}
	for _, c := range []struct {
		what string
		s    Step
	}{{"heartbeat", r.Heartbeat.Best}, {"join", r.Join.Best}} {
		if c.s.Achieved > 0 {
			fmt.Fprintf(tw, "CPU per %s: ingest, Redis\t%.0f us, %.0f us\tat %.0f /s\t-\t(cost, no target)\t-\n", c.what, c.s.ServerCPUUs, c.s.RedisCPUUs, c.s.Achieved)
		}
	}
	if ev, al := r.JoinEverysec.Best, r.JoinAlways.Best; ev.Achieved > 0 && al.Achieved > 0 {
		fmt.Fprintf(tw, "joins/s, AOF appendfsync always\t%.0f /s (p50 %.2f ms)\tappendfsync everysec %.0f (p50 %.2f ms)\t%.2fx\t(cost, no target)\t-\n",
			al.Achieved, al.P50Ms, ev.Achieved, ev.P50Ms, al.Achieved/ev.Achieved)
	}
	fmt.Fprintf(tw, "event -> row lag p99\t%.0f ms\tat %.0f heartbeats/s\t-\t<= 1000 ms\t%s\n", r.LagP99Ms, r.LagRateRPS, yesNo(r.LagRateRPS > 0 && r.LagP99Ms <= 1000))
	fmt.Fprintf(tw, "Redis bytes per present viewer\t%.0f B\tat %d viewers, %d-char session IDs\t-\t<= 250 B\t%s\n", r.RedisBytesPerViewer, r.RedisViewers, r.SessionIDLen, yesNo(r.RedisViewers > 0 && r.RedisBytesPerViewer <= 250))
	if r.RedisStreamBytesPerEvent > 0 {
		fmt.Fprintf(tw, "stream bytes per join event\t%.0f B\tat %d events\t-\t(cost, no target)\t-\n", r.RedisStreamBytesPerEvent, r.RedisViewers)
	}
	if r.PGSessionRows > 0 {
		fmt.Fprintf(tw, "PostgreSQL bytes per session row\t%.0f B (%.0f B vacuumed)\tat %d rows, indexes included\t-\t(cost, no target)\t-\n",
			r.PGSessionBytesPerRow, r.PGSessionBytesPerRowCompact, r.PGSessionRows)
	}
	fmt.Fprintf(tw, "Redis memory, steady load, trimming on\t%.1f MB at %.1f min\t%.1f MB at %.1f min\t%.2fx\t<= 1.10x (bounded)\t%s\n",
		float64(r.SteadyEndBytes)/1e6, r.SteadyMinutes, float64(r.SteadyRefBytes)/1e6, r.SteadyRefMinutes, r.SteadyMemoryRatio,
		yesNo(r.SteadyRefBytes > 0 && r.SteadyMemoryRatio <= 1.10))
	tw.Flush()
	for _, n := range r.Notes {
		fmt.Fprintln(w, "note:", n)
	}
}

func yesNo(ok bool) string {
	if ok {
		return "yes"
	}
	return "NO"
}

func round2(f float64) float64 { return math.Round(f*100) / 100 }

// ratioOf is v/base to two places, 0 when either is missing.
func ratioOf(v, base float64) float64 {
	if v <= 0 || base <= 0 {
		return 0
	}
	return round2(v / base)
}

// stepAt is the step of s at rate, if it ran one.
func stepAt(s Search, rate float64) (Step, bool) {
	for _, st := range s.Steps {
		if st.Rate == math.Round(rate) {
			return st, true
		}
	}
	return Step{}, false
}
