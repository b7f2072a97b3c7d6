package redisstore

import "github.com/redis/go-redis/v9"

// Every script takes KEYS = {meta hash, frame list, owner lease, record}
// of one session. The meta hash holds the log's counters:
//
//	n  the seq the next frame gets      f  the oldest seq held (n when empty)
//	dl the highest seq delivered        ak the highest seq acknowledged
//	aat when ak last grew (ms)          b  bytes held
//	pb bytes of frames not delivered    tr delivered frames trimmed unacknowledged
//	e  the end reason (absent: open)    dr 1 once the last frame was read
//	pn keep-alives seen                 p  the latest keep-alive
//	seen the last client activity (ms)
//
// and the bridge's metadata that changes (cs, st, k<kind>; the rest is
// the record, JSON, see record). The frame list
// holds the frames f … n-1 in order (the frame of seq s at index s-f): a
// List, not a Stream, because a Stream preallocates a 4 KB node per key,
// which an idle session holding one frame would pay for.

// luaLib is prepended to each script.
const luaLib = `
local function nowms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function refresh(ttl)
  redis.call('PEXPIRE', KEYS[1], ttl)
  redis.call('PEXPIRE', KEYS[2], ttl)
  redis.call('PEXPIRE', KEYS[4], ttl)
end
-- drop removes the frames f … upto (f the oldest held); it returns the
-- bytes and the undelivered bytes freed, and how many frames went.
local function drop(upto, dl, f)
  local k = upto - f + 1
  if k <= 0 then return 0, 0, 0 end
  local freed, pfreed = 0, 0
  local es = redis.call('LRANGE', KEYS[2], 0, k - 1)
  for i, d in ipairs(es) do
    local len = string.len(d)
    freed = freed + len
    if f + i - 1 > dl then pfreed = pfreed + len end
  end
  redis.call('LTRIM', KEYS[2], k, -1)
  return freed, pfreed, #es
end
`

// Events published on a session's channel (readers learn the log's state
// from them without asking Redis): "a <n>" a frame was appended (n the
// seq the next one gets; "a <n> e": the final frame, the log ended), "p
// <pn>" a keep-alive (pn of them so far), "e" ended, "d" a reader took
// frames, "x" the session was deleted, "k<kind> <node> <num>" a
// downstream attached.

// appendScript: ARGV = data, max pending frames, max pending bytes, ttl
// ms, node, final (0/1), event channel, end reason. It answers {seq},
// {0} when the pending limit holds it back, {-1, reason} once ended, {-2}
// when the session is gone, {-3} when node is not the owner.
var appendScript = redis.NewScript(luaLib + `
local st = redis.call('HMGET', KEYS[1], 'n', 'dl', 'pb', 'e', 'b')
if not st[1] then return {-2} end
if st[4] then return {-1, st[4]} end
if redis.call('GET', KEYS[3]) ~= ARGV[5] then return {-3} end
local n, dl, pb, b = tonumber(st[1]), tonumber(st[2]), tonumber(st[3]), tonumber(st[5])
local len = string.len(ARGV[1])
local pending = n - 1 - dl
if ARGV[6] == '0' and pending > 0 and (pending >= tonumber(ARGV[2]) or pb + len > tonumber(ARGV[3])) then
  return {0}
end
redis.call('RPUSH', KEYS[2], ARGV[1])
redis.call('HSET', KEYS[1], 'n', n + 1, 'pb', pb + len, 'b', b + len)
if ARGV[6] == '1' then redis.call('HSET', KEYS[1], 'e', ARGV[8]) end
refresh(tonumber(ARGV[4]))
if ARGV[6] == '1' then
  redis.call('PUBLISH', ARGV[7], 'a ' .. (n + 1) .. ' e')
else
  redis.call('PUBLISH', ARGV[7], 'a ' .. (n + 1))
end
return {n}
`)

