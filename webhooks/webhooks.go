// Package webhooks tells a customer's endpoints what happens to their
// stages: signed JSON POSTs of events (stage.live, stage.empty, and the
// stage-group events group.scale_up, group.full, group.scale_down), each
// with an id for idempotency.
//
// Delivery is at-least-once from a durable queue, the PostgreSQL outbox
// (store.Outbox): Notify enqueues one row per configured URL and returns; a
// Dispatcher, in every snapshotter process, claims due rows (two dispatchers
// never hold one row at once), POSTs them, and retries failures with
// exponential backoff for RetryFor (default 24 h) before giving up. Nothing
// of this is on the player path: the events are computed from Redis's live
// state by background loops (StageWatcher) and queued in PostgreSQL.
//
// A receiver verifies each request with Verify (header
// X-ViewPulse-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<body>">, the
// scheme Stripe uses) and deduplicates by the event's id: a retry after a
// lost answer, a dispatcher that died mid-delivery, or a stage watcher that
// took over from a dead one, may each deliver an event again, always with the
// same id.
package webhooks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/viewpulse/viewpulse/store"
)

// Event types.
const (
	// StageLive: a stage got its first viewer (0, or not listed, to ≥1).
	// Data: StageData.
	StageLive = "stage.live"
	// StageEmpty: a stage's last viewer left or timed out, or the stage is
	// no longer listed. Data: StageData.
	StageEmpty = "stage.empty"
	// GroupScaleUp: a stage group is at or over GROUP_SCALE_UP_AT of its
	// capacity; at most once per GROUP_ALERT_EVERY per group. Data:
	// GroupData. Computed by the group detector (not in this package yet).
	GroupScaleUp = "group.scale_up"
	// GroupFull: a stage group has no free place left. Data: GroupData.
	GroupFull = "group.full"
	// GroupScaleDown: a child stage has been empty for 10 min while its
	// group is under 0.3 of its capacity: it can be deleted. Data:
	// GroupData with StageARN the empty child.
	GroupScaleDown = "group.scale_down"
)

// Event is one webhook event. Its JSON body is
// {"id":"evt_…","type":"stage.live","created_at":"2026-…Z","data":{…}}.
type Event struct {
	// ID is the idempotency id, the same on every delivery of the event to
	// every URL. Notify fills in NewID() when it is empty.
	ID   string
	Type string
	// At is when the event happened (created_at); Notify fills in now
	// when it is zero.
	At time.Time
	// Data is the type's data object (StageData, GroupData); a receiver
	// decoding an Event gets it as json.RawMessage.
	Data any
}

// StageData is the data of stage.live and stage.empty.
type StageData struct {
	StageARN string    `json:"stage_arn"`
	Viewers  int64     `json:"viewers"`
	At       time.Time `json:"at"` // when the watcher saw the change
}

// GroupData is the data of the group events: a master stage and the child
// stages that replicate it (PUT /v1/stages/{child} with master_stage_arn).
type GroupData struct {
	MasterStageARN string `json:"master_stage_arn"`
	// Viewers present across the group's stages, and the sum of their
	// max_viewers.
	Viewers  int64 `json:"viewers"`
	Capacity int64 `json:"capacity"`
	// Ratio is Viewers / Capacity.
	Ratio  float64      `json:"ratio"`
	Stages []GroupStage `json:"stages"`
	// StageARN is, in group.scale_down, the empty child stage that may go.
	StageARN string `json:"stage_arn,omitempty"`
}

// GroupStage is one stage of a group in GroupData.
type GroupStage struct {
	StageARN   string `json:"stage_arn"`
	Viewers    int64  `json:"viewers"`
	MaxViewers int64  `json:"max_viewers"`
}

type eventJSON struct {
	ID        string    `json:"id"`
	Type      string    `json:"type"`
	CreatedAt time.Time `json:"created_at"`
	Data      any       `json:"data"`
}

