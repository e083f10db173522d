package api

import (
	"crypto/sha256"
	"crypto/subtle"
	"strings"

	"github.com/labstack/echo/v4"
)

// requireKey lets a request through when API_KEYS is empty or when it carries
// "Authorization: Bearer <key>" with one of the keys; else 401 unauthorized.
// Keys are compared as SHA-256 digests in constant time, every key every
// time, so neither a key's content nor its length leaks through timing.
func (s *server) requireKey(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if len(s.keys) == 0 {
			return next(c)
		}
		scheme, token, _ := strings.Cut(c.Request().Header.Get(echo.HeaderAuthorization), " ")
		sum := sha256.Sum256([]byte(strings.TrimSpace(token)))
		match := 0
		for _, k := range s.keys {
			match |= subtle.ConstantTimeCompare(sum[:], k[:])
		}
		if match == 1 && strings.EqualFold(scheme, "Bearer") {
			return next(c)
		}
		c.Response().Header().Set(echo.HeaderWWWAuthenticate, `Bearer realm="viewpulse"`)
		return errUnauthorized
	}
}