// readScript: ARGV = ack, after, pingSeen, max frames, max bytes, window
// bytes, ttl ms, event channel. It answers {status, from, next, pingN,
// hasPing, ping, more, endReason, seq1, data1, seq2, data2, …}; status 0
// (frames, maybe none), 1 (ended and nothing after from), -2 (gone), -4
// (bad cursor; from is the oldest seq held), -5 (trimmed; likewise).
var readScript = redis.NewScript(luaLib + `
local st = redis.call('HMGET', KEYS[1], 'n', 'f', 'ak', 'dl', 'pb', 'b', 'e', 'pn', 'p', 'tr', 'dr')
if not st[1] then return {-2} end
local n, f, ak, dl, pb, b = tonumber(st[1]), tonumber(st[2]), tonumber(st[3]), tonumber(st[4]), tonumber(st[5]), tonumber(st[6])
local tr, pn = tonumber(st[10]), tonumber(st[8])
local after = tonumber(ARGV[2])
if after >= n then return {-4, f} end
if after + 1 < f then
  if f - 1 > ak then return {-5, f} end
  after = f - 1
end
local upto = math.min(tonumber(ARGV[1]), after)
if upto > ak then
  ak = upto
  redis.call('HSET', KEYS[1], 'ak', ak, 'aat', nowms())
  if upto >= f then
    local freed, pfreed = drop(upto, dl, f)
    b, pb, f = b - freed, pb - pfreed, math.min(upto + 1, n)
  end
end
local es = redis.call('LRANGE', KEYS[2], after + 1 - f, after - f + tonumber(ARGV[4]))
local out, size, last = {}, 0, after
local maxb = tonumber(ARGV[5])
for i, d in ipairs(es) do
  if i > 1 and size + string.len(d) > maxb then break end
  size = size + string.len(d)
  last = after + i
  out[#out + 1] = last
  out[#out + 1] = d
end
local changed = false
if last > dl then
  for i = 1, #out, 2 do
    if out[i] > dl then pb = pb - string.len(out[i + 1]) end
  end
  dl = last
  local window, keep = b - pb, tonumber(ARGV[6])
  if window > keep then
    -- Oldest first, a few at a time: only what goes is read.
    local cut, k, idx = 0, 0, 0
    while window > keep and idx <= dl - f do
      local old = redis.call('LRANGE', KEYS[2], idx, math.min(idx + 31, dl - f))
      if #old == 0 then break end
      for i, d in ipairs(old) do
        if window <= keep then break end
        window = window - string.len(d)
        cut = f + idx + i - 1
        k = k + 1
      end
      idx = idx + #old
    end
    if k > 0 then
      local freed = drop(cut, dl, f)
      b, tr, f = b - freed, tr + k, math.min(cut + 1, n)
    end
  end
  changed = true
end
local status = 0
if st[7] then
  if #out == 0 then
    status = 1
  elseif last == n - 1 and st[11] ~= '1' then
    redis.call('HSET', KEYS[1], 'dr', 1)
    changed = true
  end
end
redis.call('HSET', KEYS[1], 'f', f, 'dl', dl, 'pb', pb, 'b', b, 'tr', tr)
refresh(tonumber(ARGV[7]))
if changed then redis.call('PUBLISH', ARGV[8], 'd') end
local hasPing, ping = 0, ''
if tonumber(ARGV[3]) ~= pn then hasPing, ping = 1, st[9] or '' end
local more = 0
if last < n - 1 then more = 1 end
local res = {status, after, n, pn, hasPing, ping, more, st[7] or ''}
for i = 1, #out do res[#res + 1] = out[i] end
return res
`)

// ackScript: ARGV = upTo, ttl ms. It frees the frames up to upTo (no
// further than delivered).
var ackScript = redis.NewScript(luaLib + `
local st = redis.call('HMGET', KEYS[1], 'n', 'f', 'ak', 'dl', 'pb', 'b')
if not st[1] then return -2 end
local n, f, ak, dl, pb, b = tonumber(st[1]), tonumber(st[2]), tonumber(st[3]), tonumber(st[4]), tonumber(st[5]), tonumber(st[6])
local upto = math.min(tonumber(ARGV[1]), dl)
if upto <= ak then return 0 end
redis.call('HSET', KEYS[1], 'ak', upto, 'aat', nowms())
if upto >= f then
  local freed, pfreed = drop(upto, dl, f)
  redis.call('HSET', KEYS[1], 'b', b - freed, 'pb', pb - pfreed, 'f', math.min(upto + 1, n))
end
refresh(tonumber(ARGV[2]))
return 1
`)

// endScript: ARGV = reason, event channel. The first end counts.
var endScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return -2 end
if redis.call('HSETNX', KEYS[1], 'e', ARGV[1]) == 1 then redis.call('PUBLISH', ARGV[2], 'e') end
return 0
`)

// pingScript: ARGV = data, event channel, ttl ms, node (only the owner's
// keep-alives count).
var pingScript = redis.NewScript(luaLib + `
if redis.call('HEXISTS', KEYS[1], 'e') == 1 then return 0 end
if redis.call('GET', KEYS[3]) ~= ARGV[4] then return -3 end
redis.call('HSET', KEYS[1], 'p', ARGV[1])
local pn = redis.call('HINCRBY', KEYS[1], 'pn', 1)
refresh(tonumber(ARGV[3]))
redis.call('PUBLISH', ARGV[2], 'p ' .. pn)
return 1
`)

// renewScript: ARGV = node, lease ms. It extends node's lease; 0 when
// another holds it (or none does).
var renewScript = redis.NewScript(`
if redis.call('GET', KEYS[3]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[3], ARGV[2])
  return 1
end
return 0
`)

// acquireScript: ARGV = node, lease ms. It takes the lease of an open
// session that has none (its owner died): 1 if taken, 0 if the session
// is gone or ended, -1-t when another process holds the lease for t ms
// more (so that the caller tries again as it expires).
var acquireScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 or redis.call('HEXISTS', KEYS[1], 'e') == 1 then return 0 end
if redis.call('SET', KEYS[3], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
return -1 - math.max(redis.call('PTTL', KEYS[3]), 0)
`)

// redisNil is Redis's "no such key" answer.
var redisNil = redis.Nil

// attachScript: ARGV = kind, node, event channel. It numbers a new
// downstream of kind across processes and announces it: a downstream
// attached before it (a lower number) goes, wherever it is.
var attachScript = redis.NewScript(`
local n = redis.call('HINCRBY', KEYS[1], 'k' .. ARGV[1], 1)
redis.call('PUBLISH', ARGV[3], 'k' .. ARGV[1] .. ' ' .. ARGV[2] .. ' ' .. n)
return n
`)

// disownScript: ARGV = node. It deletes node's lease.
var disownScript = redis.NewScript(`
if redis.call('GET', KEYS[3]) == ARGV[1] then return redis.call('DEL', KEYS[3]) end
return 0
`)
