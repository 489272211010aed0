"""``surefetch worker --redis URL``: fetches the URLs of a job that a coordinator
(``surefetch fetch --redis``) admits to Redis (see :mod:`surefetch.distributed`).

A worker waits for the job, then runs one *session* per epoch: it owns partitions
through leases renewed on each heartbeat, reads their streams, fetches with an engine
of its own (its scheduler is the one place each of its hosts is paced), and sends the
records back. A session ends when the epoch changes, the job stops or ends, Redis is
lost, or the worker is asked to stop; then what it has in flight finishes, and what it
has not started goes back to the streams.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ._worker import client_from
from .bodies import BodyStore
from .client import AttemptGate, Client, Response
from .distributed import (
    GROUP,
    PACK,
    Done,
    Keys,
    Results,
    Work,
    connect,
    decode_config,
    decode_works,
    encode,
    partition_of,
    redis_errors,
    wire_item,
    worker_credit,
)
from .engine import Stats, run
from .errors import WorkerLostError
from .polite import Scheduler
from .record import Record, failure_record
from .redact import shown_url
from .sources import Item, ItemBatches

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from yarl import URL

    from ._wire import Config

__all__ = ["WorkerTotals", "lost_record", "work"]

log = logging.getLogger("surefetch.worker")

#: Records per entry of the record stream at most, and their bytes (about: a record's
#: body and a few hundred bytes), and the longest a record waits to be sent. Entries
#: bounded in bytes keep Redis's memory flat whatever the bodies' size.
_SEND_BATCH = 128
_SEND_BYTES = 16 * 1024
_LINGER = 0.02
#: Entries the record stream may hold: a worker waits while it is that long (the
#: coordinator is behind; it tries again after ``_BEHIND``), so that Redis holds about
#: 260 kB of records at most.
_OUT_ENTRIES = 16
_BEHIND = 0.005
#: Entries per call at most (what a call holds in Redis's query buffer meanwhile).
_SEND_ENTRIES = 4

# Add entries of records (ARGV[2..]) to the record stream KEYS[1] while it holds fewer
# than ARGV[1] entries (0: no limit). Returns how many were added. One call for many
# entries: each await costs a turn of a worker's busy event loop.
_SEND = """
local most = tonumber(ARGV[1])
local n = 0
for i = 2, #ARGV do
  if most > 0 and redis.call('XLEN', KEYS[1]) >= most then break end
  redis.call('XADD', KEYS[1], '*', 'r', ARGV[i])
  n = n + 1
end
return n
"""
#: How often a worker with no job looks again; how often a working one says how it goes.
_POLL = 0.1
_STATUS_EVERY = 10.0

# Heartbeat: renew this worker's lease and its partitions', take free partitions up to
# its fair share, say how it goes (ARGV[5], for the coordinator: "reclaimed lost").
# Returns {fair share, state, partitions owned...}, or {-1} if the job's epoch is not
# the worker's.
_HEARTBEAT = """
if redis.replicate_commands then redis.replicate_commands() end
if redis.call('HGET', KEYS[1], 'epoch') ~= ARGV[2] then return {-1} end
redis.call('HSET', KEYS[4], ARGV[1], ARGV[5])
local state = redis.call('HGET', KEYS[1], 'state')
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = tonumber(ARGV[3])
local me = ARGV[1]
redis.call('ZADD', KEYS[2], now + lease, me)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local parts = tonumber(ARGV[4])
local fair = math.ceil(parts / math.max(1, redis.call('ZCARD', KEYS[2])))
local owners = {}
local flat = redis.call('HGETALL', KEYS[3])
for i = 1, #flat, 2 do owners[flat[i]] = flat[i + 1] end
local mine, free = {}, {}
local mark = me .. ' ' .. (now + lease)
for p = 0, parts - 1 do
  local v = owners[tostring(p)]
  if v then
    local sep = string.find(v, ' ', 1, true)
    if string.sub(v, 1, sep - 1) == me then
      redis.call('HSET', KEYS[3], p, mark)
      table.insert(mine, p)
    elseif tonumber(string.sub(v, sep + 1)) <= now then
      table.insert(free, p)
    end
  else
    table.insert(free, p)
  end
end
if state == 'running' then
  local i = 1
  while #mine < fair and i <= #free do
    redis.call('HSET', KEYS[3], free[i], mark)
    table.insert(mine, free[i])
    i = i + 1
  end
