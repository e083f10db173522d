package main

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"os"
	"runtime"
	"slices"
	"strconv"

	"github.com/redis/go-redis/v9"

	"github.com/viewpulse/viewpulse/events"
	"github.com/viewpulse/viewpulse/internal/loadgen"
	"github.com/viewpulse/viewpulse/internal/testutil"
)

// The cluster phase's layout: 3 masters, 12 partitions (a multiple of the
// masters, so that each carries 4).
const (
	clusterMasters    = 3
	clusterPartitions = 12
)

// clusterPhase measures what Redis Cluster costs one ingest process on this
// machine: its heartbeat and join rates on the machine's Redis with
// PARTITIONS=1, then on a 3-master cluster on loopback started here with
// PARTITIONS=12, same requests, same latency bound, one after the other. On
// one box the three redis-server processes share its cores with ingest and
// the load generator, and every step of a partition still runs on one node:
// the figure is what the cluster's routing costs, not what it gains (that
// needs the masters on cores, or hosts, of their own). Projection is not
// measured here: the projector phase measures one partition's projector,
// and partitions are projected independently.
func clusterPhase(ctx context.Context, e *env, r *Results) error {
	stages := loadgen.Stages(200)
	run := randomID()

	prefix := "vpbench-" + randomID()
	e.prefixes = append(e.prefixes, prefix)
	single, err := e.startIngest(ctx, "ingest-1-partition", e.o.redisURL, prefix, "PARTITIONS=1", "READ_API=false")
	if err != nil {
		return err
	}
	m := &meter{pid: single.cmd.Process.Pid, redis: []*redis.Client{e.rdb}}
	if r.ClusterSingleHeartbeat, r.ClusterSingleJoin, err = e.searchBoth(ctx, single, m, stages, run); err != nil {
		return err
	}
	e.stopProc(single)

	dir, err := os.MkdirTemp("", "vpbench-cluster-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	// The masters encode small hashes and sorted sets as the machine's Redis
	// does (its configuration file may set other limits than redis-server's
	// compiled defaults), so that both run the steps on the same encodings.
	same, err := e.rdb.ConfigGet(ctx, "*-max-listpack-*").Result()
	if err != nil {
		return fmt.Errorf("config get: %w", err)
	}
	cluster, stopCluster, err := testutil.LaunchRedisCluster(dir, clusterMasters, redisArgs(same)...)
	if err != nil {
		return err
	}
	defer stopCluster()
	nodes := make([]*redis.Client, 0, clusterMasters)
	for _, addr := range cluster.Addrs() {
		c := redis.NewClient(&redis.Options{Addr: addr})
		defer c.Close()
		nodes = append(nodes, c)
	}
	before, err := balancePartitions(ctx, cluster, prefix, clusterPartitions)
	if err != nil {
		return err
	}
	if r.ClusterSpread, err = partitionSpread(ctx, cluster.Addrs(), prefix, clusterPartitions); err != nil {
		return err
	}
	fmt.Fprintf(e.out, "  cluster %s: partitions per master %v as created, %v after moving their slots\n", cluster.URL, before, r.ClusterSpread)
	r.Notes = append(r.Notes, fmt.Sprintf("cluster: the %d partitions' slots fell %v on the masters as redis-cli created them; the bench moved slots to make it %v (docs/scaling.md)",
		clusterPartitions, before, r.ClusterSpread))
	ing, err := e.startIngest(ctx, "ingest-cluster", cluster.URL, prefix, "PARTITIONS="+strconv.Itoa(clusterPartitions), "READ_API=false")
	if err != nil {
		return err
	}
	m = &meter{pid: ing.cmd.Process.Pid, redis: nodes}
	if r.ClusterHeartbeat, r.ClusterJoin, err = e.searchBoth(ctx, ing, m, stages, run); err != nil {
		return err
	}
	e.stopProc(ing)
	r.ClusterMasters, r.ClusterPartitions = clusterMasters, clusterPartitions
	r.Notes = append(r.Notes, fmt.Sprintf("cluster: %d masters on loopback share this machine's %d cores with ingest and the load generator; "+
		"the ratio is what the cluster costs one ingest here, not what it gains on hosts of their own", clusterMasters, runtime.NumCPU()))
	return nil
}

// redisArgs turns CONFIG GET's answer into redis-server arguments, sorted by
// name.
func redisArgs(cfg map[string]string) []string {
	var out []string
	for _, k := range slices.Sorted(maps.Keys(cfg)) {
		out = append(out, "--"+k, cfg[k])
	}
	return out
}

// searchBoth is searchHeartbeats and then searchJoins of target.
func (e *env) searchBoth(ctx context.Context, target *proc, m *meter, stages []string, run string) (hb, join Search, err error) {
	if hb, _, err = e.searchHeartbeats(ctx, target, m, stages, run); err != nil {
		return hb, join, err
	}
	join, err = e.searchJoins(ctx, target, m, stages, run)
	return hb, join, err
}

// balancePartitions moves the slots of the n partitions' hash tags (still
// empty) so that each master serves n/masters of them: CRC16 puts {p0}…{p11}
// 3, 3 and 6 on the three equal slot ranges redis-cli --cluster create
// makes. It returns the spread as it found it.
func balancePartitions(ctx context.Context, c *testutil.RedisCluster, prefix string, n int) ([]int, error) {
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs()})
	defer rdb.Close()
	owners, slots := make([]int, n), make([]int, n)
	for p := range n {
		slot, err := rdb.ClusterKeySlot(ctx, events.PartitionKeys(prefix, p).Stream()).Result()
		if err != nil {
			return nil, fmt.Errorf("keyslot of partition %d: %w", p, err)
		}
		slots[p] = int(slot)
		if owners[p], err = c.SlotOwner(ctx, slots[p]); err != nil {
			return nil, err
		}
	}
	before := spread(owners, len(c.Nodes))
	for _, m := range planMoves(owners, len(c.Nodes)) {
		if err := c.MoveSlot(ctx, slots[m.partition], m.to); err != nil {
			return nil, fmt.Errorf("partition %d: %w", m.partition, err)
		}
	}
	return before, nil
}

