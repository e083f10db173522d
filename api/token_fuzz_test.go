package api

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// FuzzVerifyToken: whatever a client sends as a token, verify answers a 401
// with a code or admits a viewer that passes the contract's rules; it never
// panics. Seeds: a valid minted token and mangled forms of it.
func FuzzVerifyToken(f *testing.F) {
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	v := newTokens(TokenConfig{Required: true, SigningKey: key}, nil, time.Now)
	good, _ := jwt.NewWithClaims(jwt.SigningMethodEdDSA, jwt.MapClaims{
		"resource": "arn:aws:ivs:us-east-1:1:stage/a", "user_id": "u", "exp": time.Now().Add(time.Hour).Unix(),
	}).SignedString(key)
	for _, s := range []string{good, good[:len(good)/2], "a.b.c", "..", "eyJhbGciOiJub25lIn0.e30.", "", "\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		vw, _, err := v.verify(raw)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.Status != http.StatusUnauthorized || e.Code == "" {
				t.Fatalf("verify(%q) = %v", raw, err)
			}
			return
		}
		if checkStage(vw.Stage) != nil || checkUser(vw.User) != nil || checkParticipant(vw.Participant) != nil {
			t.Fatalf("verify(%q) admitted %+v", raw, vw)
		}
	})
}
