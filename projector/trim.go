package projector

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// trimScript removes, in one atomic step, the entries of KEYS[1] below the
// oldest entry some consumer group has not acknowledged and below ARGV[1]
// (the retention cutoff, an entry ID). A group's oldest unacknowledged entry
// is its lowest pending ID, or, with nothing pending, the entry after its
// last-delivered-id (every entry up to that one is acknowledged). A stream
// without groups is left alone: nobody has acknowledged anything. Returns
// {entries removed, the MINID used}.
var trimScript = redis.NewScript(`
local stream, minid = KEYS[1], ARGV[1]
if redis.call('EXISTS', stream) == 0 then return {0, ''} end
local function less(a, b)
  local am, as = string.match(a, '^(%d+)-(%d+)$')
  local bm, bs = string.match(b, '^(%d+)-(%d+)$')
  am, as, bm, bs = tonumber(am), tonumber(as), tonumber(bm), tonumber(bs)
  if am ~= bm then return am < bm end
  return as < bs
end
local groups = redis.call('XINFO', 'GROUPS', stream)
if #groups == 0 then return {0, ''} end
for _, g in ipairs(groups) do
  local info = {}
  for i = 1, #g, 2 do info[g[i]] = g[i + 1] end
  local keep = info['last-delivered-id']
  local pending = redis.call('XPENDING', stream, info['name'])
  if pending[1] > 0 then keep = pending[2] end
  if less(keep, minid) then minid = keep end
end
return {redis.call('XTRIM', stream, 'MINID', minid), minid}
`)

// Trim removes stream entries that every consumer group has acknowledged and
// that are older than Config.Retention (by entry ID time on the Now clock),
// and returns how many it removed. It never removes an entry some group has
// not acknowledged. With Retention zero it does nothing.
func (p *Projector) Trim(ctx context.Context) (int64, error) {
	if p.cfg.Retention <= 0 {
		return 0, nil
	}
	n, err := TrimStream(ctx, p.rdb, p.keys.Stream(), p.cfg.Now().Add(-p.cfg.Retention))
	if err != nil {
		return 0, err
	}
	p.m.Trimmed.Add(float64(n))
	return n, nil
}

// TrimStream removes the entries of stream older than keepAfter that every
// consumer group has acknowledged, atomically, and returns how many.
func TrimStream(ctx context.Context, rdb redis.Scripter, stream string, keepAfter time.Time) (int64, error) {
	cutoff := strconv.FormatInt(max(keepAfter.UnixMilli(), 0), 10) + "-0"
	res, err := trimScript.Run(ctx, rdb, []string{stream}, cutoff).Slice()
	if err != nil {
		return 0, fmt.Errorf("trim %s: %w", stream, err)
	}
	n, _ := res[0].(int64)
	return n, nil
}
