"""Distributed mode on Redis: the coordinator (``surefetch fetch --redis``) and what it
shares with the workers (``surefetch worker``, in :mod:`surefetch._redis_worker`).

The coordinator is the only reader of the input and writer of the output, as with
``--workers N``: it admits URLs (the same :func:`~surefetch.engine.admitted` path),
keeps at most ``window`` of them in Redis, and writes the records the workers send back.

Every key of a job carries the hash tag ``{job}`` (one Redis Cluster slot)::

    surefetch:{job}:meta      hash: epoch, state, config (the workers' _wire.Config),
                              partitions, lease_ms, deliveries
    surefetch:{job}:q:<p>     stream per partition, consumer group "w": URLs to fetch,
                              up to PACK an entry
    surefetch:{job}:owners    hash: partition -> "worker expiry_ms" (renewable leases)
    surefetch:{job}:workers   sorted set: worker -> expiry_ms of its heartbeat
    surefetch:{job}:out       stream: the records workers send back
    surefetch:{job}:alone     hash: shared hosts that pushed back -> one owner now
    surefetch:{job}:stats     hash: worker session -> "reclaimed lost" (its heartbeats)
    surefetch:{job}:coordinator   the running coordinator's claim (one at a time)
    surefetch:{job}:rate:<host>   a host's rate gate (GCRA), for hosts with a pace

A host belongs to one partition (by a hash of ``name:port``); a partition is owned by
one worker at a time through a lease it renews on each heartbeat (a Lua script, times
from Redis ``TIME``), so each host's politeness is decided in one process. As with
``--workers N``, a host without a pace (no rate, a per-host limit that can be shared
out, no robots.txt) is *shared* until it pushes back: its URLs are spread over
``share`` partitions (*lanes*, ``share`` = the workers present when the epoch starts),
each lane's owner fetching it with ``per_host // share``; once it pushes back (a 429
or 503, or its circuit opens) it is *alone*: its new URLs go to its own partition,
and the other lanes' owners move what they hold of it there. An entry holds up to
``PACK`` URLs (*Works*); it is acknowledged (XACK, then trimmed or deleted) only once
each of them has a record durable in the output, or has moved unstarted to an entry
of its own (handed back, or to its host's owner: the worker says so in the record
stream). The owner of a partition reclaims entries of dead workers that stayed idle
longer than the lease (heartbeats reset the idle time of entries being fetched), and
splits a reclaimed entry of several URLs into one entry each, so that a URL that kills
its workers takes no other down with it; a URL delivered more than ``deliveries``
times ends as a ``worker_lost`` record.

The output is the source of truth: each coordinator run (and each reconnection after
Redis lost its data) starts a new *epoch*: the job's keys are rebuilt and the URLs
the coordinator has outstanding are admitted again. Records of another epoch are
ignored; a URL's record is written once, the first time it comes back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import struct
from collections import deque
from collections.abc import AsyncIterable, Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import msgspec

from ._fingerprint import fingerprint
from ._wire import Config, WireItem, wire_item
from .engine import Emit, Stats, admitted, backlog_for
from .errors import SurefetchError
from .fleet import Fleet
from .record import Record
from .sources import InputError, Item, ItemBatches

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from ._index import UrlIndex

__all__ = [
    "GROUP",
    "PACK",
    "Distributed",
    "JobTaken",
    "Keys",
    "RedisUnavailable",
    "Results",
    "Work",
    "check_reachable",
    "connect",
    "run_redis",
    "wire_item",
    "worker_credit",
]

log = logging.getLogger("surefetch.distributed")

#: The consumer group of every partition stream.
GROUP = "w"
#: URLs per admission (one script call), entries per read of the record stream (each
#: of 16 kB at most): as many as workers let it hold (their ``_OUT_ENTRIES``), so that
#: one read takes all a coordinator that fell behind finds there; a reply stays at
#: 256 kB. (8 a read: 4-11 % slower, the workers waiting more often on a full stream.)
_ADMIT_BATCH = 512
_READ_BATCH = 16
#: URLs per partition stream entry at most: what Redis, the scripts and redis-py do per
#: entry (an id, its place in the pending list, its acknowledgement) is shared out.
PACK = 16
#: How long a stopped coordinator waits for records once none have come.
_QUIET = 2.0
#: How often the coordinator checks its epoch and the hosts that pushed back.
_LOOK_EVERY = 0.25
#: How long the coordinator waits for a lost Redis to come back before giving up.
_PATIENCE = 120.0
#: The window by need: the coordinator keeps in Redis, without a record yet, what the
#: workers present can hold (their credit each) and a reserve of what they record in
#: ``_REFILL`` s (at least ``_RESERVE``: one admission batch), so that a worker with
#: room finds URLs waiting; ``window`` bounds that and the records not yet
#: acknowledged (their entries are still in Redis).
_RESERVE = _ADMIT_BATCH
_REFILL = 0.1


def worker_credit(concurrency: int) -> int:
    """URLs a worker of ``concurrency`` connections holds at most (read, no record
    sent yet): what one engine holds ready in a single process, so that a host whose
    URLs wait (slow, backing off) does not starve the others (at 2 x concurrency + 32,
    one worker took twice as long as ``--workers 1`` on the demo's mix). Far more than
    twice ``PACK``: a worker reads once half of it is free, one entry at least."""
    return backlog_for(concurrency)


class RedisUnavailable(SurefetchError):
    """Redis cannot be reached (or was lost for longer than the coordinator waits)."""


@dataclass(frozen=True, slots=True)
class Distributed:
    """How a job runs through Redis.

    - ``url``: ``redis://HOST:PORT/DB`` (or ``rediss://``, ``unix://``).
    - ``job``: the job's name; its keys are ``surefetch:{job}:...``.
    - ``window``: URLs in Redis at most (admitted, not yet acknowledged); fewer while
      the workers need fewer (what they hold and a reserve, see ``_RESERVE``).
    - ``partitions``: host partitions (the unit a worker owns; more than workers).
    - ``lease``: seconds a worker's leases last without a heartbeat; an entry of a
      dead worker is reclaimed once it stayed idle this long.
    - ``deliveries``: times a URL may be handed out before it ends as ``worker_lost``.
    """

    url: str
    job: str = "surefetch"
    window: int = 10_000
    partitions: int = 16
    lease: float = 30.0
    deliveries: int = 3

    def __post_init__(self) -> None:
        if not self.job or any(c in self.job for c in "{}: \t\n"):
            raise ValueError(f"--job must be a name without braces, colons or spaces: {self.job!r}")
        if self.window < 1 or self.partitions < 1 or self.deliveries < 1:
            raise ValueError("window, partitions and deliveries must be >= 1")
        if self.lease < 0.5:
            raise ValueError(f"--lease must be at least 0.5 s, got {self.lease:g}")


class Keys:
    """The Redis keys of one job (all in the slot of the hash tag ``{job}``)."""

    def __init__(self, job: str) -> None:
        base = f"surefetch:{{{job}}}"
        self.meta = f"{base}:meta"
        self.owners = f"{base}:owners"
        self.workers = f"{base}:workers"
        self.out = f"{base}:out"
        self.alone = f"{base}:alone"
        self.stats = f"{base}:stats"
        self.coordinator = f"{base}:coordinator"
        self._queue = f"{base}:q:"
        self._rate = f"{base}:rate:"

    def queue(self, partition: int) -> str:
        return f"{self._queue}{partition}"

    def rate(self, host: str) -> str:
        """The rate gate of host ``host`` (``name:port``)."""
        return f"{self._rate}{host}"


class Work(msgspec.Struct, array_like=True):
    """A URL to fetch: the coordinator's number for it, and the URL. A partition stream
    entry holds a list of them (up to ``PACK``, of one partition). ``tries``: the
    deliveries of earlier entries of it that ended with their holders gone (when a
    reclaimed entry is split, see ``_Session.hand_over``)."""

    n: int
    item: WireItem
    tries: int = 0


class Done(msgspec.Struct, array_like=True):
    """What became of Work ``n`` of the entry ``entry`` of partition ``partition``
    (which holds ``size`` of them): its ``record``, or None if it moved to another
    entry unstarted (handed back, or to the owner of its host)."""

    partition: int
    entry: str
    n: int
    size: int
    record: Record | None


class Results(msgspec.Struct, array_like=True):
    """A record stream entry: records of one worker in one epoch."""

    epoch: str
    worker: str
    done: list[Done]


encode = msgspec.msgpack.Encoder().encode
decode_works = msgspec.msgpack.Decoder(list[Work]).decode
decode_results = msgspec.msgpack.Decoder(Results).decode
decode_config = msgspec.msgpack.Decoder(Config).decode


def partition_of(host: str, partitions: int) -> int:
    return fingerprint(host) % partitions


def lanes_of(host: str, partitions: int, share: int) -> tuple[int, ...]:
    """The partitions a shared host's URLs are spread over (its own first), spaced
    evenly so that they tend to have different owners."""
    base = partition_of(host, partitions)
    return tuple((base + j * partitions // share) % partitions for j in range(share))


def _redis_module() -> Any:
    try:
        import redis.asyncio as aioredis
    except ImportError:
        raise RedisUnavailable(
            "distributed mode needs redis-py: pip install 'surefetch[redis]'"
        ) from None
    return aioredis


def check_url(url: str) -> None:
    """Raise ValueError if ``url`` is not a Redis URL redis-py accepts."""
    from redis.connection import parse_url

    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise ValueError(f"--redis must be redis://HOST:PORT/DB, got {url!r}")
    parse_url(url)  # type: ignore[no-untyped-call]


async def connect(url: str) -> Redis:
    """A client for ``url``, checked with a PING; :class:`RedisUnavailable` if not."""
    aioredis = _redis_module()
    client: Redis = aioredis.from_url(url, socket_connect_timeout=5, socket_timeout=15)
    try:
        await client.ping()
    except (OSError, aioredis.RedisError) as exc:
        await client.aclose()
        raise RedisUnavailable(f"cannot reach Redis at {url}: {_reason(exc)}") from None
    return client


async def check_reachable(url: str) -> None:
    """Raise :class:`RedisUnavailable` unless Redis answers at ``url``."""
    client = await connect(url)
    await client.aclose()


def _reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def redis_errors(*, replies: bool = False) -> tuple[type[Exception], ...]:
    """The errors that mean Redis is gone; with ``replies``, also error replies (a
    worker's stream without its group, after Redis lost its data)."""
    aioredis = _redis_module()
    errors: tuple[type[Exception], ...] = (
        OSError,
        aioredis.ConnectionError,
        aioredis.TimeoutError,
    )
    return (*errors, aioredis.ResponseError) if replies else errors


class JobTaken(SurefetchError):
    """Another coordinator runs this job now (one at a time: each would start the job
    again over the other's)."""


#: How long a coordinator's claim on its job lasts unrenewed (renewed twice a second):
#: a coordinator run after a SIGKILL waits this long at most.
_CLAIM_MS = 3000

# Take or renew the job's coordinator claim (ARGV[1]: this run's token): 1 if it is
# this run's now, 0 if another run holds it.
_CLAIM = """
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""


_LET_GO = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] ~= '' then redis.call('HSET', KEYS[2], 'state', ARGV[2]) end
redis.call('DEL', KEYS[1])
return 1
"""


# Add entries to the partition streams KEYS: ARGV[1] holds, for each, the stream's
# index in KEYS and the payload's length (4-byte big-endian numbers) and the payload.
# One argument per batch: redis-py packs each argument in Python (a pipeline of XADDs
# costs a command's packing and reply per URL, two arguments per URL a fifth of the
# coordinator's CPU).
_ADMIT = """
local blob, pos, n = ARGV[1], 1, 0
while pos <= #blob do
  local k, payload, after = struct.unpack('>I4I4c0', blob, pos)
  redis.call('XADD', KEYS[k], '*', 'w', payload)
  pos, n = after, n + 1
end
return n
"""
_ADMIT_HEAD = struct.Struct(">II").pack


def admission_blob(entries: Iterable[tuple[int, bytes]]) -> bytes:
    """The argument of the admission script for (partition, payload) ``entries``."""
    head = _ADMIT_HEAD
    return b"".join(head(p + 1, len(payload)) + payload for p, payload in entries)


# Acknowledge in the partition streams KEYS the entries whose records are durable, and
# remove them: ARGV[2..] holds pairs of a stream's index in KEYS and its entries' ids,
# ascending and space-separated (one argument per stream: redis-py packs each argument
# in Python). Every entry below both the oldest one still pending and the newest one
# acknowledged has been delivered and acknowledged: one XTRIM MINID removes those
# (whole nodes at a time); only the ones past a straggler still pending cost an XDEL.
_ACK = """
local function id_of(text)
  local ms, seq = string.match(text, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end
local function below(a_ms, a_seq, b_ms, b_seq)
  return a_ms < b_ms or (a_ms == b_ms and a_seq < b_seq)
end
for i = 2, #ARGV, 2 do
  local key, list = KEYS[tonumber(ARGV[i])], {}
  for id in string.gmatch(ARGV[i + 1], '%S+') do list[#list + 1] = id end
  for s = 1, #list, 1000 do
    redis.call('XACK', key, ARGV[1], unpack(list, s, math.min(s + 999, #list)))
  end
  local min_ms, min_seq = id_of(list[#list])
  min_seq = min_seq + 1
  local first = #list + 1
  local oldest = redis.call('XPENDING', key, ARGV[1])[2]
  if oldest then
    local ms, seq = id_of(oldest)
    if below(ms, seq, min_ms, min_seq) then
      min_ms, min_seq = ms, seq
      local lo, hi = 1, #list + 1
      while lo < hi do
        local mid = math.floor((lo + hi) / 2)
        local m_ms, m_seq = id_of(list[mid])
        if below(m_ms, m_seq, ms, seq) then lo = mid + 1 else hi = mid end
      end
      first = lo
    end
  end
  redis.call('XTRIM', key, 'MINID', string.format('%d-%d', min_ms, min_seq))
  for s = first, #list, 1000 do
    redis.call('XDEL', key, unpack(list, s, math.min(s + 999, #list)))
  end
end
return 0
"""


def _entry_order(entry: str) -> tuple[int, int]:
    """The order of stream id ``entry`` (``ms-seq``)."""
    ms, _, seq = entry.partition("-")
    return int(ms), int(seq)


def _after(entry: bytes) -> str:
    """The stream id just after ``entry`` (``ms-seq``)."""
    ms, _, seq = entry.partition(b"-")
    return f"{ms.decode()}-{int(seq) + 1}"


class EpochLost(SurefetchError):
    """Redis no longer holds this epoch (it restarted without its data, or another
    coordinator started the job again)."""


@dataclass(slots=True)
class _Pending:
    partition: int
    wire: WireItem
    host: str
    name: str


@dataclass(slots=True)
class _Entry:
    """A partition stream entry whose Works came back in part: each has a record, or
    moved to another entry (see :class:`Done`); then it is acknowledged."""

    size: int
    seen: set[int] = field(default_factory=set)
    #: Records written of it (they count towards ``window`` until it is acknowledged).
    taken: int = 0


#: Hosts whose partitions are remembered at most (then the memo starts over).
_LANES_KEPT = 100_000


@dataclass(slots=True)
class _Lanes:
    """The partitions a host's URLs go to, in turn (one: the host is alone)."""

    partitions: tuple[int, ...]
    turn: int = 0

    def next(self) -> int:
        # Each host's own turn, not the URL's number: an input that goes round its
        # hosts in order would otherwise send every URL of a host to the same lane.
        partition = self.partitions[self.turn]
        self.turn = (self.turn + 1) % len(self.partitions)
        return partition


@dataclass
class _Coordinator:
    """The state of one coordinator run; see :func:`run_redis`."""

    redis: Redis
    settings: Distributed
    config: Config
    emit: Emit
    stats: Stats
    durable: Callable[[], int]
    keys: Keys = field(init=False)
    epoch: str = ""
    #: URLs in Redis, by number: what is admitted and has no record yet.
    outstanding: dict[int, _Pending] = field(default_factory=dict)
    #: Numbers not yet added to Redis in this epoch.
    unsent: deque[int] = field(default_factory=deque)
    #: Entries in part done, by (partition, entry).
    entries: dict[tuple[int, str], _Entry] = field(default_factory=dict)
    #: (records emitted when written, partition, entry, its records written): entries
    #: all done, acknowledged once durable.
    to_ack: deque[tuple[int, int, str, int]] = field(default_factory=deque)
    #: Records written whose entries are not acknowledged yet (they are still in Redis).
    unacked: int = 0
    emitted: int = 0
    next_n: int = 0
    fed: bool = False
    room: asyncio.Event = field(default_factory=asyncio.Event)
    news: asyncio.Event = field(default_factory=asyncio.Event)
    #: Set when an epoch's tasks are to end.
    over: asyncio.Event = field(default_factory=asyncio.Event)
    #: This run's claim on the job.
    token: str = field(default_factory=lambda: secrets.token_hex(8))
    #: The workers as seen from here (for the progress and the summary).
    fleet: Fleet = field(default_factory=Fleet)
    #: Lanes per shared host in this epoch (1: none is shared).
    share: int = 1
    #: Shared hosts that pushed back (each has one owner now), and each host's lanes.
    alone: set[str] = field(default_factory=set)
    lanes: dict[str, _Lanes] = field(default_factory=dict)
    #: Entries without a record that Redis is to hold now (see ``_RESERVE``), the
    #: records/s measured, and the count and time it was last measured from.
    wanted: int = _RESERVE
    rate: float = 0.0
    taken: int = 0
    rated: tuple[int, float] = (0, 0.0)

    def __post_init__(self) -> None:
        self.keys = Keys(self.settings.job)
        self.queues = [self.keys.queue(p) for p in range(self.settings.partitions)]
        self.admit = self.redis.register_script(_ADMIT)
        self.ack_script = self.redis.register_script(_ACK)
        policy = self.config.politeness
        self.per_host = policy.per_host or self.config.limits["per_host"]

    def partition_for(self, host: str, name: str) -> int:
        """The partition the next URL of host ``host`` goes to."""
        lanes = self.lanes.get(host)
        if lanes is None:
            if len(self.lanes) >= _LANES_KEPT:
                self.lanes.clear()
            partitions, share = self.settings.partitions, self.share
            if host in self.alone or self.config.politeness.alone(host, name, self.per_host, share):
                lanes = _Lanes((partition_of(host, partitions),))
            else:
                lanes = _Lanes(lanes_of(host, partitions, share))
            self.lanes[host] = lanes
        return lanes.next()

    async def count_emit(self, record: Record) -> None:
        self.emitted += 1
        await self.emit(record)

    # -- admission (the whole run) ------------------------------------------------

    async def feed(
        self,
        items: Iterable[str | Item] | AsyncIterable[str | Item] | ItemBatches,
        seen: UrlIndex | None,
        done: UrlIndex | None,
        bad_input: list[InputError],
    ) -> None:
        window, outstanding = self.settings.window, self.outstanding
        async for batch in admitted(items, self.stats, self.count_emit, seen, done, bad_input):
            for item, target, host in batch:
                # As many as the workers need; and the URLs whose records came but
                # whose entries are not acknowledged yet are still in Redis: they count
                # towards ``window``.
                while len(outstanding) >= self.wanted or len(outstanding) + self.unacked >= window:
                    self.room.clear()
                    await self.room.wait()
                n = self.next_n
                self.next_n += 1
                name = target.raw_host or ""
                partition = self.partition_for(host, name)
                self.outstanding[n] = _Pending(partition, wire_item(item), host, name)
                self.unsent.append(n)
                self.stats.in_flight += 1
                if len(self.unsent) >= _ADMIT_BATCH:
                    self.news.set()
            self.news.set()
        self.fed = True
        self.news.set()

    # -- one epoch --------------------------------------------------------------

    async def reset(self) -> None:
        """Start a new epoch: the job's keys rebuilt, every outstanding URL to send."""
        keys, settings = self.keys, self.settings
        old = await self.redis.hget(keys.meta, "partitions")
        spread = max(settings.partitions, int(old) if old else 0)
        self.epoch = secrets.token_hex(6)
        self.share = await self.workers_present()
        self.lanes.clear()
        for pending in self.outstanding.values():  # the lanes of this epoch's share
            pending.partition = self.partition_for(pending.host, pending.name)
        config = msgspec.structs.replace(self.config, share=self.share)
        pipe = self.redis.pipeline(transaction=True)
        queues = (keys.queue(p) for p in range(spread))
        pipe.delete(keys.meta, keys.owners, keys.out, keys.alone, keys.stats, *queues)
        for p in range(settings.partitions):
            pipe.xgroup_create(keys.queue(p), GROUP, id="0", mkstream=True)
        pipe.hset(
            keys.meta,
            mapping={
                "epoch": self.epoch,
                "state": "running",
                "config": encode(config),
                "partitions": settings.partitions,
                "lease_ms": int(settings.lease * 1000),
                "deliveries": settings.deliveries,
            },
        )
        if self.alone:
            pipe.hset(keys.alone, mapping=dict.fromkeys(self.alone, "0 0"))
        await pipe.execute()
        self.unsent = deque(sorted(self.outstanding))
        self.entries.clear()
        self.to_ack.clear()
        self.unacked = 0
        self.news.set()
        log.info(
            "job %s: epoch %s, %d URLs outstanding, %d lanes per shared host",
            settings.job,
            self.epoch,
            len(self.unsent),
            self.share,
        )

    async def workers_present(self) -> int:
        """The workers present now (waiting or working): the lanes of a shared host,
        at most ``partitions`` and the per-host limit; 1 with robots.txt (each host is
        fetched by one owner, its robots.txt once)."""
        if self.config.robots:
            return 1
        seconds, micros = await self.redis.time()
        now = seconds * 1000 + micros // 1000
        present = int(await self.redis.zcount(self.keys.workers, now, "+inf"))
        return max(1, min(present, self.settings.partitions, self.per_host))

    async def send(self) -> None:
        """Add admitted URLs to their partitions' streams, in batches (for one epoch:
        each starts its own)."""
        unsent, outstanding = self.unsent, self.outstanding
        while not self.over.is_set():
            if not unsent:
                self.news.clear()
                await self.news.wait()
                continue
            works: dict[int, list[Work]] = {}
            for _ in range(min(_ADMIT_BATCH, len(unsent))):
                n = unsent.popleft()
                pending = outstanding.get(n)
                if pending is not None:
                    works.setdefault(pending.partition, []).append(Work(n, pending.wire))
            entries = [
                (partition, encode(batch[i : i + PACK]))
                for partition, batch in works.items()
                for i in range(0, len(batch), PACK)
            ]
            if entries:
                await self.admit(keys=self.queues, args=[admission_blob(entries)])

    async def collect(self, stopping: asyncio.Event) -> None:
        """Write the records that come back; returns when none is outstanding (or,
        once stopping, when none came for a while)."""
        keys, redis = self.keys, self.redis
        last, trimmed = b"0-0", b"0-0"
        quiet = 0.0
        loop = asyncio.get_running_loop()
        look_due = 0.0
        while (self.outstanding or not self.fed) and not self.over.is_set():
            if stopping.is_set() and quiet >= _QUIET:
                return
            await self.ack()
            # One round trip, native commands only (records pass through no script):
            # what was read is trimmed (ids only grow), the next records read.
            pipe = redis.pipeline(transaction=False)
            if last != trimmed:
                pipe.xtrim(keys.out, minid=_after(last), approximate=False)
                trimmed = last
            pipe.xread({keys.out: last}, count=_READ_BATCH, block=250)
            answer: Any = (await pipe.execute())[-1]
            if not answer or loop.time() >= look_due:
                look_due = loop.time() + _LOOK_EVERY
                await self.look()
            if not answer:
                quiet += 0.25
                continue
            quiet = 0.0
            for entry_id, fields in answer[0][1]:
                last = entry_id
                await self._take(decode_results(fields[b"r"]))
            self.room.set()

    async def ack(self) -> None:
        """Acknowledge (and remove) the entries all done whose records are durable now
        (one call)."""
        durable = self.durable()
        by_partition: dict[int, list[str]] = {}
        while self.to_ack and self.to_ack[0][0] <= durable:
            _, partition, entry, taken = self.to_ack.popleft()
            by_partition.setdefault(partition, []).append(entry)
            self.unacked -= taken
        if by_partition:
            args: list[Any] = [GROUP]
            for partition, entries in by_partition.items():
                args += (partition + 1, " ".join(sorted(entries, key=_entry_order)))
            await self.ack_script(keys=self.queues, args=args)
            self.room.set()

    async def look(self) -> None:
        """Check that Redis still holds this epoch, learn the shared hosts that pushed
        back (their new URLs go to their own partition from now on), and see how the
        workers do."""
        keys = self.keys
        pipe = self.redis.pipeline(transaction=False)
        pipe.hget(keys.meta, "epoch")
        pipe.hkeys(keys.alone)
        pipe.time()
        pipe.zrange(keys.workers, 0, -1, withscores=True)
        pipe.hgetall(keys.stats)
        epoch, alone, (seconds, micros), workers, said = await pipe.execute()
        if epoch != self.epoch.encode():
            raise EpochLost(f"Redis no longer holds epoch {self.epoch}")
        self.size_window(len(workers))
        now = seconds + micros / 1e6
        self.fleet.observe(
            [name.decode() for name, expiry in workers if expiry / 1000 >= now],
            {session.decode(): text.decode() for session, text in said.items()},
            asyncio.get_running_loop().time(),
        )
        for raw in alone:
            host = raw.decode()
            if host not in self.alone:
                self.alone.add(host)
                self.lanes.pop(host, None)

    def size_window(self, workers: int) -> None:
        """Size the entries wanted in Redis by the ``workers`` present (their credit)
        and the records/s measured (the reserve); more room lets ``feed`` go on."""
        now = asyncio.get_running_loop().time()
        taken, then = self.rated
        if now - then >= 0.2:
            measured = (self.taken - taken) / (now - then) if then else 0.0
            # Up at once (a worker that joins or speeds up is fed), down gently.
            self.rate = max(measured, 0.75 * self.rate + 0.25 * measured)
            self.rated = (self.taken, now)
        credit = worker_credit(self.config.limits["concurrency"])
        reserve = max(_RESERVE, int(self.rate * _REFILL))
        wanted = workers * credit + reserve
        if wanted > self.wanted:
            self.room.set()
        self.wanted = wanted

    async def _take(self, results: Results) -> None:
        if results.epoch != self.epoch:
            return
        stats, outstanding, entries = self.stats, self.outstanding, self.entries
        taken = 0
        for done in results.done:
            key = (done.partition, done.entry)
            entry = entries.get(key)
            if entry is None:
                entry = entries[key] = _Entry(done.size)
            record = done.record
            # None: it moved, unstarted, and stays outstanding. A second record (of an
            # entry delivered again, say) is dropped.
            if record is not None and outstanding.pop(done.n, None) is not None:
                taken += 1
                entry.taken += 1
                self.unacked += 1
                stats.in_flight -= 1
                if record.ok:
                    stats.ok += 1
                else:
                    stats.failed += 1
                self.emitted += 1
                await self.emit(record)
            entry.seen.add(done.n)
            if len(entry.seen) >= entry.size:
                del entries[key]
                self.to_ack.append((self.emitted, done.partition, done.entry, entry.taken))
        if taken:
            self.taken += taken
            self.fleet.took(results.worker, taken)

    async def claim(self, *, wait: float = 0.0) -> None:
        """Make the job this run's (waiting up to ``wait`` s for another's claim to
        run out); :class:`JobTaken` if another coordinator holds it."""
        script = self.redis.register_script(_CLAIM)
        loop = asyncio.get_running_loop()
        give_up = loop.time() + wait
        while not await script(keys=[self.keys.coordinator], args=[self.token, _CLAIM_MS]):
            if loop.time() >= give_up:
                raise JobTaken(
                    f"job {self.settings.job!r} has another coordinator running"
                    f" (at {self.settings.url}); one at a time"
                )
            await asyncio.sleep(0.25)

    async def let_go(self, state: str) -> None:
        """Give the claim up (and set the job's ``state`` if given), if still ours."""
        script = self.redis.register_script(_LET_GO)
        await script(keys=[self.keys.coordinator, self.keys.meta], args=[self.token, state])

    async def keep_claim(self) -> None:
        while not self.over.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.over.wait(), _CLAIM_MS / 6000)
            if not self.over.is_set():
                await self.claim()

    async def run_epoch(self, stopping: asyncio.Event) -> None:
        self.over.clear()
        await self.claim()
        await self.reset()
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self.ends_epoch(self.keep_claim()))
            tg.create_task(self.ends_epoch(self.send()))
            collector = tg.create_task(self.ends_epoch(self.collect(stopping)))
            halt = tg.create_task(stopping.wait())
            await asyncio.wait((collector, halt), return_when=asyncio.FIRST_COMPLETED)
            if halt.done() and not collector.done():
                await self.redis.hset(self.keys.meta, "state", "stopped")
                await collector
            # The others end on their own, not cancelled in the middle of a Redis
            # command (redis-py may not come back from that). (On an error the group
            # cancels them: Redis is gone then.)
            self.over.set()
            self.news.set()
            halt.cancel()

    async def ends_epoch(self, job: Coroutine[Any, Any, None]) -> None:
        """Run an epoch's task; an error of it ends the others through ``over`` too: the
        group's cancellation can be lost inside a redis-py command, and a task that
        went on to wait for ``news`` would then hold the group up for ever."""
        try:
            await job
        except BaseException:
            self.over.set()
            self.news.set()
            raise

    async def run_epochs(self, stopping: asyncio.Event) -> None:
        """Epoch after epoch until every URL has its record (or a stop): a Redis
        that went away or lost the epoch is waited for, then the window admitted again."""
        lost_errors: tuple[type[Exception], ...] = (*redis_errors(), EpochLost)
        while True:
            lost: BaseException | None = None
            try:
                await self.run_epoch(stopping)
            except* lost_errors as group:
                lost = group.exceptions[0]
            if lost is None or stopping.is_set():
                return
            job = self.settings.job
            log.warning("job %s: %s; admitting the outstanding URLs again", job, lost)
            await _await_redis(self.redis, self.settings.url)

    async def finish(self, *, completed: bool) -> None:
        """The last word to the workers: done (they exit) or stopped (they wait)."""
        keys = self.keys
        pipe = self.redis.pipeline(transaction=True)
        if completed:
            # Kept a minute (empty by now), so that workers see "done" and exit.
            pipe.hset(keys.meta, mapping={"state": "done"})
            pipe.hdel(keys.meta, "config")
            for key in (keys.meta, keys.owners, keys.out, keys.alone, keys.stats):
                pipe.expire(key, 60)
            for p in range(self.settings.partitions):
                pipe.expire(keys.queue(p), 60)
        else:
            pipe.hset(keys.meta, "state", "stopped")
        await pipe.execute()


