package webhooks

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
	"time"
)

// Headers of every webhook request.
const (
	// SignatureHeader carries "t=<unix seconds>,v1=<hex signature>"; a
	// receiver may find several v1 (one per secret, while a secret is
	// rotated) and accepts the request when one matches.
	SignatureHeader = "X-ViewPulse-Signature"
	// EventIDHeader repeats the event's id, for receivers that deduplicate
	// before reading the body.
	EventIDHeader = "X-ViewPulse-Event-Id"
)

// DefaultTolerance is how far a signature's timestamp may be from the
// receiver's clock when Verify is given no tolerance: it bounds replays of
// a captured request.
const DefaultTolerance = 5 * time.Minute

// Errors of Verify.
var (
	ErrNoSignature       = errors.New("webhook signature header missing or malformed")
	ErrSignatureExpired  = errors.New("webhook signature timestamp outside the tolerance")
	ErrSignatureMismatch = errors.New("webhook signature does not match")
)

// Sign returns the SignatureHeader value for body sent at t: t=<t's Unix
// seconds>,v1=<hex of HMAC-SHA256, keyed with secret, of "<t>.<body>">.
func Sign(secret string, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	return "t=" + ts + ",v1=" + hex.EncodeToString(mac(secret, ts, body))
}

// Verify checks a request's SignatureHeader value against its raw body (as
// read, before any JSON decoding) and secret: some v1 must be the HMAC of
// "<t>.<body>", compared in constant time, and t within tolerance of now
// (DefaultTolerance when tolerance <= 0). Errors: ErrNoSignature,
// ErrSignatureExpired, ErrSignatureMismatch.
func Verify(secret, header string, body []byte, tolerance time.Duration) error {
	return verifyAt(secret, header, body, tolerance, time.Now())
}

func verifyAt(secret, header string, body []byte, tolerance time.Duration, now time.Time) error {
	if tolerance <= 0 {
		tolerance = DefaultTolerance
	}
	var ts string
	var sigs [][]byte
	for _, part := range strings.Split(header, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		switch {
		case !ok:
			return ErrNoSignature
		case k == "t":
			if ts != "" {
				return ErrNoSignature
			}
			ts = v
		case k == "v1":
			if sig, err := hex.DecodeString(v); err == nil {
				sigs = append(sigs, sig)
			}
		}
		// other schemes (v0, …) are ignored, as Stripe's libraries do
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || len(sigs) == 0 {
		return ErrNoSignature
	}
	if d := now.Sub(time.Unix(sec, 0)); d > tolerance || d < -tolerance {
		return ErrSignatureExpired
	}
	want := mac(secret, ts, body)
	for _, sig := range sigs {
		if hmac.Equal(sig, want) {
			return nil
		}
	}
	return ErrSignatureMismatch
}

func mac(secret, ts string, body []byte) []byte {
	h := hmac.New(sha256.New, []byte(secret))
	h.Write([]byte(ts))
	h.Write([]byte{'.'})
	h.Write(body)
	return h.Sum(nil)
}