// move is one partition's slot going to master to.
type move struct{ partition, to int }

// planMoves returns the fewest moves that leave every master with
// len(owners)/masters partitions (those that have the most keep the
// remainder's one more); owners[p] is partition p's master.
func planMoves(owners []int, masters int) []move {
	counts := spread(owners, masters)
	order := make([]int, masters)
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(counts[b], counts[a]) })
	target := make([]int, masters)
	for k, i := range order {
		target[i] = len(owners) / masters
		if k < len(owners)%masters {
			target[i]++
		}
	}
	var moves []move
	for p, o := range owners {
		if counts[o] <= target[o] {
			continue
		}
		for t := range masters {
			if counts[t] < target[t] {
				moves = append(moves, move{p, t})
				counts[o]--
				counts[t]++
				break
			}
		}
	}
	return moves
}

// spread counts the partitions of each of masters, owners[p] being p's.
func spread(owners []int, masters int) []int {
	out := make([]int, masters)
	for _, o := range owners {
		out[o]++
	}
	return out
}

// partitionSpread counts the partitions of n whose keys (tag {p<N>}) each
// master of addrs serves, as a cluster client routes them (so after a move,
// also that clients follow it).
func partitionSpread(ctx context.Context, addrs []string, prefix string, n int) ([]int, error) {
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs})
	defer rdb.Close()
	owners := make([]int, n)
	for p := range n {
		c, err := rdb.MasterForKey(ctx, events.PartitionKeys(prefix, p).Stream())
		if err != nil {
			return nil, fmt.Errorf("master of partition %d: %w", p, err)
		}
		if owners[p] = slices.Index(addrs, c.Options().Addr); owners[p] < 0 {
			return nil, fmt.Errorf("partition %d on %s, not a master of the cluster", p, c.Options().Addr)
		}
	}
	return spread(owners, len(addrs)), nil
}
