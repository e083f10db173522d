package api

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
)

// TokenConfig configures viewer tokens: JWTs in the shape of AWS IVS key-pair
// participant tokens that a join must carry when Required is set.
type TokenConfig struct {
	// Required makes every join carry a valid token (VIEWER_AUTH=token);
	// false keeps joins open and ignores any token sent (VIEWER_AUTH=off).
	Required bool
	// IVSKeys verify ES384 tokens: the P-384 public keys imported into IVS
	// (IVS_PUBLIC_KEYS), so a player's own IVS participant token joins.
	IVSKeys []*ecdsa.PublicKey
	// ViewerKeys verify EdDSA tokens signed for ViewPulse alone
	// (VIEWER_TOKEN_PUBLIC_KEYS).
	ViewerKeys []ed25519.PublicKey
	// SigningKey, when set, lets POST /v1/tokens mint EdDSA tokens
	// (VIEWER_TOKEN_SIGNING_KEY); its public half verifies joins too.
	SigningKey ed25519.PrivateKey
}

// Token lifetimes and limits.
const (
	tokenLeeway     = 30 * time.Second // clock skew allowed on exp and nbf
	maxTokenLen     = 4096             // IVS tokens are ~1 KiB; refuse parsing anything far larger
	defaultTokenTTL = 3600
	minTokenTTL     = 60
	maxTokenTTL     = 86_400
)

// Rejection reasons, the closed label set of viewpulse_token_rejected_total.
const (
	reasonRequired    = "required"      // no token sent
	reasonInvalid     = "invalid"       // malformed, bad signature, unknown key, refused alg, bad claims
	reasonExpired     = "expired"       // past exp (+ leeway)
	reasonNotYetValid = "not_yet_valid" // before nbf (- leeway)
	reasonMismatch    = "mismatch"      // the body names another stage, user or participant
)

// tokenClaims are the claims ViewPulse reads; the other claims of an IVS
// token (topic, events_url, whip_url, capabilities, attributes, version…)
// are ignored. RegisteredClaims.ID is jti.
type tokenClaims struct {
	Resource string `json:"resource"`
	UserID   string `json:"user_id,omitempty"`
	jwt.RegisteredClaims
}

// viewer is who a verified token admits.
type viewer struct {
	Stage, User, Participant string
}

// tokens verifies viewer tokens and counts rejections.
type tokens struct {
	parser   *jwt.Parser
	methods  []string
	keys     map[string]keySet // by alg
	rejected *prometheus.CounterVec
}

type keySet struct {
	all   []jwt.VerificationKey
	byKid map[string]jwt.VerificationKey
}

func (k *keySet) add(kid string, key jwt.VerificationKey) {
	if k.byKid == nil {
		k.byKid = map[string]jwt.VerificationKey{}
	}
	k.all = append(k.all, key)
	if kid != "" {
		k.byKid[kid] = key
	}
}

// newTokens builds the verifier over every configured key; reg receives the
// rejection counter (nil: none). now is the server's clock.
func newTokens(cfg TokenConfig, reg *prometheus.Registry, now func() time.Time) *tokens {
	t := &tokens{
		methods: []string{}, // never nil: a nil list would let jwt accept every alg
		keys:    map[string]keySet{},
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "viewpulse_token_rejected_total",
			Help: "Joins refused for their viewer token, by reason (required, invalid, expired, not_yet_valid, mismatch).",
		}, []string{"reason"}),
	}
	for _, r := range []string{reasonRequired, reasonInvalid, reasonExpired, reasonNotYetValid, reasonMismatch} {
		t.rejected.WithLabelValues(r) // every reason shows from the start, at 0
	}
	if reg != nil {
		reg.MustRegister(t.rejected)
	}
	es, ed := keySet{}, keySet{}
	for _, k := range cfg.IVSKeys {
		es.add(KeyID(k), k)
	}
	for _, k := range cfg.ViewerKeys {
		ed.add(KeyID(k), k)
	}
	if cfg.SigningKey != nil {
		pub := cfg.SigningKey.Public().(ed25519.PublicKey)
		ed.add(KeyID(pub), pub)
	}
	// Only the algorithms with a key are valid: a token of any other alg
	// (none, HS256 signed with a public key's bytes, RS256…) is refused
	// before any key is looked at.
	if len(es.all) > 0 {
		t.keys[jwt.SigningMethodES384.Alg()] = es
		t.methods = append(t.methods, jwt.SigningMethodES384.Alg())
	}
	if len(ed.all) > 0 {
		t.keys[jwt.SigningMethodEdDSA.Alg()] = ed
		t.methods = append(t.methods, jwt.SigningMethodEdDSA.Alg())
	}
	t.parser = jwt.NewParser(
		jwt.WithValidMethods(t.methods),
		jwt.WithExpirationRequired(),
		jwt.WithLeeway(tokenLeeway),
		jwt.WithTimeFunc(now),
	)
	return t
}

