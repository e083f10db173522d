package api_test

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/viewpulse/viewpulse/api"
	"github.com/viewpulse/viewpulse/internal/ops"
)

const stageB = "arn:aws:ivs:eu-west-1:123456789012:stage/OtherStage9"

// signers are a test's token keys: a P-384 key pair as imported into IVS and
// an Ed25519 pair for ViewPulse alone, their public halves written as PEM
// files and read back the way ingest reads them.
type signers struct {
	ivs       *ecdsa.PrivateKey
	viewer    ed25519.PrivateKey
	ivsPEM    []byte // public, PKIX
	viewerPEM []byte
	cfg       api.TokenConfig
}

// newSigners generates fresh keys, writes their public PEM files to
// t.TempDir() and returns them with a TokenConfig that requires tokens.
func newSigners(t *testing.T) *signers {
	t.Helper()
	ivs, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	viewerPub, viewer, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s := &signers{ivs: ivs, viewer: viewer, ivsPEM: publicPEM(t, &ivs.PublicKey), viewerPEM: publicPEM(t, viewerPub)}
	dir := t.TempDir()
	ivsPath, viewerPath := filepath.Join(dir, "ivs.pem"), filepath.Join(dir, "viewer.pem")
	writeFile(t, ivsPath, s.ivsPEM)
	writeFile(t, viewerPath, s.viewerPEM)
	s.cfg.Required = true
	if s.cfg.IVSKeys, err = api.ReadIVSPublicKeys([]string{ivsPath}); err != nil {
		t.Fatal(err)
	}
	if s.cfg.ViewerKeys, err = api.ReadViewerPublicKeys([]string{viewerPath}); err != nil {
		t.Fatal(err)
	}
	return s
}

func publicPEM(t *testing.T, key any) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// ivsClaims are the claims of an AWS IVS key-pair participant token for
// stage at now, lasting an hour: resource, user_id, jti, exp, iat and the
// claims ViewPulse ignores.
func ivsClaims(now time.Time, stage, user, participant string) jwt.MapClaims {
	c := jwt.MapClaims{
		"resource":     stage,
		"jti":          participant,
		"exp":          now.Add(time.Hour).Unix(),
		"iat":          now.Unix(),
		"topic":        stage[strings.LastIndex(stage, "/")+1:],
		"events_url":   "wss://global.events.live-video.net",
		"whip_url":     "https://453fdfd2ad24.global-bm.whip.live-video.net",
		"capabilities": map[string]bool{"allow_publish": false, "allow_subscribe": true},
		"attributes":   map[string]string{"seat": "A12"},
		"version":      "1.0",
	}
	if user != "" {
		c["user_id"] = user
	}
	return c
}

