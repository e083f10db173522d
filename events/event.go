// Package events holds ViewPulse's event model and the Redis side of the
// pipeline: the stream that is the source of truth and the live presence
// state that ingest updates in the same atomic step.
//
// It imports nothing else of ViewPulse's.
package events

import (
	"errors"
	"fmt"
	"strconv"
	"time"
)

// Version is the schema version written into every new stream entry.
const Version = 1

// Type is the kind of an event.
type Type string

// The event types. Join opens (or continues) a session, Heartbeat keeps it
// present, Leave and Timeout close it.
const (
	Join      Type = "join"
	Heartbeat Type = "heartbeat"
	Leave     Type = "leave"
	Timeout   Type = "timeout"
)

// Stream entry field names. The Lua scripts in scripts.go write the same names;
// TestScriptsWriteDecodableEvents keeps the two in step.
const (
	FieldVersion     = "v"
	FieldType        = "type"
	FieldSession     = "session"
	FieldUser        = "user"
	FieldStage       = "stage"
	FieldParticipant = "participant"
	FieldAt          = "at"
	FieldUA          = "ua"
	FieldIP          = "ip"
	FieldCountry     = "country"
	FieldJoined      = "joined"
	FieldLastSeen    = "last_seen"
)

// Event is one decoded stream entry. Times have millisecond precision, the
// precision of the stream.
type Event struct {
	ID          string // stream entry ID; empty before the event is appended
	Version     int
	Type        Type
	Session     string
	User        string
	Stage       string
	Participant string
	At          time.Time
	// UA, IP and Country travel on the first join of a session only.
	UA      string
	IP      string
	Country string
	// Joined and LastSeen travel on leave and timeout, so that the event alone
	// closes the session row.
	Joined   time.Time
	LastSeen time.Time
}

// ErrDecode is wrapped by every error Decode returns.
var ErrDecode = errors.New("undecodable event")

// Decode turns a stream entry's fields into an Event. It accepts every schema
// version up to Version (an entry without "v" is version 1) and returns an
// error wrapping ErrDecode, naming the field, for anything it cannot trust.
func Decode(id string, values map[string]any) (Event, error) {
	e := Event{ID: id, Version: 1}
	str := func(name string) string {
		s, _ := values[name].(string)
		return s
	}
	if v := str(FieldVersion); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return Event{}, fmt.Errorf("%w: field v=%q", ErrDecode, v)
		}
		if n > Version {
			return Event{}, fmt.Errorf("%w: version %d is newer than %d", ErrDecode, n, Version)
		}
		e.Version = n
	}
	e.Type = Type(str(FieldType))
	switch e.Type {
	case Join, Heartbeat, Leave, Timeout:
	default:
		return Event{}, fmt.Errorf("%w: field type=%q", ErrDecode, e.Type)
	}
	e.Session, e.User, e.Stage = str(FieldSession), str(FieldUser), str(FieldStage)
	for name, v := range map[string]string{FieldSession: e.Session, FieldUser: e.User, FieldStage: e.Stage} {
		if v == "" {
			return Event{}, fmt.Errorf("%w: field %s is missing", ErrDecode, name)
		}
	}
	e.Participant = str(FieldParticipant)
	e.UA, e.IP, e.Country = str(FieldUA), str(FieldIP), str(FieldCountry)
	var err error
	if e.At, err = msField(values, FieldAt, true); err != nil {
		return Event{}, err
	}
	closing := e.Type == Leave || e.Type == Timeout
	if e.Joined, err = msField(values, FieldJoined, closing); err != nil {
		return Event{}, err
	}
	if e.LastSeen, err = msField(values, FieldLastSeen, closing); err != nil {
		return Event{}, err
	}
	return e, nil
}

// Values returns the event as flat stream fields in a stable order, ready for
// XADD. Empty optional fields are left out.
func (e Event) Values() []any {
	v := e.Version
	if v == 0 {
		v = Version
	}
	out := []any{
		FieldVersion, strconv.Itoa(v),
		FieldType, string(e.Type),
		FieldSession, e.Session,
		FieldUser, e.User,
		FieldStage, e.Stage,
		FieldAt, ms(e.At),
	}
	add := func(name, value string) {
		if value != "" {
			out = append(out, name, value)
		}
	}
	add(FieldParticipant, e.Participant)
	add(FieldUA, e.UA)
	add(FieldIP, e.IP)
	add(FieldCountry, e.Country)
	if !e.Joined.IsZero() {
		add(FieldJoined, ms(e.Joined))
	}
	if !e.LastSeen.IsZero() {
		add(FieldLastSeen, ms(e.LastSeen))
	}
	return out
}

func ms(t time.Time) string { return strconv.FormatInt(t.UnixMilli(), 10) }

func msField(values map[string]any, name string, required bool) (time.Time, error) {
	s, _ := values[name].(string)
	if s == "" {
		if required {
			return time.Time{}, fmt.Errorf("%w: field %s is missing", ErrDecode, name)
		}
		return time.Time{}, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		return time.Time{}, fmt.Errorf("%w: field %s=%q is not a Unix ms time", ErrDecode, name, s)
	}
	return time.UnixMilli(n).UTC(), nil
}
