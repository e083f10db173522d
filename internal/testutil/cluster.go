package testutil

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisCluster is a Redis Cluster of a test's own on loopback: masters
// redis-server processes with --cluster-enabled, joined by redis-cli
// --cluster create, no replicas.
type RedisCluster struct {
	Nodes []*RedisServer
	// URL names the cluster as REDIS_URL does: redis+cluster://h1:p1,h2:p2,…
	URL string
}

// StartRedisCluster starts a cluster of masters nodes (at least 3, as Redis
// Cluster needs) and waits until every slot is served. It is torn down when
// the test ends.
func StartRedisCluster(tb testing.TB, masters int) *RedisCluster {
	tb.Helper()
	for _, tool := range []string{"redis-server", "redis-cli"} {
		if _, err := exec.LookPath(tool); err != nil {
			unavailable(tb, "%s is not installed: %v", tool, err)
		}
	}
	c, stop, err := LaunchRedisCluster(tb.TempDir(), masters)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(stop)
	return c
}

// LaunchRedisCluster is StartRedisCluster for programs without a testing.TB
// (the bench): it starts masters nodes with their data under dir, plus extra
// redis-server arguments for every node, and waits until every slot is
// served. stop kills the nodes; the caller removes dir. It returns an error
// when redis-server or redis-cli is missing, a node does not start or the
// cluster does not form within 30 s (the nodes started are killed then).
func LaunchRedisCluster(dir string, masters int, extra ...string) (_ *RedisCluster, stop func(), err error) {
	c := &RedisCluster{}
	stop = func() {
		for _, n := range c.Nodes {
			n.kill()
		}
	}
	defer func() {
		if err != nil {
			stop()
		}
	}()
	for range masters {
		port, err := clusterPort()
		if err != nil {
			return nil, nil, err
		}
		s := &RedisServer{Dir: filepath.Join(dir, strconv.Itoa(port)), Port: port}
		if err := os.MkdirAll(s.Dir, 0o755); err != nil {
			return nil, nil, err
		}
		s.args = append([]string{"--bind", "127.0.0.1", "--port", strconv.Itoa(port), "--dir", s.Dir,
			"--save", "", "--appendonly", "no", "--logfile", "redis.log",
			"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000"}, extra...)
		s.URL = "redis://127.0.0.1:" + strconv.Itoa(port) + "/0"
		if err := s.start(); err != nil {
			return nil, nil, err
		}
		c.Nodes = append(c.Nodes, s)
	}
	addrs := c.Addrs()
	args := append([]string{"--cluster", "create"}, addrs...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.Command("redis-cli", args...).CombinedOutput(); err != nil {
		return nil, nil, fmt.Errorf("redis-cli --cluster create: %w\n%s", err, out)
	}
	c.URL = "redis+cluster://" + strings.Join(addrs, ",")
	if err := waitFor(30*time.Second, func() (bool, string) {
		for _, n := range c.Nodes {
			out, err := exec.Command("redis-cli", "-p", strconv.Itoa(n.Port), "cluster", "info").Output()
			if err != nil || !strings.Contains(string(out), "cluster_state:ok") {
				return false, fmt.Sprintf("node %d: %v %s", n.Port, err, out)
			}
		}
		return true, ""
	}); err != nil {
		return nil, nil, fmt.Errorf("cluster state: %w", err)
	}
	return c, stop, nil
}

// Addrs are the nodes' host:port addresses.
func (c *RedisCluster) Addrs() []string {
	addrs := make([]string, 0, len(c.Nodes))
	for _, n := range c.Nodes {
		addrs = append(addrs, "127.0.0.1:"+strconv.Itoa(n.Port))
	}
	return addrs
}

// Client returns a cluster client for the test, closed when it ends.
func (c *RedisCluster) Client(tb testing.TB) *redis.ClusterClient {
	tb.Helper()
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs()})
	tb.Cleanup(func() { rdb.Close() })
	if err := rdb.Ping(context.Background()).Err(); err != nil {
		tb.Fatalf("cluster ping: %v", err)
	}
	return rdb
}