// keyFor picks the key a token names by kid, else every key of its alg.
func (t *tokens) keyFor(tok *jwt.Token) (any, error) {
	set, ok := t.keys[tok.Method.Alg()]
	if !ok {
		return nil, errors.New("no key for this alg") // unreachable: WithValidMethods refused it
	}
	if kid, _ := tok.Header["kid"].(string); kid != "" {
		if k, ok := set.byKid[kid]; ok {
			return k, nil
		}
	}
	return jwt.VerificationKeySet{Keys: set.all}, nil
}

// verify checks raw's signature, alg and times, and reads who it admits.
// Errors are *Error: 401 invalid_token or token_expired; the second result
// is the rejection reason.
func (t *tokens) verify(raw string) (viewer, string, error) {
	if len(raw) > maxTokenLen {
		return viewer{}, reasonInvalid, invalidToken(fmt.Sprintf("the token is longer than %d bytes", maxTokenLen))
	}
	var cl tokenClaims
	tok, err := t.parser.ParseWithClaims(raw, &cl, t.keyFor)
	if err != nil {
		return viewer{}, tokenErrorReason(err), tokenError(tok, &cl, t.methods, err)
	}
	v := viewer{Stage: cl.Resource, User: cl.UserID, Participant: cl.ID}
	switch {
	case v.Stage == "" || len(v.Stage) > maxARN || !isStageARN(v.Stage):
		return viewer{}, reasonInvalid, invalidToken("the token's resource claim must be an IVS stage ARN")
	case v.Participant != "" && !isParticipantID(v.Participant):
		return viewer{}, reasonInvalid, invalidToken("the token's jti claim (the participant id) must be 1 to 64 of a-z, A-Z, 0-9, _ and -")
	case v.User == "" && v.Participant == "":
		return viewer{}, reasonInvalid, invalidToken("the token names no user: it needs a user_id or a jti claim")
	case v.User == "":
		v.User = v.Participant // as in IVS: without user_id, the participant stands for the user
	case !printable(v.User, maxUser):
		return viewer{}, reasonInvalid, invalidToken("the token's user_id claim must be 1 to 128 printable characters")
	}
	return v, "", nil
}

func tokenErrorReason(err error) string {
	switch {
	case errors.Is(err, jwt.ErrTokenExpired):
		return reasonExpired
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return reasonNotYetValid
	}
	return reasonInvalid
}

