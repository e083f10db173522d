package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/viewpulse/viewpulse/internal/loadgen"
)

// durabilityPhase finds the sustained join rate of ingest on a Redis of its
// own with the append-only file on, once per fsync policy, so the README's
// durability table states what `appendfsync always` costs against
// `everysec`, measured the same way as the other rates.
func durabilityPhase(ctx context.Context, e *env, r *Results) error {
	stages := loadgen.Stages(200)
	for _, mode := range []string{"everysec", "always"} {
		dir, err := os.MkdirTemp("", "vpbench-redis-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		port := freePort()
		srv := exec.Command("redis-server", "--bind", "127.0.0.1", "--port", port, "--dir", dir, "--save", "",
			"--appendonly", "yes", "--appendfsync", mode, "--logfile", filepath.Join(dir, "redis.log"))
		if err := srv.Start(); err != nil {
			return fmt.Errorf("redis-server: %w", err)
		}
		stopRedis := func() { _ = srv.Process.Kill(); _ = srv.Wait() }
		redisURL := "redis://127.0.0.1:" + port + "/0"
		if err := waitRedis(ctx, redisURL); err != nil {
			stopRedis()
			return err
		}
		hport := freePort()
		ing, err := e.start(ctx, "ingest-"+mode, filepath.Join(e.bin, "ingest"), nil, "http://127.0.0.1:"+hport,
			"HTTP_ADDR=127.0.0.1:"+hport, "REDIS_URL="+redisURL, "READ_API=false", "LOG_LEVEL=error", "LOG_FORMAT=json",
			"JOIN_RATE=off", "JOIN_RATE_PER_USER=off")
		if err != nil {
			stopRedis()
			return err
		}
		s, err := e.searchJoins(ctx, ing, &meter{pid: ing.cmd.Process.Pid}, stages, "aof")
		e.stopProc(ing)
		stopRedis()
		if err != nil {
			return err
		}
		if mode == "always" {
			r.JoinAlways = s
		} else {
			r.JoinEverysec = s
		}
	}
	return nil
}

func waitRedis(ctx context.Context, url string) error {
	opt, err := redis.ParseURL(url)
	if err != nil {
		return err
	}
	c := redis.NewClient(opt)
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if err := c.Ping(ctx).Err(); err == nil {
			return nil
		} else if time.Now().After(deadline) {
			return fmt.Errorf("redis-server at %s: %w", url, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
