package api

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
)

// ReadIVSPublicKeys reads the PEM files at paths, each holding one P-384
// public key (PKIX "PUBLIC KEY", the form IVS imports). It returns an error
// naming the file that cannot be read or holds anything else.
func ReadIVSPublicKeys(paths []string) ([]*ecdsa.PublicKey, error) {
	var out []*ecdsa.PublicKey
	for _, p := range paths {
		key, err := readPublicKey(p)
		if err != nil {
			return nil, err
		}
		ec, ok := key.(*ecdsa.PublicKey)
		if !ok || ec.Curve != elliptic.P384() {
			return nil, fmt.Errorf("%s: not a P-384 (ES384) public key", p)
		}
		out = append(out, ec)
	}
	return out, nil
}

// ReadViewerPublicKeys reads the PEM files at paths, each holding one Ed25519
// public key (PKIX "PUBLIC KEY"). It returns an error naming the file that
// cannot be read or holds anything else.
func ReadViewerPublicKeys(paths []string) ([]ed25519.PublicKey, error) {
	var out []ed25519.PublicKey
	for _, p := range paths {
		key, err := readPublicKey(p)
		if err != nil {
			return nil, err
		}
		ed, ok := key.(ed25519.PublicKey)
		if !ok {
			return nil, fmt.Errorf("%s: not an Ed25519 public key", p)
		}
		out = append(out, ed)
	}
	return out, nil
}

// ReadSigningKey reads the PEM file at path holding one Ed25519 private key
// (PKCS #8 "PRIVATE KEY", as `openssl genpkey -algorithm ed25519` writes
// it). Errors name the file; they never quote its content.
func ReadSigningKey(path string) (ed25519.PrivateKey, error) {
	block, err := readPEM(path)
	if err != nil {
		return nil, err
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: not an Ed25519 private key in PKCS #8 PEM (openssl genpkey -algorithm ed25519 writes one)", path)
	}
	ed, ok := key.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%s: not an Ed25519 private key", path)
	}
	return ed, nil
}

func readPublicKey(path string) (crypto.PublicKey, error) {
	block, err := readPEM(path)
	if err != nil {
		return nil, err
	}
	key, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: not a PKIX public key (PEM \"PUBLIC KEY\")", path)
	}
	return key, nil
}

func readPEM(path string) (*pem.Block, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = pe.Err // the path is named once, below
		}
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	block, _ := pem.Decode(raw)
	if block == nil {
		return nil, fmt.Errorf("%s: no PEM block", path)
	}
	return block, nil
}

// KeyID is the kid of a public key: its RFC 7638 JWK thumbprint (SHA-256 of
// the canonical JWK members, base64url without padding). Any JOSE tool
// computes the same value, and no configuration has to name it. It returns
// "" for a key type ViewPulse does not use.
func KeyID(key crypto.PublicKey) string {
	b64 := base64.RawURLEncoding.EncodeToString
	var jwk string
	switch k := key.(type) {
	case ed25519.PublicKey:
		jwk = `{"crv":"Ed25519","kty":"OKP","x":"` + b64(k) + `"}`
	case *ecdsa.PublicKey:
		raw, err := k.Bytes() // 0x04 || X || Y, each coordinate of fixed size
		if err != nil || k.Curve != elliptic.P384() {
			return ""
		}
		n := (len(raw) - 1) / 2
		jwk = `{"crv":"P-384","kty":"EC","x":"` + b64(raw[1:1+n]) + `","y":"` + b64(raw[1+n:]) + `"}`
	default:
		return ""
	}
	sum := sha256.Sum256([]byte(jwk))
	return b64(sum[:])
}
