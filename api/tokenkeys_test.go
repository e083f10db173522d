package api_test

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"math/big"
	"testing"

	"github.com/viewpulse/viewpulse/api"
)

// TestKeyIDIsTheJWKThumbprint: KeyID is the RFC 7638 thumbprint: for
// Ed25519 the RFC 8037 appendix A.3 vector, for P-384 one built here from
// the key's coordinates.
func TestKeyIDIsTheJWKThumbprint(t *testing.T) {
	x, _ := base64.RawURLEncoding.DecodeString("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo")
	if got := api.KeyID(ed25519.PublicKey(x)); got != "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k" {
		t.Fatalf("Ed25519 kid = %s", got)
	}
	for range 20 { // some coordinates have leading zero bytes, which must be kept
		k, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
		raw, _ := k.PublicKey.Bytes()
		var px, py big.Int
		px.SetBytes(raw[1:49])
		py.SetBytes(raw[49:])
		b64 := func(n *big.Int) string { return base64.RawURLEncoding.EncodeToString(n.FillBytes(make([]byte, 48))) }
		sum := sha256.Sum256([]byte(`{"crv":"P-384","kty":"EC","x":"` + b64(&px) + `","y":"` + b64(&py) + `"}`))
		if got, want := api.KeyID(&k.PublicKey), base64.RawURLEncoding.EncodeToString(sum[:]); got != want {
			t.Fatalf("P-384 kid = %s, want %s", got, want)
		}
	}
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if got := api.KeyID(&p256.PublicKey); got != "" {
		t.Fatalf("P-256 kid = %q, want none", got)
	}
}
