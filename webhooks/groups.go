package webhooks

import (
	"context"
	"crypto/sha256"
	"encoding/base32"
	"fmt"
	"strconv"
	"time"

	"github.com/viewpulse/viewpulse/events"
)

// ScaleDownAfter is how long a child stage must stay empty, while its group
// is under ScaleDownBelow of its capacity, before group.scale_down names it.
const (
	ScaleDownAfter = 10 * time.Minute
	ScaleDownBelow = 0.3
)

// GroupDetector sends the group events from the groups' live state
// (events.Stream.Groups), on the steps of the active StageWatcher (so one
// process of a deployment sends them):
//   - group.scale_up when a group's distinct viewers reach ScaleUpAt of its
//     capacity, at most once per AlertEvery per group;
//   - group.full when every stage of a group is at its max_viewers (present
//     plus reserved seats), once per filling and at most once per
//     AlertEvery;
//   - group.scale_down when a child stage (not the master) has been seen
//     empty for ScaleDownAfter while the group is under ScaleDownBelow of
//     its capacity, once per emptiness.
//
// A group with a stage without max_viewers has no capacity, so no scale or
// full events. Ids are derived from the epoch, the group (or stage) and the
// AlertEvery window (scale_up, full) or the moment the emptiness was first
// seen (scale_down), so the outbox's (id, url) key drops a repeat of the
// same window; a watcher that takes over starts its own memory of fullness
// and emptiness, so it may send a group.full again in a later window, and
// counts a child's 10 minutes from when it first sees it empty.
type GroupDetector struct {
	stream *events.Stream
	emit   *Emitter
	cfg    Config

	lastUp     map[string]time.Time // master -> last scale_up sent
	lastFull   map[string]time.Time // master -> last full sent
	full       map[string]bool      // master -> full at the last look
	emptySince map[string]time.Time // child -> first seen empty
	scaledDown map[string]bool      // child -> scale_down sent for this emptiness
}

// NewGroupDetector returns the detector of stream's groups, sending through
// emit with cfg's ScaleUpAt (default 0.8) and AlertEvery (default 5m).
func NewGroupDetector(stream *events.Stream, emit *Emitter, cfg Config) *GroupDetector {
	if cfg.ScaleUpAt <= 0 || cfg.ScaleUpAt > 1 {
		cfg.ScaleUpAt = 0.8
	}
	if cfg.AlertEvery <= 0 {
		cfg.AlertEvery = 5 * time.Minute
	}
	return &GroupDetector{stream: stream, emit: emit, cfg: cfg, lastUp: map[string]time.Time{}, lastFull: map[string]time.Time{},
		full: map[string]bool{}, emptySince: map[string]time.Time{}, scaledDown: map[string]bool{}}
}

// Reset forgets what the detector saw: for a watcher that lost its lease
// (the next holder's memory is its own).
func (d *GroupDetector) Reset() {
	*d = *NewGroupDetector(d.stream, d.emit, d.cfg)
}

// Step looks at every group once at now, under epoch (the watcher's), and
// queues the events due.
func (d *GroupDetector) Step(ctx context.Context, epoch string, now time.Time) error {
	groups, err := d.stream.Groups(ctx)
	if err != nil {
		return fmt.Errorf("group detector: %w", err)
	}
	window := now.UnixMilli() / d.cfg.AlertEvery.Milliseconds()
	for _, g := range groups {
		data, ok := groupData(g)
		for _, st := range g.Stages {
			child := st.Stage != g.Master
			switch {
			case !child || st.Viewers > 0 || st.Reserved > 0:
				delete(d.emptySince, st.Stage)
				delete(d.scaledDown, st.Stage)
			case d.emptySince[st.Stage].IsZero():
				d.emptySince[st.Stage] = now
			}
		}
		if !ok {
			continue // no capacity: nothing to scale by
		}
		if data.Ratio >= d.cfg.ScaleUpAt && now.Sub(d.lastUp[g.Master]) >= d.cfg.AlertEvery {
			if err := d.send(ctx, groupEventID(epoch, GroupScaleUp, g.Master, window), GroupScaleUp, now, data); err != nil {
				return err
			}
			d.lastUp[g.Master] = now
		}
		full := allFull(g)
		if full && !d.full[g.Master] && now.Sub(d.lastFull[g.Master]) >= d.cfg.AlertEvery {
			if err := d.send(ctx, groupEventID(epoch, GroupFull, g.Master, window), GroupFull, now, data); err != nil {
				return err
			}
			d.lastFull[g.Master] = now
		}
		d.full[g.Master] = full
		if data.Ratio < ScaleDownBelow {
			for _, st := range g.Stages {
				since := d.emptySince[st.Stage]
				if since.IsZero() || d.scaledDown[st.Stage] || now.Sub(since) < ScaleDownAfter {
					continue
				}
				down := data
				down.StageARN = st.Stage
				id := groupEventID(epoch, GroupScaleDown, st.Stage, since.UnixMilli())
				if err := d.send(ctx, id, GroupScaleDown, now, down); err != nil {
					return err
				}
				d.scaledDown[st.Stage] = true
			}
		}
	}
	return nil
}

func (d *GroupDetector) send(ctx context.Context, id, typ string, now time.Time, data GroupData) error {
	if err := d.emit.Notify(ctx, Event{ID: id, Type: typ, At: now, Data: data}); err != nil {
		return fmt.Errorf("group detector: %s %s: %w", typ, data.MasterStageARN, err)
	}
	return nil
}

// groupData is g as the events carry it; ok is false when a stage has no
// max_viewers (no capacity).
func groupData(g events.GroupCount) (GroupData, bool) {
	d := GroupData{MasterStageARN: g.Master, Viewers: g.Viewers, Stages: []GroupStage{}}
	ok := true
	for _, st := range g.Stages {
		if st.MaxViewers <= 0 {
			ok = false
		}
		d.Capacity += int64(st.MaxViewers)
		d.Stages = append(d.Stages, GroupStage{StageARN: st.Stage, Viewers: st.Viewers, MaxViewers: int64(st.MaxViewers)})
	}
	if ok && d.Capacity > 0 {
		d.Ratio = float64(g.Viewers) / float64(d.Capacity)
	}
	return d, ok && d.Capacity > 0
}

// allFull: every stage's present viewers and reserved seats reach its
// max_viewers, so an assign would answer group_full.
func allFull(g events.GroupCount) bool {
	for _, st := range g.Stages {
		if st.MaxViewers <= 0 || st.Viewers+st.Reserved < int64(st.MaxViewers) {
			return false
		}
	}
	return len(g.Stages) > 0
}

// groupEventID is the id of a group event: "evt_" and 26 base32 characters
// of SHA-256 of the epoch, the type, the group or stage and a window.
func groupEventID(epoch, typ, subject string, window int64) string {
	sum := sha256.Sum256([]byte(epoch + "\x00" + typ + "\x00" + subject + "\x00" + strconv.FormatInt(window, 10)))
	return "evt_" + base32.StdEncoding.EncodeToString(sum[:])[:26]
}
