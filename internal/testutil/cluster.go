package testutil

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os/exec"
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
	c := &RedisCluster{}
	var addrs []string
	for range masters {
		s := &RedisServer{Dir: tb.TempDir(), Port: clusterPort(tb)}
		s.args = []string{"--bind", "127.0.0.1", "--port", strconv.Itoa(s.Port), "--dir", s.Dir,
			"--save", "", "--appendonly", "no", "--logfile", "redis.log",
			"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000"}
		s.URL = "redis://127.0.0.1:" + strconv.Itoa(s.Port) + "/0"
		s.Start(tb)
		tb.Cleanup(func() { s.Kill(tb) })
		c.Nodes = append(c.Nodes, s)
		addrs = append(addrs, "127.0.0.1:"+strconv.Itoa(s.Port))
	}
	args := append([]string{"--cluster", "create"}, addrs...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.Command("redis-cli", args...).CombinedOutput(); err != nil {
		tb.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	c.URL = "redis+cluster://" + strings.Join(addrs, ",")
	Eventually(tb, 30*time.Second, func() (bool, string) {
		for _, n := range c.Nodes {
			out, err := exec.Command("redis-cli", "-p", strconv.Itoa(n.Port), "cluster", "info").Output()
			if err != nil || !strings.Contains(string(out), "cluster_state:ok") {
				return false, fmt.Sprintf("node %d: %v %s", n.Port, err, out)
			}
		}
		return true, ""
	})
	return c
}

// Client returns a cluster client for the test, closed when it ends.
func (c *RedisCluster) Client(tb testing.TB) *redis.ClusterClient {
	tb.Helper()
	var addrs []string
	for _, n := range c.Nodes {
		addrs = append(addrs, "127.0.0.1:"+strconv.Itoa(n.Port))
	}
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs})
	tb.Cleanup(func() { rdb.Close() })
	if err := rdb.Ping(context.Background()).Err(); err != nil {
		tb.Fatalf("cluster ping: %v", err)
	}
	return rdb
}

// clusterPort returns a port that is free together with its cluster bus port
// (the port + 10000), so below 55536.
func clusterPort(tb testing.TB) int {
	tb.Helper()
	for range 100 {
		p := 20000 + rand.IntN(25000)
		if free(p) && free(p+10000) {
			return p
		}
	}
	tb.Fatal("no free pair of ports for a cluster node")
	return 0
}

func free(port int) bool {
	l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		return false
	}
	l.Close()
	return true
}
