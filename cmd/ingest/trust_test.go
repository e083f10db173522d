package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/viewpulse/viewpulse/internal/testutil"
)

// keyFiles writes a P-384 public key, an Ed25519 public key and an Ed25519
// private key (PKCS #8, as openssl genpkey writes it) as PEM files.
func keyFiles(t *testing.T) (p384Pub, edPub, edPriv string) {
	t.Helper()
	dir := t.TempDir()
	ec, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	write := func(name, typ string, der []byte, err error) string {
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	ecDER, err := x509.MarshalPKIXPublicKey(&ec.PublicKey)
	p384Pub = write("ivs.pem", "PUBLIC KEY", ecDER, err)
	edDER, err := x509.MarshalPKIXPublicKey(pub)
	edPub = write("viewer-pub.pem", "PUBLIC KEY", edDER, err)
	privDER, err := x509.MarshalPKCS8PrivateKey(priv)
	edPriv = write("viewer.pem", "PRIVATE KEY", privDER, err)
	return
}

// TestRunRefusesBadTrustConfig: every unreadable key file, key of the wrong
// type or bad value stops the start with a message naming its variable.
func TestRunRefusesBadTrustConfig(t *testing.T) {
	p384, edPub, edPriv := keyFiles(t)
	missing := filepath.Join(t.TempDir(), "nope.pem")
	cases := []struct {
		env  map[string]string
		name string // the variable the error must name
		also string // and a phrase it must hold
	}{
		{map[string]string{"VIEWER_AUTH": "maybe"}, "VIEWER_AUTH", "off or token"},
		{map[string]string{"VIEWER_AUTH": "token"}, "VIEWER_AUTH", "a key to verify"},
		{map[string]string{"IVS_PUBLIC_KEYS": p384 + "," + missing}, "IVS_PUBLIC_KEYS", "no such file"},
		{map[string]string{"IVS_PUBLIC_KEYS": edPub}, "IVS_PUBLIC_KEYS", "not a P-384"},
		{map[string]string{"IVS_PUBLIC_KEYS": edPriv}, "IVS_PUBLIC_KEYS", "not a PKIX public key"},
		{map[string]string{"VIEWER_TOKEN_PUBLIC_KEYS": p384}, "VIEWER_TOKEN_PUBLIC_KEYS", "not an Ed25519"},
		{map[string]string{"VIEWER_TOKEN_SIGNING_KEY": edPub, "API_KEYS": "k"}, "VIEWER_TOKEN_SIGNING_KEY", "not an Ed25519 private key"},
		{map[string]string{"VIEWER_TOKEN_SIGNING_KEY": edPriv}, "VIEWER_TOKEN_SIGNING_KEY", "API_KEYS"},
		{map[string]string{"CORS_ORIGINS": "https://ok.example,https://bad.example/path"}, "CORS_ORIGINS", "bad.example/path"},
		{map[string]string{"CORS_ORIGINS": "player.example.com"}, "CORS_ORIGINS", "origins such as"},
	}
	for _, tc := range cases {
		err := run(context.Background(), nil, func(k string) string { return tc.env[k] }, &testutil.Buffer{})
		if err == nil || !strings.Contains(err.Error(), tc.name) || !strings.Contains(err.Error(), tc.also) {
			t.Errorf("%v: err = %v, want it to name %s and say %q", tc.env, err, tc.name, tc.also)
		}
	}
}

// TestRunTokenFlow: ingest started as the README's example (VIEWER_AUTH=token,
// a signing key, an API key) mints a token, joins with it, refuses a join
// without one, and logs its configuration without key material.
func TestRunTokenFlow(t *testing.T) {
	p384, _, edPriv := keyFiles(t)
	var logs testutil.Buffer
	_, prefix := testutil.Redis(t)
	base := startIngest(t, prefix, map[string]string{
		"VIEWER_AUTH": "token", "VIEWER_TOKEN_SIGNING_KEY": edPriv, "IVS_PUBLIC_KEYS": p384,
		"API_KEYS": "ops-key", "READ_API": "false", "CORS_ORIGINS": "https://player.example.com",
	}, &logs)
	const stage = "arn:aws:ivs:us-east-1:123456789012:stage/abcd1234"
	var minted struct {
		Token string `json:"token"`
	}
	status := postJSON(t, base+"/v1/tokens", `{"user_id":"alice","stage_arn":"`+stage+`"}`, "ops-key", &minted)
	if status != 200 || minted.Token == "" {
		t.Fatalf("mint = %d %+v", status, minted)
	}
	var joined struct {
		SessionID string `json:"session_id"`
	}
	if status := postJSON(t, base+"/v1/viewers/join", `{"token":"`+minted.Token+`"}`, "", &joined); status != 200 || joined.SessionID == "" {
		t.Fatalf("join with the token = %d", status)
	}
	if status := postJSON(t, base+"/v1/viewers/join", `{}`, minted.Token, nil); status != 200 {
		t.Fatalf("join with the bearer token = %d", status)
	}
	if status := postJSON(t, base+"/v1/viewers/join", `{"stage_arn":"`+stage+`","user_id":"alice"}`, "", nil); status != 401 {
		t.Fatalf("join without a token = %d", status)
	}

	key, _ := os.ReadFile(edPriv)
	pemBody := strings.Split(string(key), "\n")[1]
	out := logs.String()
	for _, want := range []string{`"viewer_auth":"token"`, `"viewer_token_signing_key":"` + edPriv + `"`, `"ivs_public_keys":"` + p384 + `"`,
		`"cors_origins":"https://player.example.com"`, `"signing_kid":"`} {
		if !strings.Contains(out, want) {
			t.Errorf("start-up logs lack %s:\n%s", want, out)
		}
	}
	if strings.Contains(out, pemBody) || strings.Contains(out, "ops-key") {
		t.Fatalf("key material or the API key in the logs:\n%s", out)
	}
}

// TestRunWarnsTokensOff: the default VIEWER_AUTH=off warns at start.
func TestRunWarnsTokensOff(t *testing.T) {
	var logs testutil.Buffer
	_, prefix := testutil.Redis(t)
	startIngest(t, prefix, map[string]string{"READ_API": "false"}, &logs)
	if out := logs.String(); !strings.Contains(out, `"level":"WARN","msg":"VIEWER_AUTH=off`) || !strings.Contains(out, `"viewer_auth":"off"`) {
		t.Fatalf("no warning for VIEWER_AUTH=off:\n%s", out)
	}
}

// postJSON posts body with an optional bearer, decodes the answer into out
// (when not nil) and returns the status.
func postJSON(t *testing.T, url, body, bearer string, out any) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			t.Fatal(err)
		}
	}
	return resp.StatusCode
}
