package api

import (
	"crypto/ed25519"
	"fmt"
	"net/http"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/labstack/echo/v4"
)

type mintRequest struct {
	UserID   string `json:"user_id"`
	StageARN string `json:"stage_arn"`
	// Group, instead of StageARN, names a group's master: the token is
	// minted for the stage the user is assigned in it (groups.go).
	Group         string `json:"group"`
	ParticipantID string `json:"participant_id"`
	TTLSeconds    *int   `json:"ttl_seconds"`
}

type mintResponse struct {
	Token     string    `json:"token"`
	ExpiresAt time.Time `json:"expires_at"`
	StageARN  string    `json:"stage_arn"`
}

// handleMintToken: POST /v1/tokens. It signs an EdDSA viewer token with
// VIEWER_TOKEN_SIGNING_KEY for user_id on stage_arn, valid ttl_seconds
// (60–86,400, default 3,600), in the claims of an IVS participant token
// (resource, user_id, jti = participant_id when given, iat, exp) and with the
// key's kid. Errors: 400 invalid_json / invalid_<field>, 404
// token_minting_disabled without a signing key.
func (s *server) handleMintToken() echo.HandlerFunc {
	signer := s.Tokens.SigningKey
	var kid string
	if signer != nil {
		kid = KeyID(signer.Public().(ed25519.PublicKey))
	}
	return func(c echo.Context) error {
		if signer == nil {
			return errMintingDisabled
		}
		var req mintRequest
		if err := bind(c, &req, false); err != nil {
			return err
		}
		ttl := defaultTokenTTL
		if req.TTLSeconds != nil {
			ttl = *req.TTLSeconds
		}
		var ttlErr error
		if ttl < minTokenTTL || ttl > maxTokenTTL {
			ttlErr = invalid("ttl_seconds", fmt.Sprintf("must be an integer from %d to %d", minTokenTTL, maxTokenTTL))
		}
		stageErr := checkStage(req.StageARN)
		if req.Group != "" {
			stageErr = checkStage(req.Group)
			if stageErr != nil {
				stageErr = invalid("group", "must be the stage ARN of a group's master")
			}
			if req.StageARN != "" {
				stageErr = invalid("group", "send stage_arn or group, not both")
			}
		}
		if err := firstErr(checkUser(req.UserID), stageErr, checkParticipant(req.ParticipantID), ttlErr); err != nil {
			return err
		}
		if req.Group != "" {
			seat, err := s.assign(c, req.Group, req.UserID)
			if err != nil {
				return err
			}
			req.StageARN = seat.Stage
		}
		now := s.now()
		exp := jwt.NewNumericDate(now.Add(time.Duration(ttl) * time.Second))
		tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, tokenClaims{
			Resource: req.StageARN,
			UserID:   req.UserID,
			RegisteredClaims: jwt.RegisteredClaims{
				ID: req.ParticipantID, IssuedAt: jwt.NewNumericDate(now), ExpiresAt: exp,
			},
		})
		tok.Header["kid"] = kid
		signed, err := tok.SignedString(signer)
		if err != nil {
			return fmt.Errorf("sign token: %w", err) // a bug: the key was checked at start
		}
		return c.JSON(http.StatusOK, mintResponse{Token: signed, ExpiresAt: exp.UTC(), StageARN: req.StageARN})
	}
}

// requireMintKey is requireKey without its open default: with no API_KEYS
// configured nobody may mint (401), since a token admits to any stage.
func (s *server) requireMintKey(next echo.HandlerFunc) echo.HandlerFunc {
	keyed := s.requireKey(next)
	return func(c echo.Context) error {
		if len(s.keys) == 0 {
			c.Response().Header().Set(echo.HeaderWWWAuthenticate, `Bearer realm="viewpulse"`)
			return errMintNeedsKeys
		}
		return keyed(c)
	}
}
