"""The stream buffer shared by every bridge process through Redis (issue 17): appends of one
stream may land on any process (they share the request subscription) and still add up to one
text, with one coalesced delivery per delta_interval() per stream in all.

Per stream: a hash `mchat:stream:<msg_id>` (info, sender, seq, chars, pub_chars, pub_bytes,
last_pub, dirty, stored_at, touched, closed), its text as a string `…:text` (APPEND; at most
STREAM_MAX_CHARS characters), and the answers of its last REPEATS_REMEMBERED appends
(`…:rk` list, `…:ra` hash). Three sorted sets say what is due, scored in Redis's clock (ms):
`mchat:streams:due` (a coalesced delivery), `…:persist` (a text to store), `…:idle` (the last
append). Every change is one Lua script, so it is atomic and each due item goes to one
process. Keys expire STREAM_IDLE_SECONDS + 5 min after the last append. One Redis server (the
scripts name keys they compute, which Redis Cluster does not allow).

Characters, not bytes, are what offsets count (as in the protocol): the caller passes the
delta's length in characters; the scripts keep both counts, and a delivery starts at a byte
offset that is always a character boundary.
"""

from __future__ import annotations

from datetime import UTC, datetime

import redis
from django.conf import settings

from messaging import stream_buffers as sb
from messaging.stream_buffers import Appended, Closed, Delta, Due, Store, StreamInfo

_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# KEYS: hash, text, idle. ARGV: msg_id, info, sender, seq, text, chars, ttl_ms.
_OPEN = (
    _NOW
    + """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'info', ARGV[2], 'sender', ARGV[3], 'seq', ARGV[4], 'chars', ARGV[6],
  'pub_chars', ARGV[6], 'pub_bytes', #ARGV[5], 'last_pub', 0, 'dirty', 0, 'stored_at', now,
  'touched', now, 'closed', 0)
redis.call('SET', KEYS[2], ARGV[5])
redis.call('PEXPIRE', KEYS[1], ARGV[7])
redis.call('PEXPIRE', KEYS[2], ARGV[7])
redis.call('ZADD', KEYS[3], now, ARGV[1])
return 1
"""
)

# KEYS: hash, text, repeat order, repeat answers, due, persist, idle.
# ARGV: msg_id, sender, delta, delta_chars, max_chars, repeat_key, interval_ms, persist_ms,
#       ttl_ms, repeats_max.
_APPEND = (
    """
local h = redis.call('HMGET', KEYS[1], 'sender', 'closed', 'chars', 'pub_chars', 'pub_bytes',
  'last_pub', 'dirty', 'stored_at', 'seq')
if not h[1] then return {'missing'} end
if h[1] ~= ARGV[2] then return {'sender'} end
if h[2] == '1' then return {'closed'} end
if ARGV[6] ~= '' then
  local seen = redis.call('HGET', KEYS[4], ARGV[6])
  if seen then return {'repeat', h[9], seen} end
end
local chars = tonumber(h[3])
local length = chars + tonumber(ARGV[4])
if length > tonumber(ARGV[5]) then return {'too_long'} end
"""
    + _NOW
    + """
local bytes = redis.call('APPEND', KEYS[2], ARGV[3])
local ttl = ARGV[9]
local out = {'ok', h[9], tostring(chars), tostring(length)}
local last_pub = tonumber(h[6])
if now - last_pub >= tonumber(ARGV[7]) then
  table.insert(out, h[4])
  table.insert(out, redis.call('GETRANGE', KEYS[2], tonumber(h[5]), -1))
  table.insert(out, redis.call('HGET', KEYS[1], 'info'))
  redis.call('HSET', KEYS[1], 'pub_chars', length, 'pub_bytes', bytes, 'last_pub', now)
  redis.call('ZREM', KEYS[5], ARGV[1])
else
  redis.call('ZADD', KEYS[5], last_pub + tonumber(ARGV[7]), ARGV[1])
end
redis.call('HSET', KEYS[1], 'chars', length, 'touched', now)
if h[7] ~= '1' then
  redis.call('HSET', KEYS[1], 'dirty', 1)
  redis.call('ZADD', KEYS[6], math.max(now, tonumber(h[8]) + tonumber(ARGV[8])), ARGV[1])
end
redis.call('ZADD', KEYS[7], now, ARGV[1])
if ARGV[6] ~= '' then
  redis.call('RPUSH', KEYS[3], ARGV[6])
  redis.call('HSET', KEYS[4], ARGV[6], chars .. ':' .. length)
  if redis.call('LLEN', KEYS[3]) > tonumber(ARGV[10]) then
    redis.call('HDEL', KEYS[4], redis.call('LPOP', KEYS[3]))
  end
  redis.call('PEXPIRE', KEYS[3], ttl)
  redis.call('PEXPIRE', KEYS[4], ttl)
end
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('PEXPIRE', KEYS[2], ttl)
return out
"""
)

