package store_test

import (
	"context"
	"sync"
	"testing"

	"github.com/viewpulse/viewpulse/internal/testutil"
	"github.com/viewpulse/viewpulse/store"
)

// NewDB opens a migrated database in a fresh schema.
func NewDB(t *testing.T) *store.DB {
	t.Helper()
	db, err := store.Open(context.Background(), testutil.Schema(t), store.Options{Migrate: true, MaxConns: 8})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	return db
}

func TestConcurrentMigrationsAreSafe(t *testing.T) {
	url := testutil.Schema(t)
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			db, err := store.Open(context.Background(), url, store.Options{Migrate: true, MaxConns: 2})
			if err == nil {
				db.Close()
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	db, err := store.Open(context.Background(), url, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.Pool.QueryRow(context.Background(),
		"SELECT count(*) FROM information_schema.tables WHERE table_schema = current_schema() AND table_name IN ('stages','users','viewer_sessions','viewer_stats_snapshots')").Scan(&n); err != nil || n != 4 {
		t.Fatalf("tables = %d, %v", n, err)
	}
}
