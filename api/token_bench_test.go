package api

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// BenchmarkVerifyToken is the cost a join pays for its token: parse, verify
// the signature, validate the times and claims. ES384 is a player's IVS
// token (no kid, IVS's full claim set) with one IVS key, and among two with
// the right one second (a key rotation: without a kid every key is tried);
// EdDSA is a minted token whose kid picks the key at once.
func BenchmarkVerifyToken(b *testing.B) {
	now := time.Now()
	old, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	ivs, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	v := newTokens(TokenConfig{Required: true, IVSKeys: []*ecdsa.PublicKey{&ivs.PublicKey}, SigningKey: ed}, nil, time.Now)
	rotating := newTokens(TokenConfig{Required: true, IVSKeys: []*ecdsa.PublicKey{&old.PublicKey, &ivs.PublicKey}}, nil, time.Now)
	claims := jwt.MapClaims{
		"resource": "arn:aws:ivs:us-west-2:123456789012:stage/8bPHQxQwnrfS", "user_id": "viewer-42", "jti": "7Jgai0mcgkPc",
		"exp": now.Add(time.Hour).Unix(), "iat": now.Unix(), "topic": "8bPHQxQwnrfS",
		"events_url": "wss://global.events.live-video.net", "whip_url": "https://453fdfd2ad24.global-bm.whip.live-video.net",
		"capabilities": map[string]bool{"allow_subscribe": true}, "attributes": map[string]string{"seat": "A12"}, "version": "1.0",
	}
	es, err := jwt.NewWithClaims(jwt.SigningMethodES384, claims).SignedString(ivs)
	if err != nil {
		b.Fatal(err)
	}
	edTok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, claims)
	edTok.Header["kid"] = KeyID(ed.Public())
	eds, err := edTok.SignedString(ed)
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name  string
		v     *tokens
		token string
	}{{"ES384", v, es}, {"ES384/second_of_two_keys", rotating, es}, {"EdDSA", v, eds}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := bc.v.verify(bc.token); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