// tokenError turns the library's error into the contract's answer, with a
// message that says what to fix. Signature and alg problems are checked by
// the library before the times, so an expired answer means a genuine token.
func tokenError(tok *jwt.Token, cl *tokenClaims, methods []string, err error) *Error {
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		return invalidToken("the token is not a well-formed JWT")
	case tok != nil && tok.Method != nil && !contains(methods, tok.Method.Alg()):
		return invalidToken(fmt.Sprintf("alg %s is not accepted; this server takes %s", tok.Method.Alg(), acceptedAlgs(methods)))
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		return invalidToken(fmt.Sprintf("the token's alg is not accepted; this server takes %s", acceptedAlgs(methods)))
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return invalidToken("the token's signature does not verify with any configured key")
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return invalidToken("the token has no exp claim")
	case errors.Is(err, jwt.ErrTokenExpired):
		msg := "the token has expired; get a new one"
		if cl.ExpiresAt != nil {
			msg = "the token expired at " + cl.ExpiresAt.UTC().Format(time.RFC3339) + "; get a new one"
		}
		return tokenExpired(msg)
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		msg := "the token is not valid yet"
		if cl.NotBefore != nil {
			msg += " (nbf " + cl.NotBefore.UTC().Format(time.RFC3339) + "); check the signer's clock"
		}
		return invalidToken(msg)
	}
	return invalidToken("the token's claims are invalid")
}

func acceptedAlgs(methods []string) string {
	if len(methods) == 0 {
		return "no alg (no key is configured)"
	}
	return strings.Join(methods, " or ")
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// authorizeJoin, with tokens required, verifies the join's token and puts
// the session's stage, user and participant from its claims into req. A body
// field that names another value is 403 token_mismatch; no token is 401
// token_required; a bad one 401 invalid_token or token_expired. With tokens
// off it changes nothing (a token sent is ignored).
func (s *server) authorizeJoin(c echo.Context, req *joinRequest) error {
	if !s.Tokens.Required {
		return nil
	}
	v, reason, err := s.joinViewer(c, req)
	if err != nil {
		s.tokens.rejected.WithLabelValues(reason).Inc()
		// RFC 6750: a challenge on every 401, with error= once a token was sent.
		switch reason {
		case reasonRequired:
			c.Response().Header().Set(echo.HeaderWWWAuthenticate, `Bearer realm="viewpulse"`)
		case reasonInvalid, reasonExpired, reasonNotYetValid:
			c.Response().Header().Set(echo.HeaderWWWAuthenticate, `Bearer realm="viewpulse", error="invalid_token"`)
		}
		return err
	}
	req.StageARN, req.UserID, req.ParticipantID = v.Stage, v.User, v.Participant
	return nil
}

func (s *server) joinViewer(c echo.Context, req *joinRequest) (viewer, string, error) {
	raw, err := bearerOrBody(c, req.Token)
	if err != nil {
		return viewer{}, reasonInvalid, err
	}
	if raw == "" {
		return viewer{}, reasonRequired, errTokenRequired
	}
	v, reason, err := s.tokens.verify(raw)
	if err != nil {
		return viewer{}, reason, err
	}
	for _, f := range []struct{ field, body, claim, name string }{
		{"stage_arn", req.StageARN, v.Stage, "resource"},
		{"user_id", req.UserID, v.User, "user_id"},
		{"participant_id", req.ParticipantID, v.Participant, "jti"},
	} {
		if f.body != "" && f.body != f.claim {
			return viewer{}, reasonMismatch, tokenMismatch(fmt.Sprintf("%s in the body disagrees with the token's %s claim; send only the token", f.field, f.name))
		}
	}
	return v, "", nil
}

// bearerOrBody returns the token of the body's token field or of an
// "Authorization: Bearer" header; both may be sent only when they are the
// same token.
func bearerOrBody(c echo.Context, body string) (string, error) {
	h := c.Request().Header.Get(echo.HeaderAuthorization)
	if h == "" {
		return strings.TrimSpace(body), nil
	}
	scheme, header, _ := strings.Cut(h, " ")
	header = strings.TrimSpace(header)
	if !strings.EqualFold(scheme, "Bearer") || header == "" {
		return "", invalidToken("the Authorization header must be 'Bearer <token>'")
	}
	if body = strings.TrimSpace(body); body != "" && body != header {
		return "", invalidToken("the body's token and the Authorization header hold different tokens; send one")
	}
	return header, nil
}