end
local reply = {fair, state}
for _, p in ipairs(mine) do table.insert(reply, p) end
return reply
"""

# Read up to ARGV[3] new entries from the streams KEYS[2..] for consumer ARGV[2] of
# group ARGV[1], without waiting, one at a time, each from the stream whose partition
# the worker holds the fewest URLs of (ARGV[4 + k] for KEYS[1 + k], plus what this call
# read; ties go to the first): a slow host, whose URLs stay held, cannot take up the
# credit that the others' URLs need. (An entry is a msgpack array of Works, whose
# header gives their count.) Returns {stream's index in KEYS[2..], id, payload, ...},
# flat, which costs the worker no per-entry work to parse. If there are none, returns
# {-1, the id of each stream's last entry ('0-0' if empty)...}: any entry added later
# comes after those (see _Session.read_waiting). Returns {-2} if the job's epoch
# (KEYS[1], the meta hash) is no longer ARGV[4]: a session of the epoch before (of
# this job's run before, or before Redis was lost) reads nothing of the new one, whose
# coordinator would ignore its records and which another worker would fetch again
# once the entries' lease ran out.
_READ = """
if redis.call('HGET', KEYS[1], 'epoch') ~= ARGV[4] then return {-2} end
local function works(payload)
  local b = string.byte(payload, 1)
  if b >= 0x90 and b <= 0x9f then return b - 0x90 end
  local n = 0
  for i = 2, (b == 0xdc and 3 or 5) do n = n * 256 + string.byte(payload, i) end
  return n
end
local streams = #KEYS - 1
local left = tonumber(ARGV[3])
local held, open = {}, {}
for k = 1, streams do
  held[k] = tonumber(ARGV[4 + k])
  open[k] = true
end
local out = {}
while left > 0 do
  local best = nil
  for k = 1, streams do
    if open[k] and (best == nil or held[k] < held[best]) then best = k end
  end
  if best == nil then break end
  local got = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', 1,
    'STREAMS', KEYS[1 + best], '>')
  if got then
    local e = got[1][2][1]
    table.insert(out, best)
    table.insert(out, e[1])
    table.insert(out, e[2][2])
    held[best] = held[best] + works(e[2][2])
    left = left - 1
  else
    open[best] = false
  end
end
if #out == 0 then
  out[1] = -1
  for k = 1, streams do
    local last = redis.call('XREVRANGE', KEYS[1 + k], '+', '-', 'COUNT', 1)[1]
    out[k + 1] = last and last[1] or '0-0'
  end