// sign signs claims with method and key; headers are added to the JOSE header.
func sign(t *testing.T, method jwt.SigningMethod, key any, claims jwt.MapClaims, headers ...string) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, claims)
	for i := 0; i+1 < len(headers); i += 2 {
		tok.Header[headers[i]] = headers[i+1]
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func withTokens(cfg api.TokenConfig) func(*api.Config) {
	return func(c *api.Config) { c.Tokens = cfg; c.Registry = ops.NewRegistry() }
}

func (h *harness) joinWith(body map[string]string, headers ...string) answer {
	h.t.Helper()
	b, _ := json.Marshal(body)
	return h.do(http.MethodPost, "/v1/viewers/join", "application/json", string(b), headers...)
}

// TestTokenJoinIVSShape: the player's own IVS participant token (ES384, no
// kid, IVS's full claim set) joins, and the session in the stream is the
// claims' stage, user and participant.
func TestTokenJoinIVSShape(t *testing.T) {
	k := newSigners(t)
	h := newHarness(t, withTokens(k.cfg))
	tok := sign(t, jwt.SigningMethodES384, k.ivs, ivsClaims(h.clock.Now(), stage, "alice", "7Jgai0mcgkPc"))
	a := h.joinWith(map[string]string{"token": tok})
	if a.status != http.StatusOK || a.body["session_id"] == "" {
		t.Fatalf("join with an IVS token: %d %v", a.status, a.body)
	}
	e := h.lastEvent()
	if e.Type != "join" || e.Stage != stage || e.User != "alice" || e.Participant != "7Jgai0mcgkPc" || e.Session != a.body["session_id"] {
		t.Fatalf("stream event = %+v", e)
	}

	// IVS leaves user_id optional: the participant id stands for the user.
	tok = sign(t, jwt.SigningMethodES384, k.ivs, ivsClaims(h.clock.Now(), stage, "", "Participant_2"))
	if a := h.joinWith(map[string]string{"token": tok}); a.status != http.StatusOK {
		t.Fatalf("join without user_id: %d %v", a.status, a.body)
	}
	if e := h.lastEvent(); e.User != "Participant_2" || e.Participant != "Participant_2" {
		t.Fatalf("stream event = %+v", e)
	}
}

// TestTokenJoinEdDSA: a token the customer's backend signs with its Ed25519
// key, with or without the key's kid, in the body or the Authorization header.
func TestTokenJoinEdDSA(t *testing.T) {
	k := newSigners(t)
	h := newHarness(t, withTokens(k.cfg))
	kid := api.KeyID(k.viewer.Public())
	for name, tc := range map[string]struct {
		body    map[string]string
		headers []string
	}{
		"body, kid":         {map[string]string{"token": sign(t, jwt.SigningMethodEdDSA, k.viewer, ivsClaims(h.clock.Now(), stage, "u-body", ""), "kid", kid)}, nil},
		"body, no kid":      {map[string]string{"token": sign(t, jwt.SigningMethodEdDSA, k.viewer, ivsClaims(h.clock.Now(), stage, "u-nokid", ""))}, nil},
		"body, foreign kid": {map[string]string{"token": sign(t, jwt.SigningMethodEdDSA, k.viewer, ivsClaims(h.clock.Now(), stage, "u-foreign", ""), "kid", "not-ours")}, nil},
		"header":            {map[string]string{}, []string{"Authorization", "Bearer " + sign(t, jwt.SigningMethodEdDSA, k.viewer, ivsClaims(h.clock.Now(), stage, "u-header", ""))}},
		"header and body, the same token": func() struct {
			body    map[string]string
			headers []string
		} {
			tok := sign(t, jwt.SigningMethodEdDSA, k.viewer, ivsClaims(h.clock.Now(), stage, "u-both", ""))
			return struct {
				body    map[string]string
				headers []string
			}{map[string]string{"token": tok}, []string{"Authorization", "Bearer " + tok}}
		}(),
	} {
		a := h.joinWith(tc.body, tc.headers...)
		if a.status != http.StatusOK {
			t.Errorf("%s: %d %v", name, a.status, a.body)
			continue
		}
		if e := h.lastEvent(); e.Stage != stage || !strings.HasPrefix(e.User, "u-") || e.Participant != "" {
			t.Errorf("%s: stream event = %+v", name, e)
		}
	}
}

// TestTokenClaimsDecideTheSession: a body may repeat what the claims say;
// naming another stage, user or participant is 403 token_mismatch, and a
// token-only body joins the token's stage.
func TestTokenClaimsDecideTheSession(t *testing.T) {
	k := newSigners(t)
	h := newHarness(t, withTokens(k.cfg))
	tok := sign(t, jwt.SigningMethodES384, k.ivs, ivsClaims(h.clock.Now(), stage, "carol", "p1"))

	// A token for stage A with a token-only body joins A, never B.
	a := h.joinWith(map[string]string{"token": tok})
	if a.status != http.StatusOK {
		t.Fatalf("token-only body: %d %v", a.status, a.body)
	}
	if e := h.lastEvent(); e.Stage != stage || e.User != "carol" || e.Participant != "p1" {
		t.Fatalf("stream event = %+v", e)
	}
	a = h.joinWith(map[string]string{"token": tok, "stage_arn": stage, "user_id": "carol", "participant_id": "p1"})
	if a.status != http.StatusOK || a.body["rejoined"] != true {
		t.Fatalf("agreeing body: %d %v", a.status, a.body)
	}
	before := h.streamLen()
	for field, value := range map[string]string{"stage_arn": stageB, "user_id": "mallory", "participant_id": "p2"} {
		a := h.joinWith(map[string]string{"token": tok, field: value})
		if a.status != http.StatusForbidden || a.code() != "token_mismatch" || !strings.Contains(a.message(), field) {
			t.Errorf("body %s=%s: %d %v", field, value, a.status, a.body)
		}
		if n := h.streamLen(); n != before {
			t.Fatalf("a refused join appended: stream %d -> %d", before, n)
		}
	}
	viewersB := h.do(http.MethodGet, "/v1/stages/"+escape(stageB)+"/viewers", "", "")
	if num(viewersB.body["viewers"]) != 0 {
		t.Fatalf("stage B counts a viewer: %v", viewersB.body)
	}
}

func escape(s string) string {
	return strings.NewReplacer(":", "%3A", "/", "%2F").Replace(s)
}

// TestTokenRejections: every bad token is a 401 (or 403) with its code, a
// WWW-Authenticate challenge, a count in viewpulse_token_rejected_total, and
// nothing in the stream.
func TestTokenRejections(t *testing.T) {
	k := newSigners(t)
	h := newHarness(t, withTokens(k.cfg))
	now := h.clock.Now()
	good := func(mut func(jwt.MapClaims)) jwt.MapClaims {
		c := ivsClaims(now, stage, "dave", "p-dave")
		if mut != nil {
			mut(c)
		}
		return c
	}
	stranger, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	_, strangerEd, _ := ed25519.GenerateKey(rand.Reader)
	valid := sign(t, jwt.SigningMethodES384, k.ivs, good(nil))
	none := sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, good(nil))

	cases := []struct {
		name    string
		body    map[string]string
		headers []string
		status  int
		code    string
		reason  string
		message string
	}{
		{"no token", map[string]string{"stage_arn": stage, "user_id": "dave"}, nil, 401, "token_required", "required", "token"},
		{"empty body, no header", map[string]string{}, nil, 401, "token_required", "required", ""},
		{"expired past the leeway", map[string]string{"token": sign(t, jwt.SigningMethodES384, k.ivs, good(func(c jwt.MapClaims) { c["exp"] = now.Add(-31 * time.Second).Unix() }))}, nil, 401, "token_expired", "expired", "expired at"},
		{"not yet valid", map[string]string{"token": sign(t, jwt.SigningMethodES384, k.ivs, good(func(c jwt.MapClaims) { c["nbf"] = now.Add(2 * time.Minute).Unix() }))}, nil, 401, "invalid_token", "not_yet_valid", "not valid yet"},
		{"no exp", map[string]string{"token": sign(t, jwt.SigningMethodES384, k.ivs, good(func(c jwt.MapClaims) { delete(c, "exp") }))}, nil, 401, "invalid_token", "invalid", "exp"},
		{"unknown P-384 key", map[string]string{"token": sign(t, jwt.SigningMethodES384, stranger, good(nil))}, nil, 401, "invalid_token", "invalid", "signature"},
		{"unknown Ed25519 key with our kid", map[string]string{"token": sign(t, jwt.SigningMethodEdDSA, strangerEd, good(nil), "kid", api.KeyID(k.viewer.Public()))}, nil, 401, "invalid_token", "invalid", "signature"},
		{"alg none", map[string]string{"token": none}, nil, 401, "invalid_token", "invalid", "alg none"},
		{"HS256 keyed with the IVS public key's PEM", map[string]string{"token": sign(t, jwt.SigningMethodHS256, k.ivsPEM, good(nil))}, nil, 401, "invalid_token", "invalid", "alg HS256"},
		{"HS256 keyed with the Ed25519 public key", map[string]string{"token": sign(t, jwt.SigningMethodHS256, []byte(k.viewer.Public().(ed25519.PublicKey)), good(nil))}, nil, 401, "invalid_token", "invalid", "alg HS256"},
		{"truncated signature", map[string]string{"token": valid[:len(valid)-8]}, nil, 401, "invalid_token", "invalid", ""},
		{"truncated to two parts", map[string]string{"token": valid[:strings.LastIndex(valid, ".")]}, nil, 401, "invalid_token", "invalid", "well-formed"},
		{"not a JWT", map[string]string{"token": "hello"}, nil, 401, "invalid_token", "invalid", "well-formed"},
		{"resource is not a stage ARN", map[string]string{"token": sign(t, jwt.SigningMethodES384, k.ivs, good(func(c jwt.MapClaims) { c["resource"] = "arn:aws:ivs:eu-west-1:1:channel/x" }))}, nil, 401, "invalid_token", "invalid", "resource"},
		{"jti breaks the participant rule", map[string]string{"token": sign(t, jwt.SigningMethodES384, k.ivs, good(func(c jwt.MapClaims) { c["jti"] = "has spaces" }))}, nil, 401, "invalid_token", "invalid", "jti"},
		{"user_id not printable", map[string]string{"token": sign(t, jwt.SigningMethodES384, k.ivs, good(func(c jwt.MapClaims) { c["user_id"] = "a\x00b" }))}, nil, 401, "invalid_token", "invalid", "user_id"},
		{"neither user_id nor jti", map[string]string{"token": sign(t, jwt.SigningMethodES384, k.ivs, good(func(c jwt.MapClaims) { delete(c, "jti"); delete(c, "user_id") }))}, nil, 401, "invalid_token", "invalid", "no user"},
		{"exp of the wrong type", map[string]string{"token": sign(t, jwt.SigningMethodES384, k.ivs, good(func(c jwt.MapClaims) { c["exp"] = "tomorrow" }))}, nil, 401, "invalid_token", "invalid", ""},
		{"Basic authorization", map[string]string{}, []string{"Authorization", "Basic ZGF2ZTpwdw=="}, 401, "invalid_token", "invalid", "Bearer"},
		{"body and header disagree", map[string]string{"token": valid}, []string{"Authorization", "Bearer " + none}, 401, "invalid_token", "invalid", "different"},
		{"stage B in the body", map[string]string{"token": valid, "stage_arn": stageB}, nil, 403, "token_mismatch", "mismatch", "stage_arn"},
	}
	before := h.streamLen()
	want := map[string]int{}
	for _, tc := range cases {
		a := h.joinWith(tc.body, tc.headers...)
		msg := a.message()
		if a.status != tc.status || a.code() != tc.code || !strings.Contains(msg, tc.message) {
			t.Errorf("%s: %d %s %q, want %d %s containing %q", tc.name, a.status, a.code(), msg, tc.status, tc.code, tc.message)
		}
		if tc.status == 401 && !strings.HasPrefix(a.header.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("%s: no WWW-Authenticate challenge", tc.name)
		}
		if n := h.streamLen(); n != before {
			t.Fatalf("%s: a refused join appended: stream %d -> %d", tc.name, before, n)
		}
		want[tc.reason]++
	}
	metrics := h.metrics()
	for reason, n := range want {
		line := `viewpulse_token_rejected_total{reason="` + reason + `"} ` + itoa(n)
		if !strings.Contains(metrics, line+"\n") {
			t.Errorf("metrics lack %s", line)
		}
	}

	// Within the 30 s leeway an expired token still joins.
	tok := sign(t, jwt.SigningMethodES384, k.ivs, good(func(c jwt.MapClaims) { c["exp"] = now.Add(-20 * time.Second).Unix() }))
	if a := h.joinWith(map[string]string{"token": tok}); a.status != http.StatusOK {
		t.Fatalf("expired 20 s ago: %d %v", a.status, a.body)
	}
}

