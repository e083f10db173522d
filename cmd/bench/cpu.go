package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// meter samples the CPU time used so far by the process answering a
// search's requests (from /proc) and by the Redis servers behind it (INFO
// cpu), so that a step's cost per request is the difference over the step
// divided by its requests. A shared Redis's figure includes whatever else
// runs against it meanwhile (other tests): an upper bound.
type meter struct {
	pid   int
	redis []*redis.Client // none for the ceiling
}

// userHZ is the unit of /proc/<pid>/stat's times: USER_HZ, 100 on every
// Linux the bench runs on.
const userHZ = 100

// cpuSample is CPU seconds used so far: by the process, by the Redis
// servers (INFO cpu, user + system), and inside their commands (INFO
// commandstats, the sum of usec: the rest of the servers' CPU is reading,
// parsing and answering the connections).
type cpuSample struct{ proc, redis, redisCmds float64 }

// sample reads the meter's counters; a nil meter measures nothing.
func (m *meter) sample(ctx context.Context) (cpuSample, error) {
	var c cpuSample
	if m == nil {
		return c, nil
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(m.pid) + "/stat")
	if err != nil {
		return c, fmt.Errorf("cpu of pid %d: %w", m.pid, err)
	}
	if c.proc, err = procCPU(b); err != nil {
		return c, fmt.Errorf("cpu of pid %d: %w", m.pid, err)
	}
	for _, rdb := range m.redis {
		info, err := rdb.Info(ctx, "cpu", "commandstats").Result()
		if err != nil {
			return c, fmt.Errorf("redis info: %w", err)
		}
		cpu, cmds, err := redisCPU(info)
		if err != nil {
			return c, err
		}
		c.redis += cpu
		c.redisCmds += cmds
	}
	return c, nil
}

// procCPU reads utime + stime (fields 14 and 15) of a /proc/<pid>/stat line
// in seconds. The command name (field 2) is in parentheses and may hold
// spaces, so fields are counted from the last ')'.
func procCPU(stat []byte) (float64, error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("malformed stat %q", stat)
	}
	f := strings.Fields(string(stat[i+1:])) // f[0] is field 3, the state
	if len(f) < 13 {
		return 0, fmt.Errorf("malformed stat %q", stat)
	}
	var ticks float64
	for _, s := range f[11:13] {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("malformed stat %q", stat)
		}
		ticks += float64(n)
	}
	return ticks / userHZ, nil
}

// redisCPU reads used_cpu_sys + used_cpu_user (seconds, all of the server's
// threads) and the sum of the commands' usec (in seconds) of an INFO cpu
// commandstats answer.
func redisCPU(info string) (cpu, cmds float64, err error) {
	found := 0
	for _, line := range strings.Split(info, "\r\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		switch {
		case k == "used_cpu_sys" || k == "used_cpu_user":
			n, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return 0, 0, fmt.Errorf("INFO cpu %s=%q: %w", k, v, err)
			}
			cpu += n
			found++
		case strings.HasPrefix(k, "cmdstat_"):
			for _, f := range strings.Split(v, ",") {
				if us, ok := strings.CutPrefix(f, "usec="); ok {
					n, err := strconv.ParseInt(us, 10, 64)
					if err != nil {
						return 0, 0, fmt.Errorf("INFO commandstats %s: %w", line, err)
					}
					cmds += float64(n) / 1e6
				}
			}
		}
	}
	if found != 2 {
		return 0, 0, fmt.Errorf("INFO cpu has no used_cpu_sys and used_cpu_user")
	}
	return cpu, cmds, nil
}