# KEYS: hash, text, due, persist, idle. ARGV: msg_id, sender ('' = anyone), closed_ttl_ms.
_CLOSE = """
local h = redis.call('HMGET', KEYS[1], 'sender', 'closed', 'info')
if not h[3] then return {'missing'} end
if ARGV[2] ~= '' and h[1] ~= ARGV[2] then return {'sender'} end
if h[2] == '1' then return {'closed'} end
redis.call('HSET', KEYS[1], 'closed', 1)
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('ZREM', KEYS[4], ARGV[1])
redis.call('ZREM', KEYS[5], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return {'ok', h[3], redis.call('GET', KEYS[2]) or ''}
"""

# KEYS: hash, text, persist, idle. ARGV: msg_id, ttl_ms.
_REOPEN = (
    _NOW
    + """
if redis.call('HGET', KEYS[1], 'closed') ~= '1' then return 0 end
redis.call('HSET', KEYS[1], 'closed', 0)
if redis.call('HGET', KEYS[1], 'dirty') == '1' then redis.call('ZADD', KEYS[3], now, ARGV[1]) end
redis.call('ZADD', KEYS[4], now, ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return 1
"""
)

# KEYS: due, persist, idle. ARGV: stream key prefix, idle_ms, limit, closed_ttl_ms.
# Returns {deliveries {info, offset, delta, length}, stores {info, text, touched}, idle {info, text}}.
_DUE = (
    _NOW
    + """
local prefix, limit = ARGV[1], tonumber(ARGV[3])
local deliveries, stores, idle = {}, {}, {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, limit)) do
  redis.call('ZREM', KEYS[1], id)
  local s = prefix .. id
  local h = redis.call('HMGET', s, 'closed', 'chars', 'pub_chars', 'pub_bytes', 'info')
  if h[5] and h[1] ~= '1' and tonumber(h[2]) > tonumber(h[3]) then
    local delta = redis.call('GETRANGE', s .. ':text', tonumber(h[4]), -1)
    redis.call('HSET', s, 'pub_chars', h[2], 'pub_bytes', tonumber(h[4]) + #delta, 'last_pub', now)
    table.insert(deliveries, {h[5], h[3], delta, h[2]})
  end
end
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, limit)) do
  redis.call('ZREM', KEYS[2], id)
  local s = prefix .. id
  local h = redis.call('HMGET', s, 'closed', 'dirty', 'info', 'touched')
  if h[3] and h[1] ~= '1' and h[2] == '1' then
    redis.call('HSET', s, 'dirty', 0, 'stored_at', now)
    table.insert(stores, {h[3], redis.call('GET', s .. ':text') or '', h[4]})
  end
end
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now - tonumber(ARGV[2]), 'LIMIT', 0, limit)) do
  redis.call('ZREM', KEYS[3], id)
  redis.call('ZREM', KEYS[1], id)
  redis.call('ZREM', KEYS[2], id)
  local s = prefix .. id
  local h = redis.call('HMGET', s, 'closed', 'info')
  if h[2] and h[1] ~= '1' then
    redis.call('HSET', s, 'closed', 1)
    redis.call('PEXPIRE', s, ARGV[4])
    redis.call('PEXPIRE', s .. ':text', ARGV[4])
    table.insert(idle, {h[2], redis.call('GET', s .. ':text') or ''})
  end
end
return {deliveries, stores, idle}
"""
)