// TestTokenExpiresWithTheClock: the server's clock decides exp: the same
// token joins, then after exp + 30 s is refused.
func TestTokenExpiresWithTheClock(t *testing.T) {
	k := newSigners(t)
	h := newHarness(t, withTokens(k.cfg))
	c := ivsClaims(h.clock.Now(), stage, "erin", "")
	c["exp"] = h.clock.Now().Add(time.Minute).Unix()
	tok := sign(t, jwt.SigningMethodEdDSA, k.viewer, c)
	if a := h.joinWith(map[string]string{"token": tok}); a.status != http.StatusOK {
		t.Fatalf("fresh token: %d %v", a.status, a.body)
	}
	h.clock.Add(time.Minute + 31*time.Second)
	before := h.streamLen()
	if a := h.joinWith(map[string]string{"token": tok}); a.status != 401 || a.code() != "token_expired" {
		t.Fatalf("after exp: %d %v", a.status, a.body)
	}
	if h.streamLen() != before {
		t.Fatal("an expired token appended")
	}
}

// TestTokenOnlyAlgorithmsWithKeys: with only IVS keys configured, an EdDSA
// token is refused by its alg, whatever its signature.
func TestTokenOnlyAlgorithmsWithKeys(t *testing.T) {
	k := newSigners(t)
	cfg := k.cfg
	cfg.ViewerKeys = nil
	h := newHarness(t, withTokens(cfg))
	tok := sign(t, jwt.SigningMethodEdDSA, k.viewer, ivsClaims(h.clock.Now(), stage, "frank", ""))
	a := h.joinWith(map[string]string{"token": tok})
	if a.status != 401 || a.code() != "invalid_token" || !strings.Contains(a.message(), "ES384") {
		t.Fatalf("EdDSA without viewer keys: %d %v", a.status, a.body)
	}
}

// TestTokensOffIgnoresTokens: VIEWER_AUTH=off keeps today's join: the body
// names stage and user, and a token sent is neither needed nor read.
func TestTokensOffIgnoresTokens(t *testing.T) {
	k := newSigners(t)
	cfg := k.cfg
	cfg.Required = false
	h := newHarness(t, withTokens(cfg))
	tok := sign(t, jwt.SigningMethodES384, k.ivs, ivsClaims(h.clock.Now(), stage, "gina", ""))
	if a := h.joinWith(map[string]string{"token": tok}); a.status != 400 || a.code() != "invalid_stage_arn" {
		t.Fatalf("token-only body with tokens off: %d %v", a.status, a.body)
	}
	a := h.joinWith(map[string]string{"token": "not even a JWT", "stage_arn": stageB, "user_id": "gina"})
	if a.status != http.StatusOK {
		t.Fatalf("join with tokens off: %d %v", a.status, a.body)
	}
	if e := h.lastEvent(); e.Stage != stageB || e.User != "gina" {
		t.Fatalf("stream event = %+v", e)
	}
}

// metrics returns the text of GET /metrics.
func (h *harness) metrics() string {
	h.t.Helper()
	resp, err := http.Get(h.srv.URL + "/metrics")
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}