async def _await_redis(redis: Redis, url: str) -> None:
    """Wait (bounded) until Redis answers again."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + _PATIENCE
    pause = 0.1
    errors = redis_errors()
    while True:
        try:
            await redis.ping()
            return
        except errors as exc:
            if loop.time() >= give_up:
                raise RedisUnavailable(
                    f"lost Redis at {url} for {_PATIENCE:g} s: {_reason(exc)}"
                ) from None
        await asyncio.sleep(pause)
        pause = min(2 * pause, 2.0)


async def run_redis(
    settings: Distributed,
    config: Config,
    items: Iterable[str | Item] | AsyncIterable[str | Item] | ItemBatches,
    emit: Emit,
    *,
    durable: Callable[[], int],
    seen: UrlIndex | None = None,
    done: UrlIndex | None = None,
    stop: asyncio.Event | None = None,
    stats: Stats | None = None,
    fleet: Fleet | None = None,
) -> Stats:
    """Coordinate a run through Redis: admit ``items`` there, ``await emit(record)``
    for each record the workers send back. ``durable()`` says how many emitted records
    the output holds durably (entries are acknowledged only then). ``config`` is what
    each worker builds its Client from; ``fleet`` is kept up to date with what each worker
    does. Raises :class:`RedisUnavailable`."""
    stats = stats if stats is not None else Stats()
    stopping = stop if stop is not None else asyncio.Event()
    redis = await connect(settings.url)
    coordinator = _Coordinator(redis, settings, config, emit, stats, durable)
    if fleet is not None:
        coordinator.fleet = fleet
    bad_input: list[InputError] = []
    finished = False
    try:
        # A coordinator killed just before leaves its claim for up to _CLAIM_MS.
        await coordinator.claim(wait=_CLAIM_MS / 1000 + 1)
    except BaseException:
        await redis.aclose()
        raise
    try:
        async with asyncio.TaskGroup() as tg:
            feeder = tg.create_task(coordinator.feed(items, seen, done, bad_input))
            halt = tg.create_task(_stop_feeding(stopping, feeder))
            await coordinator.run_epochs(stopping)
            halt.cancel()
        completed = not stopping.is_set()
        if not completed:
            stats.abandoned += len(coordinator.outstanding)
            stats.in_flight -= len(coordinator.outstanding)
        with contextlib.suppress(*redis_errors()):
            await coordinator.finish(completed=completed)
        finished = True
    finally:
        # After an error (the output's, say) the workers stop and wait; either way the
        # claim goes, if it is still this run's.
        with contextlib.suppress(*redis_errors()):
            await coordinator.let_go(state="" if finished else "stopped")
        await redis.aclose()
    if bad_input:
        raise bad_input[0]
    return stats


async def _stop_feeding(stopping: asyncio.Event, feeder: asyncio.Task[None]) -> None:
    await stopping.wait()
    feeder.cancel()
