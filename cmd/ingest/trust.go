package main

import (
	"crypto/ed25519"
	"log/slog"
	"net/url"
	"strings"

	"github.com/viewpulse/viewpulse/api"
	"github.com/viewpulse/viewpulse/internal/config"
)

// readTrust reads VIEWER_AUTH, IVS_PUBLIC_KEYS, VIEWER_TOKEN_PUBLIC_KEYS,
// VIEWER_TOKEN_SIGNING_KEY and CORS_ORIGINS. Key files are read and parsed
// here, so that an unreadable file or a key of the wrong type stops the start
// with a message naming its variable; key material is never logged.
func readTrust(env *config.Env, apiKeys []string) (api.TokenConfig, []string) {
	var t api.TokenConfig
	switch mode := env.String("VIEWER_AUTH", "off"); mode {
	case "off":
	case "token":
		t.Required = true
	default:
		env.Fail("VIEWER_AUTH", "off or token", mode)
	}
	const ivsVar, viewerVar, signVar = "IVS_PUBLIC_KEYS", "VIEWER_TOKEN_PUBLIC_KEYS", "VIEWER_TOKEN_SIGNING_KEY"
	named := false // some key variable is set (a bad file is reported on its own)
	if raw := env.String(ivsVar, ""); raw != "" {
		named = true
		keys, err := api.ReadIVSPublicKeys(splitList(raw))
		if err != nil {
			env.Fail(ivsVar, "comma-separated PEM files of P-384 public keys ("+err.Error()+")", raw)
		}
		t.IVSKeys = keys
	}
	if raw := env.String(viewerVar, ""); raw != "" {
		named = true
		keys, err := api.ReadViewerPublicKeys(splitList(raw))
		if err != nil {
			env.Fail(viewerVar, "comma-separated PEM files of Ed25519 public keys ("+err.Error()+")", raw)
		}
		t.ViewerKeys = keys
	}
	if path := strings.TrimSpace(env.String(signVar, "")); path != "" {
		named = true
		key, err := api.ReadSigningKey(path)
		switch {
		case err != nil:
			env.Fail(signVar, "a PEM file of an Ed25519 private key ("+err.Error()+")", path)
		case len(apiKeys) == 0:
			env.Fail(signVar, "API_KEYS set as well: POST /v1/tokens mints tokens for any stage and needs an API key", path)
		}
		t.SigningKey = key
	}
	if t.Required && !named {
		env.Fail("VIEWER_AUTH", "a key to verify tokens with: set IVS_PUBLIC_KEYS, VIEWER_TOKEN_PUBLIC_KEYS or VIEWER_TOKEN_SIGNING_KEY", "token")
	}
	return t, readOrigins(env)
}

// readOrigins reads CORS_ORIGINS: "*" or origins as browsers send them
// (scheme://host[:port], no path), comma-separated; default "*".
func readOrigins(env *config.Env) []string {
	raw := env.String("CORS_ORIGINS", "*")
	var out []string
	for _, o := range splitList(raw) {
		if o == "*" {
			out = append(out, o)
			continue
		}
		u, err := url.Parse(o)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil ||
			(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || strings.Contains(u.Host, "*") {
			env.Fail("CORS_ORIGINS", "* or comma-separated origins such as https://player.example.com", o)
			continue
		}
		out = append(out, strings.ToLower(u.Scheme+"://"+u.Host))
	}
	if out == nil {
		out = []string{} // an empty list: no CORS at all
	}
	return out
}

// logTrust says how joins are authenticated: a warning with tokens off, else
// the kid of every key, so operators can match a token's kid header.
func logTrust(log *slog.Logger, t api.TokenConfig) {
	kids := []string{}
	for _, k := range t.IVSKeys {
		kids = append(kids, "ES384:"+api.KeyID(k))
	}
	for _, k := range t.ViewerKeys {
		kids = append(kids, "EdDSA:"+api.KeyID(k))
	}
	var signing string
	if t.SigningKey != nil {
		signing = api.KeyID(t.SigningKey.Public().(ed25519.PublicKey))
	}
	if !t.Required {
		log.Warn("VIEWER_AUTH=off: joins carry no token, so any client can join any stage as any user; set VIEWER_AUTH=token")
	}
	if t.Required || len(kids) > 0 || signing != "" {
		log.Info("viewer tokens", "required", t.Required, "verify_kids", kids, "signing_kid", signing)
	}
}
