package webhooks_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/viewpulse/viewpulse/webhooks"
)

// TestSignMatchesOpenSSL: Sign is HMAC-SHA256 of "<t>.<body>" in hex, as an
// independent implementation computes it.
func TestSignMatchesOpenSSL(t *testing.T) {
	t.Parallel()
	body := []byte(`{"id":"evt_01","type":"stage.live","created_at":"2026-12-02T07:00:00Z","data":{"viewers":1}}`)
	at := time.Unix(1796281200, 0)
	got := webhooks.Sign(secret, at, body)
	want := fmt.Sprintf("t=1796281200,v1=%s", openssl(t, secret, "1796281200."+string(body)))
	if got != want {
		t.Fatalf("Sign = %s\n want %s", got, want)
	}
}

func TestVerify(t *testing.T) {
	t.Parallel()
	body := []byte(`{"id":"evt_01"}`)
	now := time.Now()
	good := webhooks.Sign(secret, now, body)
	other := webhooks.Sign("another-secret-of-16", now, body)
	_, otherV1, _ := cut(other)
	_, goodV1, _ := cut(good)
	ts := fmt.Sprint(now.Unix())
	for _, tc := range []struct {
		name, header string
		body         []byte
		want         error
	}{
		{"good", good, body, nil},
		{"rotation: the second v1 matches", "t=" + ts + ",v1=" + otherV1 + ",v1=" + goodV1, body, nil},
		{"unknown schemes ignored", "t=" + ts + ",v0=abc,v1=" + goodV1, body, nil},
		{"body changed", good, []byte(`{"id":"evt_02"}`), webhooks.ErrSignatureMismatch},
		{"other secret", other, body, webhooks.ErrSignatureMismatch},
		{"timestamp changed", fmt.Sprintf("t=%d,v1=%s", now.Unix()+1, goodV1), body, webhooks.ErrSignatureMismatch},
		{"too old", webhooks.Sign(secret, now.Add(-6*time.Minute), body), body, webhooks.ErrSignatureExpired},
		{"too far ahead", webhooks.Sign(secret, now.Add(6*time.Minute), body), body, webhooks.ErrSignatureExpired},
		{"empty", "", body, webhooks.ErrNoSignature},
		{"no v1", "t=" + ts, body, webhooks.ErrNoSignature},
		{"no t", "v1=" + goodV1, body, webhooks.ErrNoSignature},
		{"two t", "t=" + ts + ",t=" + ts + ",v1=" + goodV1, body, webhooks.ErrNoSignature},
		{"garbage", "sha256=" + goodV1, body, webhooks.ErrNoSignature},
	} {
		if err := webhooks.Verify(secret, tc.header, tc.body, 0); !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
			t.Errorf("%s: Verify = %v, want %v", tc.name, err, tc.want)
		}
	}
	// a wider tolerance accepts what the default refuses
	old := webhooks.Sign(secret, now.Add(-6*time.Minute), body)
	if err := webhooks.Verify(secret, old, body, 10*time.Minute); err != nil {
		t.Errorf("tolerance 10m: %v", err)
	}
}

// cut splits "t=…,v1=…" into its two values.
func cut(header string) (ts, v1 string, ok bool) {
	var n int
	_, err := fmt.Sscanf(header, "t=%d,v1=%s", &n, &v1)
	return fmt.Sprint(n), v1, err == nil
}

func TestParseURLs(t *testing.T) {
	t.Parallel()
	got, err := webhooks.ParseURLs(" https://a.example/hook , http://127.0.0.1:9000/x?k=v,https://a.example/hook")
	if err != nil || fmt.Sprint(got) != "[https://a.example/hook http://127.0.0.1:9000/x?k=v]" {
		t.Fatalf("ParseURLs = %q, %v", got, err)
	}
	if got, err := webhooks.ParseURLs(""); err != nil || got != nil {
		t.Fatalf("empty: %q, %v", got, err)
	}
	for _, bad := range []string{"ftp://a.example/x", "a.example/hook", "https://", "https://a.example/x,,https://b.example/y", "https://a.example/x#frag", "http://[::1"} {
		if _, err := webhooks.ParseURLs(bad); !errors.Is(err, webhooks.ErrInvalidURL) {
			t.Errorf("ParseURLs(%q) = %v, want ErrInvalidURL", bad, err)
		}
	}
}
