// Package store is ViewPulse's PostgreSQL side: the history the projector
// writes and the read API and snapshotter query. It knows nothing of HTTP or
// Redis.
package store

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
)

//go:embed migrations/*.sql
var migrations embed.FS

// DB is a pool of connections to one ViewPulse database (or schema).
type DB struct {
	Pool *pgxpool.Pool
}

// Options tune a pool; zero values take the defaults.
type Options struct {
	MaxConns int32 // default 20, the seed's pool size
	// Migrate applies the embedded migrations at open (every process that
	// writes does; a read replica's pool does not).
	Migrate bool
}

// Open connects to url, checks that the database answers and, with
// opts.Migrate, applies the embedded migrations under an advisory lock so
// that processes starting together are safe.
func Open(ctx context.Context, url string, opts Options) (*DB, error) {
	db, err := Connect(url, opts)
	if err != nil {
		return nil, err
	}
	pingCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := db.Pool.Ping(pingCtx); err != nil {
		db.Close()
		return nil, fmt.Errorf("ping database: %w", err)
	}
	if opts.Migrate {
		if err := db.Migrate(ctx); err != nil {
			db.Close()
			return nil, err
		}
	}
	return db, nil
}

// Connect returns a pool for url without contacting the database: connections
// are made on first use, so a process can start (and serve what does not need
// PostgreSQL) while the database is down. opts.Migrate is ignored; call
// Migrate. Errors: an invalid url.
func Connect(url string, opts Options) (*DB, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("parse database url: %w", err)
	}
	cfg.MaxConns = 20
	if opts.MaxConns > 0 {
		cfg.MaxConns = opts.MaxConns
	}
	cfg.ConnConfig.ConnectTimeout = 2 * time.Second
	// No statement runs unbounded: a hung server fails the call instead of
	// stalling a process (a URL's own statement_timeout wins).
	if _, ok := cfg.ConnConfig.RuntimeParams["statement_timeout"]; !ok {
		cfg.ConnConfig.RuntimeParams["statement_timeout"] = "60s"
	}
	cfg.MaxConnIdleTime = 30 * time.Second
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		return nil, fmt.Errorf("open pool: %w", err)
	}
	return &DB{Pool: pool}, nil
}

// Close closes the pool.
func (db *DB) Close() { db.Pool.Close() }

// Ping reports whether the database answers.
func (db *DB) Ping(ctx context.Context) error { return db.Pool.Ping(ctx) }

// Migrate applies every embedded migration not yet applied. The advisory lock
// is keyed by the current schema, so deployments (and tests) in different
// schemas of one database do not wait on each other.
func (db *DB) Migrate(ctx context.Context) error {
	var schema string
	if err := db.Pool.QueryRow(ctx, "SELECT current_schema()").Scan(&schema); err != nil {
		return fmt.Errorf("migrate: current schema: %w", err)
	}
	h := fnv.New64a()
	h.Write([]byte("viewpulse-migrate:" + schema))
	locker, err := lock.NewPostgresSessionLocker(lock.WithLockID(int64(h.Sum64()>>1)), lock.WithLockTimeout(1, 300))
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	sqlDB := stdlib.OpenDBFromPool(db.Pool)
	defer sqlDB.Close()
	p, err := goose.NewProvider(goose.DialectPostgres, sqlDB, migrationFS(), goose.WithSessionLocker(locker))
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if _, err := p.Up(ctx); err != nil && !errors.Is(err, goose.ErrNoNextVersion) {
		return fmt.Errorf("migrate: %w", err)
	}
	return nil
}

// migrationFS is migrations/ as the root, as goose expects.
func migrationFS() fs.FS {
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		panic(err) // the embed pattern above guarantees the directory
	}
	return sub
}
