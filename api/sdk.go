package api

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"
)

// sdkCacheControl lets browsers and CDNs keep an SDK file for a year without
// asking again: a /sdk/v1/ URL only ever changes compatibly, and a breaking
// change gets a new path (/sdk/v2/).
const sdkCacheControl = "public, max-age=31536000, immutable"

// handleSDKFile: GET /sdk/v1/viewpulse.js and .mjs, one embedded file of the
// player SDK (package sdk). The ETag is a hash of its content, so a
// revalidation after a deploy that changed nothing answers 304.
// http.ServeContent answers If-None-Match and Range and sets the type from
// name's extension (text/javascript).
func handleSDKFile(name string, body []byte) echo.HandlerFunc {
	sum := sha256.Sum256(body)
	etag := `"` + base64.RawURLEncoding.EncodeToString(sum[:12]) + `"`
	return func(c echo.Context) error {
		h := c.Response().Header()
		h.Set("Cache-Control", sdkCacheControl)
		h.Set("ETag", etag)
		h.Set("X-Content-Type-Options", "nosniff")
		http.ServeContent(c.Response(), c.Request(), name, time.Time{}, bytes.NewReader(body))
		return nil
	}
}
