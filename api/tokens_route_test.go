package api_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/viewpulse/viewpulse/api"
	"github.com/viewpulse/viewpulse/internal/ratelimit"
)

// newMinter is a harness whose server mints tokens with a fresh Ed25519 key
// and requires them on joins; the API key is "mint-key".
func newMinter(t *testing.T) (*harness, ed25519.PrivateKey) {
	t.Helper()
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, withTokens(api.TokenConfig{Required: true, SigningKey: key}), func(c *api.Config) {
		c.APIKeys = []string{"mint-key"}
	})
	return h, key
}

func (h *harness) mint(body any, headers ...string) answer {
	h.t.Helper()
	b, _ := json.Marshal(body)
	return h.do(http.MethodPost, "/v1/tokens", "application/json", string(b), headers...)
}

var mintAuth = []string{"Authorization", "Bearer mint-key"}

// TestMintRoundTrip: a minted token carries the signing key's kid and the
// IVS claims, and joins its stage as its user; the signing key's public half
// verifies it without being listed in ViewerKeys.
func TestMintRoundTrip(t *testing.T) {
	h, key := newMinter(t)
	a := h.mint(map[string]any{"user_id": "hana", "stage_arn": stage, "participant_id": "seat-7", "ttl_seconds": 600}, mintAuth...)
	if a.status != http.StatusOK || a.body["stage_arn"] != stage {
		t.Fatalf("mint: %d %v", a.status, a.body)
	}
	exp, err := time.Parse(time.RFC3339, a.body["expires_at"].(string))
	if want := h.clock.Now().Add(600 * time.Second).Truncate(time.Second); err != nil || !exp.Equal(want) {
		t.Fatalf("expires_at = %v (%v), want %v", a.body["expires_at"], err, want)
	}
	raw := a.body["token"].(string)
	var claims jwt.MapClaims
	tok, _, err := jwt.NewParser().ParseUnverified(raw, &claims)
	if err != nil {
		t.Fatal(err)
	}
	if tok.Header["alg"] != "EdDSA" || tok.Header["kid"] != api.KeyID(key.Public()) || claims["resource"] != stage ||
		claims["user_id"] != "hana" || claims["jti"] != "seat-7" || claims["iat"] == nil || int64(claims["exp"].(float64)) != exp.Unix() {
		t.Fatalf("header %v claims %v", tok.Header, claims)
	}

	j := h.joinWith(map[string]string{"token": raw})
	if j.status != http.StatusOK {
		t.Fatalf("join with the minted token: %d %v", j.status, j.body)
	}
	if e := h.lastEvent(); e.Stage != stage || e.User != "hana" || e.Participant != "seat-7" {
		t.Fatalf("stream event = %+v", e)
	}

	// Without participant_id and ttl_seconds: no jti, an hour.
	a = h.mint(map[string]any{"user_id": "ivan", "stage_arn": stage}, mintAuth...)
	exp, _ = time.Parse(time.RFC3339, a.body["expires_at"].(string))
	if a.status != http.StatusOK || !exp.Equal(h.clock.Now().Add(time.Hour).Truncate(time.Second)) {
		t.Fatalf("mint with defaults: %d %v", a.status, a.body)
	}
	if j := h.joinWith(map[string]string{}, "Authorization", "Bearer "+a.body["token"].(string)); j.status != http.StatusOK {
		t.Fatalf("join with the minted token in the header: %d %v", j.status, j.body)
	}
	if e := h.lastEvent(); e.User != "ivan" || e.Participant != "" {
		t.Fatalf("stream event = %+v", e)
	}
	h.clock.Add(time.Hour + 31*time.Second)
	if j := h.joinWith(map[string]string{"token": a.body["token"].(string)}); j.status != 401 || j.code() != "token_expired" {
		t.Fatalf("join after the ttl: %d %v", j.status, j.body)
	}
}

