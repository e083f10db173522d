package api

import (
	_ "embed"
	"net/http"

	"github.com/labstack/echo/v4"
)

// openAPI is the hand-written OpenAPI 3.0 description of every route.
//
//go:embed openapi.json
var openAPI []byte

// handleOpenAPI: GET /openapi.json.
func handleOpenAPI(c echo.Context) error {
	return c.Blob(http.StatusOK, echo.MIMEApplicationJSON, openAPI)
}
