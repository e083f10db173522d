package store

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// Errors the read and configuration queries return.
var (
	ErrStageNotFound = errors.New("stage not found")
	ErrUserNotFound  = errors.New("user not found")
	ErrInvalidCursor = errors.New("invalid cursor")
)

// Unavailable reports whether err means the database could not be reached or
// is not ready (connection refused or lost, timeout, shutting down, too many
// connections, schema not migrated yet), as opposed to a bug in a query. The
// read API answers the first with 503.
func Unavailable(err error) bool {
	if err == nil {
		return false
	}
	// SafeToRetry: the statement never left this process (a connection
	// the server had closed, "conn closed"), so the server is gone.
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		pgconn.Timeout(err) || pgconn.SafeToRetry(err) {
		return true
	}
	var connErr *pgconn.ConnectError
	var netErr net.Error
	if errors.As(err, &connErr) || errors.As(err, &netErr) {
		return true
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case strings.HasPrefix(pgErr.Code, "08"), // connection exception
			pgErr.Code == "57P01", pgErr.Code == "57P02", pgErr.Code == "57P03", // shutting down, starting up
			pgErr.Code == "53300", // too many connections
			pgErr.Code == "42P01": // undefined table: migrations not applied yet
			return true
		}
	}
	return strings.Contains(err.Error(), "closed pool")
}