// TestMintRefusesBadInput: ttl_seconds outside 60–86,400 and bad fields are
// 400 with their code; the bounds themselves mint.
func TestMintRefusesBadInput(t *testing.T) {
	h, _ := newMinter(t)
	for _, tc := range []struct {
		body any
		code string
	}{
		{map[string]any{"user_id": "u", "stage_arn": stage, "ttl_seconds": 59}, "invalid_ttl_seconds"},
		{map[string]any{"user_id": "u", "stage_arn": stage, "ttl_seconds": 86_401}, "invalid_ttl_seconds"},
		{map[string]any{"user_id": "u", "stage_arn": stage, "ttl_seconds": 0}, "invalid_ttl_seconds"},
		{map[string]any{"user_id": "u", "stage_arn": stage, "ttl_seconds": -5}, "invalid_ttl_seconds"},
		{map[string]any{"user_id": "u", "stage_arn": stage, "ttl_seconds": 1.5}, "invalid_json"},
		{map[string]any{"user_id": "u", "stage_arn": stage, "ttl_seconds": "60"}, "invalid_json"},
		{map[string]any{"stage_arn": stage}, "invalid_user_id"},
		{map[string]any{"user_id": "u"}, "invalid_stage_arn"},
		{map[string]any{"user_id": "u", "stage_arn": "arn:aws:ivs:eu-west-1:1:channel/x"}, "invalid_stage_arn"},
		{map[string]any{"user_id": "u", "stage_arn": stage, "participant_id": "no spaces please"}, "invalid_participant_id"},
	} {
		if a := h.mint(tc.body, mintAuth...); a.status != 400 || a.code() != tc.code {
			t.Errorf("%v: %d %v, want 400 %s", tc.body, a.status, a.body, tc.code)
		}
	}
	for _, ttl := range []int{60, 86_400} {
		if a := h.mint(map[string]any{"user_id": "u", "stage_arn": stage, "ttl_seconds": ttl}, mintAuth...); a.status != 200 {
			t.Errorf("ttl %d: %d %v", ttl, a.status, a.body)
		}
	}
}

// TestMintNeedsKeyAndSigningKey: minting needs an API key, even when
// API_KEYS is empty, and answers 404 token_minting_disabled without
// VIEWER_TOKEN_SIGNING_KEY.
func TestMintNeedsKeyAndSigningKey(t *testing.T) {
	h, _ := newMinter(t)
	body := map[string]any{"user_id": "u", "stage_arn": stage}
	for name, headers := range map[string][]string{
		"no key": nil, "wrong key": {"Authorization", "Bearer not-the-key"}, "key as Basic": {"Authorization", "Basic mint-key"},
	} {
		if a := h.mint(body, headers...); a.status != 401 || a.code() != "unauthorized" || a.header.Get("WWW-Authenticate") == "" {
			t.Errorf("%s: %d %v", name, a.status, a.body)
		}
	}

	_, key, _ := ed25519.GenerateKey(rand.Reader)
	open := newHarness(t, withTokens(api.TokenConfig{SigningKey: key})) // no API_KEYS
	if a := open.mint(body); a.status != 401 || a.code() != "unauthorized" {
		t.Errorf("without API_KEYS: %d %v", a.status, a.body)
	}

	off := newHarness(t, func(c *api.Config) { c.APIKeys = []string{"mint-key"} })
	if a := off.mint(body, mintAuth...); a.status != 404 || a.code() != "token_minting_disabled" {
		t.Errorf("without a signing key: %d %v", a.status, a.body)
	}
	if a := off.mint(body); a.status != 401 {
		t.Errorf("without a signing key nor an API key: %d %v (the 401 comes first)", a.status, a.body)
	}
}

// TOKEN_RATE holds on the minting route itself, per API key, and a refused
// mint signs nothing.
func TestMintIsRateLimitedPerAPIKey(t *testing.T) {
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	h, _ := newLimitedHarness(t, api.RateLimits{TokenPerKey: ratelimit.Rate{N: 2, Per: time.Minute}},
		withTokens(api.TokenConfig{SigningKey: key}), func(c *api.Config) { c.APIKeys = []string{"mint-key", "other-key"} })
	body := map[string]any{"user_id": "kai", "stage_arn": stage}
	for i := range 2 {
		if a := h.mint(body, mintAuth...); a.status != http.StatusOK {
			t.Fatalf("mint %d: %d %v", i, a.status, a.body)
		}
	}
	a := h.mint(body, mintAuth...)
	if a.status != http.StatusTooManyRequests || a.code() != "rate_limited" || a.header.Get("Retry-After") == "" || a.body["token"] != nil {
		t.Fatalf("third mint in a minute: %d %v", a.status, a.body)
	}
	if a := h.mint(body, "Authorization", "Bearer other-key"); a.status != http.StatusOK {
		t.Fatalf("another key's first mint: %d %v", a.status, a.body)
	}
}