end
return out
"""

# Release partition ARGV[2] if ARGV[1] owns it and, unless ARGV[3] is "leaving", no
# entry of its stream KEYS[2] is pending for it (group ARGV[4]): an entry whose records
# were sent is acknowledged only once they are durable, and meanwhile a new owner
# would reclaim it once idle for a lease, and fetch its URLs again.
_RELEASE = """
local v = redis.call('HGET', KEYS[1], ARGV[2])
if not (v and string.sub(v, 1, #ARGV[1] + 1) == ARGV[1] .. ' ') then return 0 end
if ARGV[3] ~= 'leaving' and
    #redis.call('XPENDING', KEYS[2], ARGV[4], '-', '+', 1, ARGV[1]) > 0 then
  return 0
end
redis.call('HDEL', KEYS[1], ARGV[2])
return 1
"""

# Reclaim entries of stream KEYS[2] of other consumers idle >= ARGV[3] ms (at most
# ARGV[4]): returns {id, payload, deliveries} triples (deliveries counts this one), or
# {-2} if the job's epoch (KEYS[1]) is no longer ARGV[5] (see _READ).
_RECLAIM = """
if redis.call('HGET', KEYS[1], 'epoch') ~= ARGV[5] then return {-2} end
local pending = redis.call('XPENDING', KEYS[2], ARGV[1], 'IDLE', ARGV[3], '-', '+', ARGV[4])
local out = {}
for _, e in ipairs(pending) do
  if e[2] ~= ARGV[2] then
    local got = redis.call('XCLAIM', KEYS[2], ARGV[1], ARGV[2], ARGV[3], e[1])
    local entry = got[1]
    if type(entry) == 'table' and type(entry[2]) == 'table' then
      table.insert(out, e[1])
      table.insert(out, entry[2][2])
      table.insert(out, e[4] + 1)
    end
  end
end
return out
"""

# Move unstarted Works of entries of stream KEYS[1] pending for consumer ARGV[2] to the
# end of stream KEYS[2], a new entry each (not counted as a delivery): ARGV[3..] holds
# pairs of an entry's id and the Works it gives (packed). KEYS[2] is KEYS[1] to hand
# them back, a host's own partition to hand them to its owner. The entries stay
# pending: the coordinator acknowledges each once told what became of all its Works.
# Returns, for each pair, 1 if it moved (the entry was still this consumer's), else 0.
_HANDBACK = """
local moved = {}
for i = 3, #ARGV, 2 do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1, ARGV[2])
  if p[1] then
    redis.call('XADD', KEYS[2], '*', 'w', ARGV[i + 1])
    moved[#moved + 1] = 1
  else
    moved[#moved + 1] = 0
  end
end
return moved
"""


# The rate gate of a host over all workers (GCRA, times from Redis TIME): KEYS[1]
# holds the host's theoretical arrival time (ms); ARGV[1] the interval (ms, 1/rate),
# ARGV[2] how early a request may come (ms). Returns "0" (go) or the ms to wait.
RATE_GATE = """
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local interval = tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local wait = tat - tonumber(ARGV[2]) - now
if wait > 0 then return tostring(wait) end
redis.call('SET', KEYS[1], tostring(tat + interval), 'PX', math.ceil(tat + interval - now) + 1000)
return '0'
"""


class _GatedClient(Client):
    """A Client whose first attempt at a host with a pace (``--rate``, a rule's, a
    Crawl-delay, a learned rate) also passes the host's rate gate in Redis: the guard
    for the moments two workers may both send to it (a hand-over after a lease ran out,
    a new epoch). The owner's own scheduler paces it as without Redis.

    ``send`` is no coroutine of its own but returns the request's: each frame in the
    chain of a request costs on every resumption of it (each part of a response that
    comes), and most hosts have no pace."""

    #: The pace of a host (requests/s), None or 0 if it has none.
    pace_of: Callable[[str], float | None] | None = None
    #: Waits until the gate of a host (with a pace) lets a request go.
    rate_gate: Callable[[str, float], Awaitable[None]] | None = None

    def send(
        self,
        method: str,
        target: URL,
        *,
        headers: Mapping[str, str] | None = None,
        data: bytes | str | None = None,
        gate: AttemptGate | None = None,
        gate_key: str | None = None,
        stop: asyncio.Event | None = None,
    ) -> Coroutine[Any, Any, Response]:
        request = super().send(
            method, target, headers=headers, data=data, gate=gate, gate_key=gate_key, stop=stop
        )
        if gate_key is None or self.pace_of is None or not (pace := self.pace_of(gate_key)):
            return request
        return self._gated(gate_key, pace, request)

    async def _gated(
        self, key: str, pace: float, request: Coroutine[Any, Any, Response]
    ) -> Response:
        try:
            if self.rate_gate is not None:
                await self.rate_gate(key, pace)
        except BaseException:
            request.close()  # never started
            raise
        return await request


def lost_record(item: Item, deliveries: int) -> Record:
    """The final record of a URL handed out ``deliveries`` times, beyond the limit."""
    error = WorkerLostError(
        f"handed to workers {deliveries - 1} times; each one stopped (died or lost its"
        " lease) before it sent a record"
    )
    return failure_record(item.url, error, meta=item.meta)


@dataclass
class WorkerTotals:
    """What one worker did, over all its sessions."""

    records: int = 0
    ok: int = 0
    reclaimed: int = 0
    lost: int = 0
    handed_back: int = 0
    sessions: int = 0


@dataclass(slots=True)
class _Lease:
    """A Work read from entry ``entry`` (of ``size`` Works) of partition ``partition``."""

    partition: int
    entry: str
    size: int
    n: int
    item: Item
    #: Deliveries of earlier entries of it that ended with their holders gone.
    tries: int = 0


@dataclass
class _Session:
    """One epoch of a job, for one worker."""

    redis: Redis
    keys: Keys
    name: str
    epoch: str
    config: Config
    partitions: int
    lease_ms: int
    deliveries: int
    stop: asyncio.Event
    totals: WorkerTotals
    #: Entries read and not yet recorded, by the URL their record will carry.
    held: dict[str, list[_Lease]] = field(default_factory=dict)
    #: Entries' Works held by partition.
    held_in: list[int] = field(init=False)
    count: int = 0
    owned: list[int] = field(default_factory=list)
    releasing: set[int] = field(default_factory=set)
    out: list[Done] = field(default_factory=list)
    #: The size of each record in ``out`` (by :func:`_size`).
    out_sizes: list[int] = field(default_factory=list)
    #: About the bytes of the records in ``out``; set when it holds an entry's worth.
    out_bytes: int = 0
    out_full: asyncio.Event = field(default_factory=asyncio.Event)
    #: Set while the record stream is full (then the next try waits ``_BEHIND``).
    behind: bool = False
    queue: asyncio.Queue[list[Item] | None] = field(default_factory=asyncio.Queue)
    room: asyncio.Event = field(default_factory=asyncio.Event)
    #: Why the session ends: "" (asked to stop or the job stopped), "epoch", "lost".
    ended: str = ""
    #: Shared hosts that pushed back here, to tell: key -> "pause too_many" (see
    #: :meth:`throttled`).
    pushed: dict[str, str] = field(default_factory=dict)
    #: Hosts alone (one owner): True where this worker owns it, False where another.
    alone: dict[str, bool] = field(default_factory=dict)
    #: Entries held here of hosts another worker owns: to move to that one's partition.
    moving: list[tuple[_Lease, int]] = field(default_factory=list)
    #: URLs this session reclaimed from workers gone, and of them those it ended as
    #: worker_lost (told to the coordinator on each heartbeat).
    reclaimed: int = 0
    lost: int = 0

    def __post_init__(self) -> None:
        self.held_in = [0] * self.partitions
        self.credit = worker_credit(self.config.limits["concurrency"])
        # Read once half the credit is free (not for every record that frees one):
        # there is still a fetch each in hand then, and each read costs a round trip.
        self.read_least = max(1, self.credit // 2)
        self.heartbeat = self.redis.register_script(_HEARTBEAT)
        self.release_script = self.redis.register_script(_RELEASE)
        self.reclaim = self.redis.register_script(_RECLAIM)
        self.handback = self.redis.register_script(_HANDBACK)
        self.read_script = self.redis.register_script(_READ)
        self.send_script = self.redis.register_script(_SEND)
        self.rate_gate = self.redis.register_script(RATE_GATE)
        self.errors = redis_errors(replies=True)
        self.sched: Scheduler[tuple[Item, URL]] | None = None

    # -- leases -------------------------------------------------------------------

    async def beat(self) -> bool:
        """One heartbeat; False once the session is over for the job's sake."""
        keys = self.keys
        reply = await self.heartbeat(
            keys=[keys.meta, keys.workers, keys.owners, keys.stats],
            args=[
                self.name, self.epoch, self.lease_ms, self.partitions,
                f"{self.reclaimed} {self.lost}",
            ],
        )  # fmt: skip
        if reply[0] == -1:
            self.ended = "epoch"
            return False
        fair, state = int(reply[0]), reply[1]
        owned = sorted(int(p) for p in reply[2:])
        if state != b"running":
            self.owned = owned
            return False
        # Beyond the fair share: stop reading the extra partitions; release each once
        # nothing read from it is left unrecorded here.
        # The least busy go first: a partition with nothing in hand moves at no cost.
        extra = len(owned) - fair
        keep = sorted((p for p in owned if p not in self.releasing), key=self.held_in.__getitem__)
        while extra > len(self.releasing) and keep:
            self.releasing.add(keep.pop(0))
        for p in sorted(self.releasing):
            if not self.held_in[p] and await self.release(p, leaving=False):
                self.releasing.discard(p)
                owned.remove(p)
        self.owned = owned
        await self.renew_entries()
        if self.config.share > 1:
            await self.tell_pushed()
            alone: dict[Any, Any] = await self.redis.hgetall(keys.alone)  # bytes: bytes
            self.settle(alone)
        return True

    # -- shared hosts (config.share > 1) -------------------------------------------

    def throttled(self, key: str, pause: float, too_many: bool) -> None:
        """The scheduler's word that shared host ``key`` pushed back here first: the
        seconds of its Retry-After left, and whether it was a 429 (for its owner)."""
        self.pushed[key] = f"{pause:.3f} {int(too_many)}"

    async def tell_pushed(self) -> None:
        if self.pushed:
            pushed, self.pushed = self.pushed, {}
            await self.redis.hset(self.keys.alone, mapping={k: v for k, v in pushed.items()})

    def settle(self, alone: dict[bytes, bytes]) -> None:
        """Each host alone is this worker's if it owns the host's own partition (and
        reads it); otherwise what is queued of it here moves to that partition. The
        owner pauses it as it asked and, after a 429, learns its rate."""
        sched = self.sched
        assert sched is not None
        for raw, said in alone.items():
            key = raw.decode()
            base = partition_of(key, self.partitions)
            mine = base in self.owned and base not in self.releasing
            if self.alone.get(key) is mine:
                continue
            self.alone[key] = mine
            if mine:
                host = sched.hosts.get(key)
                if host is not None:
                    host.away = False  # an earlier owner's again
                pause, too_many = _pushed_back(said)
                sched.own(key, pause, too_many=too_many)
            else:
                queued, _allowed = sched.disown(key)
                for work in queued:
                    self.away(key, work)

    def away(self, key: str, work: tuple[Item, URL]) -> None:
        """Work for a host another worker owns: its entry moves to the host's partition."""
        item = work[0]
        for lease in self.held.get(shown_url(item.url), ()):
            if lease.item is item:
                self.moving.append((lease, partition_of(key, self.partitions)))
                return

    async def move(self) -> None:
        """Move the entries of hosts owned elsewhere to their hosts' partitions."""
        if not self.moving:
            return
        moving, self.moving = self.moving, []
        by_streams: dict[tuple[int, int], list[_Lease]] = {}
        for lease, target in moving:
            by_streams.setdefault((lease.partition, target), []).append(lease)
        for (source, target), leases in by_streams.items():
            await self.hand_over(source, target, leases)

    async def hand_over(
        self, source: int, target: int, leases: list[_Lease], *, died: int | None = None
    ) -> int:
        """Move the Works of ``leases`` (of partition ``source``, unstarted) to new
        entries of partition ``target``, and tell the coordinator (records of None);
        returns how many moved. Leases of entries no longer this worker's (reclaimed by
        another owner) are only forgotten.

        The Works of one entry go to one new entry; with ``died`` (the deliveries of
        their entry that ended with no record, its holders gone), each to its own,
        that many tries more: one of them that makes workers die is then delivered
        alone, and the others are not counted with it."""
        groups: list[list[_Lease]] = []
        if died is None:
            by_entry: dict[str, list[_Lease]] = {}
            for lease in leases:
                by_entry.setdefault(lease.entry, []).append(lease)
            groups = list(by_entry.values())
        else:
            groups = [[lease] for lease in leases]
        more = died or 0
        args: list[Any] = [GROUP, self.name]
        for group in groups:
            works = [Work(lease.n, wire_item(lease.item), lease.tries + more) for lease in group]
            args += (group[0].entry, encode(works))
        queue = self.keys.queue
        flags = await self.handback(keys=[queue(source), queue(target)], args=args)
        count = 0
        for held, moved in zip(groups, flags, strict=True):
            for lease in held:
                self.let_go(lease)
                if moved:
                    self.add_out(Done(lease.partition, lease.entry, lease.n, lease.size, None))
                    count += 1
        return count

    def let_go(self, lease: _Lease) -> None:
        """Forget a lease that this worker will send no record for."""
        url = shown_url(lease.item.url)
        leases = self.held.get(url, [])
        for i, held in enumerate(leases):
            if held is lease:
                del leases[i]
                break
        if not leases:
            self.held.pop(url, None)
        self.held_in[lease.partition] -= 1
        self.count -= 1
        if self.credit - self.count >= self.read_least:
            self.room.set()

    async def renew_entries(self) -> None:
        """Reset the idle time of every entry held here (XCLAIM to itself, JUSTID: no
        delivery counted), so that no one reclaims what is being fetched."""
        owned = set(self.owned)
        by_partition: dict[int, set[str]] = {}
        for leases in self.held.values():
            for lease in leases:
                if lease.partition in owned:  # another owner may have reclaimed the rest
                    by_partition.setdefault(lease.partition, set()).add(lease.entry)
        if not by_partition:
            return
        pipe = self.redis.pipeline(transaction=False)
        for p, entries in by_partition.items():
            pipe.xclaim(self.keys.queue(p), GROUP, self.name, 0, list(entries), justid=True)
        await pipe.execute()

    async def keep_leases(self) -> None:
        # At least every second: a stop or a new epoch is seen within about one.
        every = min(1.0, self.lease_ms / 1000 / 4)
        while not self.stop.is_set():
            if not await self.beat():
                self.stop.set()
                return
            await _sleep_or(self.stop, every)

    # -- reading ------------------------------------------------------------------

    async def read(self) -> None:
        """Read the owned partitions' entries (reclaimed ones first) while there is
        credit; ends when the session stops."""
        loop = asyncio.get_running_loop()
        reclaim_due = 0.0
        turn = 0
        while not self.stop.is_set():
            active = [p for p in self.owned if p not in self.releasing]
            room = self.credit - self.count
            if not active or room < self.read_least:
                self.room.clear()
                await _sleep_or(self.stop, 0.05, self.room)
                continue
            if loop.time() >= reclaim_due:
                reclaim_due = loop.time() + self.lease_ms / 1000 / 2
                if await self.take_reclaimed(active, room):
                    continue
            turn = (turn + 1) % len(active)  # no partition always read first
            active = active[turn:] + active[:turn]
            batch = await self.read_now(active, room)
            if batch:
                self.queue.put_nowait(batch)

    async def read_now(self, active: list[int], room: int) -> list[Item]:
        """The Works of the entries there are now, ``room`` at most (one script call);
        if there are none, waits for one (a quarter of a second at most)."""
        queues = [self.keys.queue(p) for p in active]
        reply: list[Any] = await self.read_script(
            keys=[self.keys.meta, *queues],
            args=[
                GROUP,
                self.name,
                self.entries_for(room),
                self.epoch,
                *(self.held_in[p] for p in active),
            ],
        )
        if reply and reply[0] == -2:
            self.epoch_over()
            return []
        if reply and reply[0] == -1:
            await self.read_waiting(queues, reply[1:])
            return []
        batch: list[Item] = []
        for i in range(0, len(reply), 3):
            batch += self.hold(active[int(reply[i]) - 1], reply[i + 1].decode(), reply[i + 2])
        return batch

    def epoch_over(self) -> None:
        """A read found the job in another epoch: this session ends (what it has in
        flight finishes; its records are of an epoch gone, see ``_READ``)."""
        self.ended = "epoch"
        self.stop.set()

    async def read_waiting(self, queues: list[str], last: list[bytes]) -> None:
        """Wait until an entry comes after ``last`` (each stream's last entry id) in one
        of ``queues``, a quarter of a second at most. A plain read (not the group's):
        it takes no entry, so what a worker holds stays within its credit."""
        await self.redis.xread(dict(zip(queues, last, strict=True)), count=1, block=250)

    @staticmethod
    def entries_for(room: int) -> int:
        """Entries to read for ``room`` URLs: each holds up to ``PACK`` of them (the
        credit is at least twice that, so there is room for one at least)."""
        return max(1, room // PACK)

    async def take_reclaimed(self, active: list[int], room: int) -> bool:
        batch: list[Item] = []
        for p in active:
            reply = await self.reclaim(
                keys=[self.keys.meta, self.keys.queue(p)],
                args=[GROUP, self.name, self.lease_ms, self.entries_for(room), self.epoch],
            )
            if reply and reply[0] == -2:
                self.epoch_over()
                break
            for i in range(0, len(reply), 3):
                entry, payload, deliveries = reply[i].decode(), reply[i + 1], int(reply[i + 2])
                leases = self.hold_leases(p, entry, decode_works(payload))
                self.reclaimed += len(leases)
                self.totals.reclaimed += len(leases)
                rest = []
                for lease in leases:
                    if lease.tries + deliveries > self.deliveries:
                        self.lost += 1
                        self.totals.lost += 1
                        await self.emit(lost_record(lease.item, lease.tries + deliveries))
                    else:
                        rest.append(lease)
                if len(leases) > 1:  # each alone from now on (see hand_over)
                    await self.hand_over(p, p, rest, died=deliveries - 1)
                else:
                    batch += [lease.item for lease in rest]
        if batch:
            log.info("%s: reclaimed %d URLs of workers gone", self.name, len(batch))
            self.queue.put_nowait(batch)
        return bool(batch)

    def hold(self, partition: int, entry: str, payload: bytes) -> list[Item]:
        """The URLs of an entry read (see :meth:`hold_leases`)."""
        return [lease.item for lease in self.hold_leases(partition, entry, decode_works(payload))]

    def hold_leases(self, partition: int, entry: str, works: list[Work]) -> list[_Lease]:
        """The leases of the Works of an entry read: held here until their records are
        sent (or they move)."""
        size, held, leases = len(works), self.held, []
        for work in works:
            w = work.item
            lease = _Lease(
                partition,
                entry,
                size,
                work.n,
                Item(w.url, w.method, w.headers, w.data, w.meta),
                work.tries,
            )
            held.setdefault(shown_url(w.url), []).append(lease)
            leases.append(lease)
        self.held_in[partition] += size
        self.count += size
        return leases

    async def source(self) -> AsyncIterator[list[Item]]:
        while (batch := await self.queue.get()) is not None:
            yield batch

    # -- records ------------------------------------------------------------------

    async def emit(self, record: Record) -> None:
        leases = self.held.get(record.url)
        if not leases:  # not ours (cannot happen): nothing to acknowledge
            log.error("%s: a record for %s that no entry asked for", self.name, record.url)
            return
        lease = leases.pop(0)
        if not leases:
            del self.held[record.url]
        self.held_in[lease.partition] -= 1
        self.count -= 1
        if self.credit - self.count >= self.read_least and not self.room.is_set():
            self.room.set()
        totals = self.totals
        totals.records += 1
        totals.ok += record.ok
        # Sent by linger(): a Redis error there ends the session, not the engine.
        self.add_out(Done(lease.partition, lease.entry, lease.n, lease.size, record))

    def add_out(self, done: Done) -> None:
        out = self.out
        out.append(done)
        size = _size(done.record)
        self.out_sizes.append(size)
        self.out_bytes += size
        # A call's worth (or the linger) sends them: an await per entry costs more.
        if self.out_bytes >= _SEND_ENTRIES * _SEND_BYTES or len(out) >= _SEND_BATCH:
            self.out_full.set()

    async def send(self, *, most: int = _OUT_ENTRIES) -> None:
        """Send the records in ``out``, in entries of ``_SEND_BYTES`` at most, while the
        record stream holds fewer than ``most`` entries (0: whatever it holds)."""
        self.out_full.clear()
        out, sizes = self.out, self.out_sizes
        self.behind = False
        while out and not self.behind:
            entries: list[bytes] = []
            ends: list[tuple[int, int]] = []  # (records, bytes) up to each entry's end
            start = total = 0
            while start < len(out) and len(entries) < _SEND_ENTRIES:
                end, size = start, 0
                while end < len(out) and end - start < _SEND_BATCH and size < _SEND_BYTES:
                    size += sizes[end]
                    end += 1
                entries.append(encode(Results(self.epoch, self.name, out[start:end])))
                total += size
                ends.append((end, total))
                start = end
            added = int(await self.send_script(keys=[self.keys.out], args=[most, *entries]))
            if added:
                sent, size = ends[added - 1]
                del out[:sent], sizes[:sent]
                self.out_bytes -= size
            self.behind = added < len(entries)  # the coordinator is behind: the rest waits
        if not out:
            self.out_bytes = 0

    async def linger(self) -> None:
        # Ends with the session, never cancelled: a Redis command cancelled half way
        # through (redis-py) can leave the worker stuck; the last records go after it.
        while not self.stop.is_set():
            if self.behind:
                await _sleep_or(self.stop, _BEHIND)
            else:
                await _sleep_or(self.stop, _LINGER, self.out_full)
            await self.send()
            await self.move()

    async def give_back(self) -> None:
        """The URLs held here and not started back to their streams, in new entries."""
        by_partition: dict[int, list[_Lease]] = {}
        for leases in self.held.values():
            for lease in leases:
                by_partition.setdefault(lease.partition, []).append(lease)
        for p, leases in by_partition.items():
            self.totals.handed_back += await self.hand_over(p, p, leases)

    async def leave(self) -> None:
        """Release the partitions and leave the live workers (their fair shares grow
        at once, instead of after a lease)."""
        for p in self.owned:
            await self.release(p, leaving=True)
        await self.redis.zrem(self.keys.workers, self.name)

    async def release(self, partition: int, *, leaving: bool) -> bool:
        """Give up ``partition``: while working, once nothing read from it is pending
        here (see ``_RELEASE``); when ``leaving``, at once."""
        keys = self.keys
        return bool(
            await self.release_script(
                keys=[keys.owners, keys.queue(partition)],
                args=[self.name, partition, "leaving" if leaving else "", GROUP],
            )
        )

    # -- the whole session --------------------------------------------------------

    async def run(self) -> None:
        config = self.config
        client = client_from(config, _GatedClient)
        bodies = BodyStore(config.bodies) if config.bodies else None
        policy = config.politeness
        sched: Scheduler[tuple[Item, URL]] = Scheduler(
            policy, policy.per_host or client.limits.per_host, share=config.share
        )
        sched.on_throttled = self.throttled
        sched.on_away = self.away
        self.sched = sched
        assert isinstance(client, _GatedClient)
        client.pace_of = self.pace_of
        client.rate_gate = self.pass_rate_gate
        errors = redis_errors()
        async with client, asyncio.TaskGroup() as tg:
            leases = tg.create_task(self.guard(self.keep_leases()))
            reader = tg.create_task(self.guard(self.read()))
            ticker = tg.create_task(self.guard(self.linger()))
            tg.create_task(_finish_source(self.stop, self.queue))
            await run(
                client,
                ItemBatches(self.source()),
                self.emit,
                store_body=config.store_body and bodies is None,
                dedupe=False,
                stop=self.stop,
                bodies=bodies,
                stats=Stats(),
                politeness=policy,
                robots=config.robots,
                scheduler=sched,
            )
            await asyncio.wait((leases, reader, ticker))
            if self.ended != "lost":
                try:
                    await self.send(most=0)  # the last ones, whether read or not
                    if self.ended != "epoch":  # else its streams are gone
                        await self.give_back()
                        await self.send(most=0)  # what moved, for the coordinator
                    await self.leave()
                except errors as exc:
                    log.warning("%s: Redis lost while finishing: %s", self.name, exc)

    def pace_of(self, key: str) -> float | None:
        """The pace of host ``key`` (requests/s) by its scheduler, if it has one."""
        host = self.sched.hosts.get(key) if self.sched is not None else None
        return host.pace if host is not None else None

    async def pass_rate_gate(self, key: str, pace: float) -> None:
        """Wait until host ``key``'s rate gate in Redis lets a request go at ``pace``
        requests/s. Redis trouble lets it go: the owner's pace still holds, and the
        session ends through its other tasks."""
        interval = 1000.0 / pace
        gate_key = self.keys.rate(key)
        for _ in range(100):  # bounded: the gate is fair, this is a guard
            try:
                wait = float(await self.rate_gate(keys=[gate_key], args=[interval, interval]))
            except self.errors:
                return
            if wait <= 0 or self.stop.is_set():
                return
            await asyncio.sleep(wait / 1000)

    async def guard(self, job: Any) -> None:
        """Run a session task; Redis gone ends the session instead of the worker."""
        try:
            await job
        except redis_errors(replies=True) as exc:
            if not self.ended:
                self.ended = "lost"
                log.warning("%s: Redis lost: %s", self.name, exc)
            self.stop.set()


def _pushed_back(said: bytes) -> tuple[float, bool]:
    """A value of the ``alone`` hash: the seconds of Retry-After left when it was told
    and whether it was a 429. Its first owner reads it a heartbeat later; a later one
    (the partition moved) pauses the host once more for at most that long, the cost of
    a value without a clock. One the coordinator rebuilt after Redis was lost says
    neither (a pause long over by then)."""
    pause, _, too_many = said.decode().partition(" ")
    try:
        return float(pause), too_many == "1"
    except ValueError:
        return 0.0, False


def _size(record: Record | None) -> int:
    """About the bytes ``record`` takes in an entry of the record stream."""
    if record is None:
        return 64
    body, b64 = record.body, record.body_b64
    return (
        256
        + len(record.url)
        + (len(body) if isinstance(body, str) else 0)
        + (len(b64) if isinstance(b64, str) else 0)
    )


async def _finish_source(stop: asyncio.Event, queue: asyncio.Queue[list[Item] | None]) -> None:
    await stop.wait()
    queue.put_nowait(None)


async def _sleep_or(stop: asyncio.Event, seconds: float, also: asyncio.Event | None = None) -> None:
    """Sleep ``seconds``, or less if ``stop`` (or ``also``) is set meanwhile."""
    waits = [asyncio.ensure_future(stop.wait())]
    if also is not None:
        waits.append(asyncio.ensure_future(also.wait()))
    try:
        await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()


def worker_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(2)}"


# While it waits for a job: say this worker is there (for 3 s), so that the first
# heartbeats of a new job already share its partitions out among all its workers.
_PRESENT = """
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now + 3000, ARGV[1])
"""


async def _job_meta(
    redis: Redis, keys: Keys, name: str, stop: asyncio.Event, *, joined: bool
) -> dict[bytes, bytes] | None:
    """The job's meta once it runs (None if the worker is stopped, or if it has
    ``joined`` the job and the job is done: a worker that has not waits for the next
    run); meanwhile the worker is present as ``name``."""
    errors = redis_errors()
    present = redis.register_script(_PRESENT)
    pause = _POLL
    while not stop.is_set():
        try:
            await present(keys=[keys.workers], args=[name])
            meta: dict[Any, Any] = await redis.hgetall(keys.meta)
            pause = _POLL
        except errors as exc:
            log.warning("Redis unreachable (%s); trying again", exc)
            meta = {}
            pause = min(2 * pause, 5.0)
        state = meta.get(b"state")
        if state == b"done" and joined:
            return None
        if state == b"running" and b"config" in meta:
            return meta
        await _sleep_or(stop, pause)
    return None


async def work(url: str, job: str, stop: asyncio.Event, totals: WorkerTotals) -> None:
    """Fetch for job ``job`` until it is done or ``stop`` is set. Raises
    :class:`~surefetch.distributed.RedisUnavailable` if Redis cannot be reached at
    the start."""
    redis = await connect(url)
    keys = Keys(job)
    name = worker_name()
    try:
        # A name per session: what an earlier one left pending is reclaimed.
        while meta := await _job_meta(
            redis, keys, f"{name}-{totals.sessions + 1}", stop, joined=totals.sessions > 0
        ):
            totals.sessions += 1
            session = _Session(
                redis,
                keys,
                f"{name}-{totals.sessions}",
                meta[b"epoch"].decode(),
                decode_config(meta[b"config"]),
                int(meta[b"partitions"]),
                int(meta[b"lease_ms"]),
                int(meta[b"deliveries"]),
                asyncio.Event(),
                totals,
            )
            log.info("%s: joined job %s (epoch %s)", name, job, session.epoch)
            await _session_until(session, stop)
    finally:
        await redis.aclose()


async def _session_until(session: _Session, stop: asyncio.Event) -> None:
    """Run ``session`` until it ends or ``stop`` is set (then it ends gracefully)."""
    async with asyncio.TaskGroup() as tg:
        relay = tg.create_task(_relay(stop, session.stop))
        status = tg.create_task(_status_lines(session))
        await session.run()
        relay.cancel()
        status.cancel()
    if session.ended == "lost":
        await asyncio.sleep(0.5)  # then look for the job again


async def _status_lines(session: _Session) -> None:
    """What the worker does, every ``_STATUS_EVERY`` s (logged at info)."""
    totals = session.totals
    last, loop = totals.records, asyncio.get_running_loop()
    since = loop.time()
    while True:
        await asyncio.sleep(_STATUS_EVERY)
        now, records = loop.time(), totals.records
        log.info(
            "%s: %d records (%.0f/s), %d URLs in hand, %d partitions, %d reclaimed",
            session.name,
            records,
            (records - last) / (now - since),
            session.count,
            len(session.owned),
            totals.reclaimed,
        )
        last, since = records, now


async def _relay(source: asyncio.Event, target: asyncio.Event) -> None:
    await source.wait()
    target.set()
