package api

import (
	"cmp"
	"context"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/viewpulse/viewpulse/events"
)

// maxStageSeries bounds viewpulse_stage_viewers: the stages with the most
// viewers, so the series a scrape can create stay a closed set of at most
// this many however many stages are live.
const maxStageSeries = 100

// stageViewers exports, at each scrape, the live count of the 100 stages with
// the most viewers (viewpulse_stage_viewers{stage}) and the total over every
// stage (viewpulse_viewers), from one read of Redis. A failed read exports
// neither; viewpulse_live_read_errors_total is the hub's, not this.
type stageViewers struct {
	stream  *events.Stream
	timeout time.Duration
	perDesc *prometheus.Desc
	total   *prometheus.Desc
}

func registerStageViewers(reg *prometheus.Registry, stream *events.Stream, timeout time.Duration) {
	if reg == nil {
		return
	}
	reg.MustRegister(&stageViewers{
		stream: stream, timeout: timeout,
		perDesc: prometheus.NewDesc("viewpulse_stage_viewers",
			"Live viewers of a stage, for the 100 stages with the most viewers.", []string{"stage"}, nil),
		total: prometheus.NewDesc("viewpulse_viewers", "Live viewers over every stage.", nil, nil),
	})
}

func (c *stageViewers) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.perDesc
	ch <- c.total
}

func (c *stageViewers) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	live, err := c.stream.Stages(ctx, time.Time{})
	if err != nil {
		return
	}
	var total int64
	for _, s := range live {
		total += s.Viewers
	}
	ch <- prometheus.MustNewConstMetric(c.total, prometheus.GaugeValue, float64(total))
	slices.SortFunc(live, func(a, b events.StageCount) int {
		if a.Viewers != b.Viewers {
			return cmp.Compare(b.Viewers, a.Viewers)
		}
		return strings.Compare(a.Stage, b.Stage)
	})
	for _, s := range live[:min(len(live), maxStageSeries)] {
		if s.Viewers > 0 {
			ch <- prometheus.MustNewConstMetric(c.perDesc, prometheus.GaugeValue, float64(s.Viewers), s.Stage)
		}
	}
}