// MarshalJSON writes the event's body; created_at is UTC, to the
// millisecond.
func (e Event) MarshalJSON() ([]byte, error) {
	data := e.Data
	if data == nil {
		data = struct{}{}
	}
	return json.Marshal(eventJSON{ID: e.ID, Type: e.Type, CreatedAt: e.At.UTC().Truncate(time.Millisecond), Data: data})
}

// UnmarshalJSON reads a body written by MarshalJSON; Data becomes the raw
// data object (json.RawMessage), to decode into the type's data struct.
func (e *Event) UnmarshalJSON(b []byte) error {
	var raw struct {
		eventJSON
		Data json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	*e = Event{ID: raw.ID, Type: raw.Type, At: raw.CreatedAt, Data: raw.Data}
	return nil
}

// NewID returns a fresh event id: "evt_" and a ULID.
func NewID() string { return "evt_" + ulid.Make().String() }

// Config is a deployment's webhook configuration, as the snapshotter reads
// it from its environment.
type Config struct {
	URLs   []string // WEBHOOK_URLS; none: webhooks are off
	Secret string   // WEBHOOK_SECRET, the HMAC key of the signatures
	// ScaleUpAt is GROUP_SCALE_UP_AT, the share of a group's capacity
	// (0 < x ≤ 1, default 0.8) at which group.scale_up is sent, and
	// AlertEvery GROUP_ALERT_EVERY, the least time between two of one group
	// (default 5m). For the group detector.
	ScaleUpAt  float64
	AlertEvery time.Duration
}

// MinSecretLen is the shortest WEBHOOK_SECRET accepted, in bytes.
const MinSecretLen = 16

// ErrInvalidURL is returned by ParseURLs for an entry that is not an
// absolute http or https URL.
var ErrInvalidURL = errors.New("not an http(s) URL")

// ParseURLs splits a comma-separated list of endpoint URLs (spaces around
// entries are ignored, a URL listed twice is kept once). Errors:
// ErrInvalidURL, naming the first bad entry (an empty entry among them).
func ParseURLs(raw string) ([]string, error) {
	if strings.TrimSpace(raw) == "" {
		return nil, nil
	}
	var out []string
	seen := map[string]bool{}
	for _, s := range strings.Split(raw, ",") {
		s = strings.TrimSpace(s)
		u, err := url.Parse(s)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Fragment != "" {
			return nil, fmt.Errorf("%w: %q", ErrInvalidURL, s)
		}
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out, nil
}

// Emitter queues events for every configured URL.
type Emitter struct {
	outbox *store.Outbox
	urls   []string
	// Now is the clock for events without a time.
	Now func() time.Time
}

// NewEmitter returns an Emitter queueing in outbox for urls; without urls
// Notify does nothing.
func NewEmitter(outbox *store.Outbox, urls []string) *Emitter {
	return &Emitter{outbox: outbox, urls: urls, Now: time.Now}
}

// Enabled reports whether any URL is configured.
func (e *Emitter) Enabled() bool { return len(e.urls) > 0 }

// Notify queues ev for delivery to every URL, in one statement, and returns
// once it is in the outbox (the dispatchers deliver it later). An event whose
// ID is already queued is not queued again. Errors: ErrInvalidEvent (no
// Type), the body's encoding error, or the database's own (nothing queued).
func (e *Emitter) Notify(ctx context.Context, ev Event) error {
	if !e.Enabled() {
		return nil
	}
	if ev.Type == "" {
		return ErrInvalidEvent
	}
	if ev.ID == "" {
		ev.ID = NewID()
	}
	if ev.At.IsZero() {
		ev.At = e.Now()
	}
	body, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("webhook %s: %w", ev.Type, err)
	}
	_, err = e.outbox.Enqueue(ctx, store.WebhookEvent{ID: ev.ID, Type: ev.Type, CreatedAt: ev.At, Payload: body}, e.urls)
	return err
}

// ErrInvalidEvent is returned by Notify for an event without a type.
var ErrInvalidEvent = errors.New("webhook event without a type")
