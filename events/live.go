package events

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Active returns stage's live count and last activity, and whether it has
// live state at all: an event the sweeper has not forgotten yet.
func (s *Stream) Active(ctx context.Context, stage string) (StageCount, bool, error) {
	var score *redis.FloatCmd
	var count *redis.IntCmd
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		k := s.KeysOf(stage)
		score = p.ZScore(ctx, k.Stages(), stage)
		count = p.ZCount(ctx, k.Present(stage), s.presentMin(), "+inf")
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return StageCount{}, false, fmt.Errorf("stage %s: %w", stage, err)
	}
	if errors.Is(score.Err(), redis.Nil) {
		return StageCount{Stage: stage, Viewers: count.Val()}, false, nil
	}
	return StageCount{Stage: stage, Viewers: count.Val(), LastActivity: time.UnixMilli(int64(score.Val())).UTC()}, true, nil
}

// Capacities returns every stage capacity set with SetCapacity, read from
// every partition in one pipeline.
func (s *Stream) Capacities(ctx context.Context) (map[string]int, error) {
	cmds := make([]*redis.MapStringStringCmd, len(s.parts))
	if _, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, k := range s.parts {
			cmds[i] = p.HGetAll(ctx, k.Capacity())
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("capacities: %w", err)
	}
	out := map[string]int{}
	for _, c := range cmds {
		for stage, v := range c.Val() {
			n, err := strconv.Atoi(v)
			if err != nil {
				return nil, fmt.Errorf("capacity of %s: %q is not a number", stage, v)
			}
			out[stage] = n
		}
	}
	return out, nil
}