// clusterPort returns a port that is free together with its cluster bus port
// (the port + 10000), so below 55536.
func clusterPort() (int, error) {
	for range 100 {
		p := 20000 + rand.IntN(25000)
		if free(p) && free(p+10000) {
			return p, nil
		}
	}
	return 0, errors.New("no free pair of ports for a cluster node")
}

func free(port int) bool {
	l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		return false
	}
	l.Close()
	return true
}

// SlotOwner returns the index in Nodes of the master serving slot, as node 0
// sees it.
func (c *RedisCluster) SlotOwner(ctx context.Context, slot int) (int, error) {
	rdb := c.node(0)
	defer rdb.Close()
	return slotOwner(ctx, rdb, c.Addrs(), slot)
}

func slotOwner(ctx context.Context, rdb *redis.Client, addrs []string, slot int) (int, error) {
	ranges, err := rdb.ClusterSlots(ctx).Result()
	if err != nil {
		return 0, fmt.Errorf("cluster slots: %w", err)
	}
	for _, r := range ranges {
		if slot >= r.Start && slot <= r.End && len(r.Nodes) > 0 {
			for i, a := range addrs {
				if r.Nodes[0].Addr == a {
					return i, nil
				}
			}
			return 0, fmt.Errorf("slot %d is served by %s, not a node of the cluster", slot, r.Nodes[0].Addr)
		}
	}
	return 0, fmt.Errorf("slot %d is not served", slot)
}

// MoveSlot moves an empty slot from the master serving it to Nodes[to], by
// Redis Cluster's own procedure (IMPORTING on the taker, MIGRATING on the
// giver, then NODE on every master; with no keys there is nothing to
// MIGRATE), and waits until every node agrees. It returns an error when the
// slot holds keys.
func (c *RedisCluster) MoveSlot(ctx context.Context, slot, to int) error {
	nodes := make([]*redis.Client, len(c.Nodes))
	for i := range c.Nodes {
		nodes[i] = c.node(i)
		defer nodes[i].Close()
	}
	addrs := c.Addrs()
	from, err := slotOwner(ctx, nodes[0], addrs, slot)
	if err != nil || from == to {
		return err
	}
	if n, err := nodes[from].ClusterCountKeysInSlot(ctx, slot).Result(); err != nil || n > 0 {
		return fmt.Errorf("move slot %d: it holds %d keys (%v)", slot, n, err)
	}
	ids := make([]string, len(nodes))
	for i, n := range nodes {
		if ids[i], err = n.ClusterMyID(ctx).Result(); err != nil {
			return fmt.Errorf("cluster myid: %w", err)
		}
	}
	type step struct {
		node int
		args []any
	}
	steps := []step{
		{to, []any{"cluster", "setslot", slot, "importing", ids[from]}},
		{from, []any{"cluster", "setslot", slot, "migrating", ids[to]}},
		{to, []any{"cluster", "setslot", slot, "node", ids[to]}},
		{from, []any{"cluster", "setslot", slot, "node", ids[to]}},
	}
	for i := range nodes {
		if i != from && i != to {
			steps = append(steps, step{i, []any{"cluster", "setslot", slot, "node", ids[to]}})
		}
	}
	for _, s := range steps {
		if err := nodes[s.node].Do(ctx, s.args...).Err(); err != nil {
			return fmt.Errorf("%v on %s: %w", s.args, addrs[s.node], err)
		}
	}
	return waitFor(30*time.Second, func() (bool, string) {
		for i, n := range nodes {
			if owner, err := slotOwner(ctx, n, addrs, slot); err != nil || owner != to {
				return false, fmt.Sprintf("node %s sees slot %d on node %d (%v)", addrs[i], slot, owner, err)
			}
		}
		return true, ""
	})
}

// node is a plain client of Nodes[i]; the caller closes it.
func (c *RedisCluster) node(i int) *redis.Client {
	return redis.NewClient(&redis.Options{Addr: c.Addrs()[i]})
}