class RedisStreamBuffer:
    """Open streams in Redis, shared by every process configured with the same URL. When
    Redis does not answer, stream requests get 503 (BufferUnavailable)."""

    MAX_OPEN = 100_000  # open streams in all; more -> 429
    TTL_MS = (sb.STREAM_IDLE_SECONDS + 300) * 1000
    CLOSED_TTL_MS = 60_000  # a closed stream answers "closed" this long, then is forgotten
    DUE_LIMIT = 500  # items of each kind one `due` call hands out

    def __init__(self, url: str | None = None, *, prefix: str = "mchat:stream") -> None:
        url = url or settings.MCHAT_STREAM_REDIS_URL
        self._redis = redis.Redis.from_url(
            url, socket_timeout=1.0, socket_connect_timeout=1.0, decode_responses=True
        )
        self._stream = f"{prefix}:"
        self._sets = [f"{prefix}s:due", f"{prefix}s:persist", f"{prefix}s:idle"]
        self._open = self._redis.register_script(_OPEN)
        self._append = self._redis.register_script(_APPEND)
        self._close = self._redis.register_script(_CLOSE)
        self._due = self._redis.register_script(_DUE)
        self._reopen = self._redis.register_script(_REOPEN)

    def _keys(self, msg_id: str) -> list[str]:
        key = self._stream + msg_id
        return [key, f"{key}:text", f"{key}:rk", f"{key}:ra"]

    def full(self) -> bool:
        return self._call(self._redis.zcard, self._sets[2]) >= self.MAX_OPEN

    def open(self, info: StreamInfo, text: str) -> None:
        hash_key, text_key, *_ = self._keys(info.msg_id)
        args = [info.msg_id, info.dumps(), info.sender_pk, info.seq, text, len(text), self.TTL_MS]
        self._call(self._open, keys=[hash_key, text_key, self._sets[2]], args=args)

    def append(self, msg_id: str, *, sender_pk: int, delta: str, repeat_key: str, max_chars: int) -> Appended:
        args = [
            msg_id,
            sender_pk,
            delta,
            len(delta),
            max_chars,
            repeat_key,
            int(sb.delta_interval() * 1000),
            int(sb.STREAM_PERSIST_SECONDS * 1000),
            self.TTL_MS,
            sb.REPEATS_REMEMBERED,
        ]
        reply = self._call(self._append, keys=[*self._keys(msg_id), *self._sets], args=args)
        status = reply[0]
        if status == sb.REPEAT:
            offset, length = reply[2].split(":")
            return Appended(sb.REPEAT, int(reply[1]), int(offset), int(length))
        if status != sb.OK:
            return Appended(status)
        seq, offset, length = int(reply[1]), int(reply[2]), int(reply[3])
        delivery = None
        if len(reply) > 4 and reply[5]:  # deliver now: from the last delivery's end, with the info
            delivery = Delta(StreamInfo.loads(reply[6]), int(reply[4]), reply[5], length)
        return Appended(sb.OK, seq, offset, length, delivery)

    def text(self, msg_id: str) -> str | None:
        return self._call(self._redis.get, self._keys(msg_id)[1])

    def close(self, msg_id: str, *, sender_pk: int | None) -> Closed:
        hash_key, text_key, *_ = self._keys(msg_id)
        args = [msg_id, "" if sender_pk is None else sender_pk, self.CLOSED_TTL_MS]
        reply = self._call(self._close, keys=[hash_key, text_key, *self._sets], args=args)
        if reply[0] != sb.OK:
            return Closed(reply[0])
        return Closed(sb.OK, StreamInfo.loads(reply[1]), reply[2])

    def reopen(self, msg_id: str) -> None:
        hash_key, text_key, *_ = self._keys(msg_id)
        keys = [hash_key, text_key, self._sets[1], self._sets[2]]
        self._call(self._reopen, keys=keys, args=[msg_id, self.TTL_MS])

    def discard(self, msg_id: str) -> None:
        pipe = self._redis.pipeline(transaction=False)
        pipe.delete(*self._keys(msg_id))
        for key in self._sets:
            pipe.zrem(key, msg_id)
        self._call(pipe.execute)

    def due(self) -> Due:
        args = [self._stream, sb.STREAM_IDLE_SECONDS * 1000, self.DUE_LIMIT, self.CLOSED_TTL_MS]
        deliveries, stores, idle = self._call(self._due, keys=self._sets, args=args)
        return Due(
            deliveries=[
                Delta(StreamInfo.loads(info), int(offset), delta, int(length))
                for info, offset, delta, length in deliveries
            ],
            stores=[
                Store(StreamInfo.loads(info), text, datetime.fromtimestamp(int(touched) / 1000, tz=UTC))
                for info, text, touched in stores
            ],
            idle=[(StreamInfo.loads(info), text) for info, text in idle],
        )

    def held(self, msg_ids: list[str]) -> set[str]:
        if not msg_ids:
            return set()
        pipe = self._redis.pipeline(transaction=False)
        for msg_id in msg_ids:
            pipe.exists(self._stream + msg_id)
        found = self._call(pipe.execute)
        return {msg_id for msg_id, exists in zip(msg_ids, found, strict=True) if exists}

    def forget(self) -> None:
        keys = list(self._redis.scan_iter(match=f"{self._stream}*", count=1000))
        if keys:
            self._redis.delete(*keys)
        self._redis.delete(*self._sets)

    def _call(self, function, *args, **kwargs):
        try:
            return function(*args, **kwargs)
        except redis.RedisError as exc:
            raise sb.BufferUnavailable() from exc
