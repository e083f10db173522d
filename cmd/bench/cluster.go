package main

import (
	"context"
	"fmt"
	"os"
	"runtime"
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
// measured: a projector process reads only partition 0 until projectors
// take partitions by leases.
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
	cluster, stopCluster, err := testutil.LaunchRedisCluster(dir, clusterMasters)
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
	if r.ClusterSpread, err = partitionSpread(ctx, cluster.Addrs(), prefix, clusterPartitions); err != nil {
		return err
	}
	fmt.Fprintf(e.out, "  cluster %s: partitions per master %v\n", cluster.URL, r.ClusterSpread)
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

// searchBoth is searchHeartbeats and then searchJoins of target.
func (e *env) searchBoth(ctx context.Context, target *proc, m *meter, stages []string, run string) (hb, join Search, err error) {
	if hb, _, err = e.searchHeartbeats(ctx, target, m, stages, run); err != nil {
		return hb, join, err
	}
	join, err = e.searchJoins(ctx, target, m, stages, run)
	return hb, join, err
}

// partitionSpread counts the partitions of n whose keys (tag {p<N>}) each
// master of addrs serves, in the order of addrs.
func partitionSpread(ctx context.Context, addrs []string, prefix string, n int) ([]int, error) {
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs})
	defer rdb.Close()
	owners := make([]string, n)
	for p := range n {
		c, err := rdb.MasterForKey(ctx, events.PartitionKeys(prefix, p).Stream())
		if err != nil {
			return nil, fmt.Errorf("master of partition %d: %w", p, err)
		}
		owners[p] = c.Options().Addr
	}
	return countOwners(addrs, owners), nil
}

// countOwners counts how many of owners each of addrs is.
func countOwners(addrs, owners []string) []int {
	out := make([]int, len(addrs))
	for _, o := range owners {
		for i, a := range addrs {
			if o == a {
				out[i]++
			}
		}
	}
	return out
}
