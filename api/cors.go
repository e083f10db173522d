package api

import (
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
)

// corsMaxAge is how long a browser may cache a preflight answer, in seconds:
// Chromium's cap, so the value sent is the value used.
const corsMaxAge = 7200

// corsPolicies returns the two CORS policies, to run on every request (so
// that the router's automatic OPTIONS answer gets them too):
//
//   - the player routes (/v1/viewers/…) and /sdk/…: every origin of origins,
//     "*" included; nil origins means "*";
//   - every other route: only the origins listed explicitly ("*" does not
//     open the read and configuration routes to every web page).
//
// A preflight is answered 204 with the allowed methods and headers
// (Content-Type, Authorization) and Access-Control-Max-Age; an origin not
// allowed gets no Access-Control-Allow-Origin. Vary: Origin is always set
// where a policy applies.
func corsPolicies(origins []string) []echo.MiddlewareFunc {
	if origins == nil {
		origins = []string{"*"}
	}
	var listed []string
	for _, o := range origins {
		if o != "*" {
			listed = append(listed, o)
		}
	}
	headers := []string{echo.HeaderContentType, echo.HeaderAuthorization}
	expose := []string{"Retry-After"} // players back off on 429 and 503
	policies := []echo.MiddlewareFunc{}
	if len(origins) > 0 {
		policies = append(policies, middleware.CORSWithConfig(middleware.CORSConfig{
			Skipper:       func(c echo.Context) bool { return !playerPath(c.Request().URL.Path) },
			AllowOrigins:  origins,
			AllowMethods:  []string{http.MethodGet, http.MethodHead, http.MethodPost},
			AllowHeaders:  headers,
			ExposeHeaders: expose,
			MaxAge:        corsMaxAge,
		}))
	}
	if len(listed) > 0 {
		policies = append(policies, middleware.CORSWithConfig(middleware.CORSConfig{
			Skipper:      func(c echo.Context) bool { return playerPath(c.Request().URL.Path) },
			AllowOrigins: listed,
			// No AllowMethods: the preflight answers the methods the router
			// has for the path (its Allow header).
			AllowHeaders:  headers,
			ExposeHeaders: expose,
			MaxAge:        corsMaxAge,
		}))
	}
	return policies
}

// playerPath reports whether path is served to players' browsers: the player
// writes and the SDK files.
func playerPath(path string) bool {
	return strings.HasPrefix(path, "/v1/viewers/") || strings.HasPrefix(path, "/sdk/")
}
