"""Per-host politeness: rate limits, adaptive concurrency, Retry-After pauses, retry
budgets and circuit breakers.

Everything here is bookkeeping with an injectable clock and no I/O, so it is tested
without a network; the engine asks it which host may send next and tells it how every
attempt went.

- **Rate** (``rate``): requests to a host are never closer than ``1 / rate`` seconds
  (GCRA, a token bucket of one token): at most ``rate`` in any second. Retries take
  their turn too, after the host's pause if it asked for one.
- **Adaptive concurrency** (slow start then AIMD, as TCP does): a host starts at
  a sixteenth of its per-host limit in flight (``start_limit`` at least); until its
  first sign of overload every healthy response adds one (the limit doubles per
  round of responses; beyond ``_FAST_FROM`` per ``_FAST_ROUND`` at most, so that a
  host answering in a millisecond meets its rate limit with few requests in
  flight), after it ``1 / limit`` (one more per round), up to ``per_host``. A 429 or
  503 or a connect timeout halves it (at most once per ``cut_every`` seconds, so one
  burst of failures counts once). A round of responses slower than
  ``latency_factor`` times the host's no-load latency, without more answers per
  second, cuts it to the concurrency those answers need at the no-load latency
  (Little's law, ``_HEADROOM`` over it), by half at the most; unless the scheduler's
  thread ran or waited for a core ``_CLIENT_BOUND`` of that round (the answers waited
  for this client), when the limit only stops growing. The round after such a cut
  judges it: as slow at the lower limit (``_UNMOVED``), the latency was not of our
  load, and the cut is undone. A round's answers per second are counted over a
  round trip at least (a burst that slow start sent comes back within a millisecond
  or two).
- **Latency, like with like**: latencies are compared as means over rounds of at
  least ``_ROUND`` responses (and at least ``limit``), so a host whose endpoints
  differ in speed (a fast 404 among slow pages) shows the same mean at the same load.
  The no-load latency is the fastest round's mean, with the concurrency it ran at. A
  round slower than that at no more concurrency cannot be our doing: it becomes the
  no-load latency instead of a cut, so a host that is slow but steady is never held
  down for it.
- **Learned rate**: at a 429 the host has just allowed its limit (a sliding-window
  limit allows exactly that many in any second), so the answers it allowed in the
  last second are its rate: the host is paced ``_MARGIN`` under that at once. After
  ``_HOLD`` seconds at that rate it probes upwards, slowly near the rate found and
  faster beyond it (as TCP CUBIC does), so a limit that rose is found again; a limit
  that dropped is followed at its next 429. A 429 at the learned rate with about all
  of it allowed is a blip (a stall of the host), once per ``_BLIP_EVERY``.
- **One owner per host** (``share`` > 1, ``--workers N``): a host without a rate is
  shared by the processes until it pushes back, then owned by one (see
  :class:`Scheduler`).
- **Retry-After** on a 429/503 pauses new requests to the host, not only the one URL.
- **Retry budget**: retries to a host may add at most ``retry_budget`` (20 %) to the
  first attempts sent to it, plus a small floor (``retry_floor``); the requests in
  flight at the host's first 429 may each be retried once besides.
- **Circuit breaker**: ``breaker_after`` connect-level failures in a row (refused, DNS,
  connect timeout or error) open the host's circuit: its URLs wait, one probe goes
  after ``cooldown`` seconds (doubling while it fails, up to ``cooldown_max``). A host
  down for ``host_down_after`` seconds is given up: its URLs get ``host_unavailable``
  records at once.
"""

from __future__ import annotations

import fnmatch
import heapq
import math
import re
import time
import tomllib
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

__all__ = [
    "CONNECT_KINDS",
    "HostRule",
    "Politeness",
    "Scheduler",
    "Throttle",
    "load_host_rules",
    "parse_rate",
]

T = TypeVar("T")

#: Failures that say the host cannot be reached at all.
CONNECT_KINDS = frozenset({"connect_refused", "dns_error", "connect_timeout", "connect_error"})
#: Outcomes that say "slow down".
_OVERLOAD_STATUSES = frozenset({429, 503})
_OVERLOAD_KINDS = frozenset({"connect_timeout"})

#: Responses per latency round (at least; a round is also at least ``limit`` long).
_ROUND = 8
#: A round slower than the no-load latency is still not overload while it brings this
#: much more answers per second than the best round before it: the host keeps up.
_GAIN = 1.2

#: After a slow round the limit keeps this much more than the concurrency that the
#: round's answers per second need at the no-load latency (Little's law).
_HEADROOM = 1.25

#: A slow round during which the scheduler's thread ran, or waited for a core, this
#: share of the time was slowed by this client, not by the host: no cut.
_CLIENT_BOUND = 0.9
#: How often the scheduler reads its thread's busy time at most, in seconds.
_BUSY_EVERY = 0.01

#: The first round after a slow round's cut with about that round's latency (no less
#: than this share of it, no more than its inverse) shows that the latency did not
#: come from our load: the cut is undone.
_UNMOVED = 0.9

#: The scheduling counters of the calling thread (Linux): ns run, ns waited for a core.
_SCHEDSTAT = "/proc/thread-self/schedstat"
_has_schedstat = True


def thread_busy() -> float:
    """Seconds the calling thread has run or waited to run (waiting for a core is
    being short of CPU too: other processes, or the servers on the same machine, had
    it); where Linux does not tell, the seconds it ran."""
    global _has_schedstat
    if _has_schedstat:
        try:
            with open(_SCHEDSTAT, "rb") as stats:
                ran, waited = stats.read().split()[:2]
            return (int(ran) + int(waited)) / 1e9
        except (OSError, ValueError):
            _has_schedstat = False
    return time.thread_time()


_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*(s|sec|second|m|min|minute)\s*$", re.IGNORECASE)


def parse_rate(text: str) -> float:
    """``"20/s"`` -> 20.0, ``"30/m"`` -> 0.5 (requests per second)."""
    match = _RATE.match(text)
    if not match or float(match.group(1)) <= 0:
        raise ValueError(f"not a rate: {text!r} (try 20/s or 30/m)")
    per = 60.0 if match.group(2).lower().startswith("m") else 1.0
    return float(match.group(1)) / per


@dataclass(frozen=True, slots=True)
class HostRule:
    """Overrides for hosts whose name matches ``match`` (a shell pattern)."""

    match: str
    rate: float | None = None
    per_host: int | None = None
    headers: Mapping[str, str] | None = None
    #: The proxy URL for these hosts, or "direct" (the client's to use: surefetch.Proxies).
    proxy: str | None = None


def load_host_rules(path: str) -> tuple[HostRule, ...]:
    """Read ``--hosts FILE``: TOML with ``[[host]]`` tables (match, rate, per_host,
    headers, proxy). Raises ValueError naming what is wrong."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path} is not valid TOML: {exc}") from None
    rules = []
    for n, table in enumerate(data.get("host", []), 1):
        where = f"{path}: [[host]] number {n}"
        if not isinstance(table, dict) or not isinstance(table.get("match"), str):
            raise ValueError(f'{where} needs match = "pattern"')
        unknown = set(table) - {"match", "rate", "per_host", "headers", "proxy"}
        if unknown:
            raise ValueError(f"{where}: unknown key {sorted(unknown)[0]!r}")
        rate = table.get("rate")
        per_host = table.get("per_host")
        headers = table.get("headers")
        proxy = table.get("proxy")
        if proxy is not None and not isinstance(proxy, str):
            raise ValueError(f'{where}: proxy must be a URL or "direct"')
        if per_host is not None and (not isinstance(per_host, int) or per_host < 1):
            raise ValueError(f"{where}: per_host must be a whole number >= 1")
        if headers is not None and not (
            isinstance(headers, dict) and all(isinstance(v, str) for v in headers.values())
        ):
            raise ValueError(f"{where}: headers must map names to strings")
        try:
            parsed_rate = parse_rate(str(rate)) if rate is not None else None
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
        rules.append(HostRule(table["match"].lower(), parsed_rate, per_host, headers, proxy))
    if set(data) - {"host"}:
        raise ValueError(f"{path}: unknown table {sorted(set(data) - {'host'})[0]!r}")
    return tuple(rules)


@dataclass(frozen=True, slots=True)
class Politeness:
    """The politeness settings; see the module docstring for what each does."""

    rate: float | None = None
    #: Per-host concurrency for hosts without a rule (None: ``Limits.per_host``).
    per_host: int | None = None
    adaptive: bool = True
    start_limit: int = 2
    latency_factor: float = 1.5
    cut_every: float = 1.0
    retry_budget: float = 0.2
    retry_floor: int = 10
    breaker_after: int = 5
    cooldown: float = 2.0
    cooldown_max: float = 60.0
    host_down_after: float = 300.0
    retry_after_max: float = 120.0
    rules: tuple[HostRule, ...] = ()

    def __post_init__(self) -> None:
        if self.rate is not None and self.rate <= 0:
            raise ValueError(f"rate must be positive, got {self.rate}")
        if self.retry_budget < 0:
            raise ValueError(f"retry budget must be >= 0, got {self.retry_budget}")
        if self.breaker_after < 1:
            raise ValueError(f"breaker_after must be >= 1, got {self.breaker_after}")
        if self.host_down_after <= 0 or self.cooldown <= 0:
            raise ValueError("host_down_after and cooldown must be positive")

    def for_host(
        self, key: str, name: str, per_host: int
    ) -> tuple[int, float | None, HostRule | None]:
        """The per-host limit, the rate and the rule (the first that matches) of the host
        ``name`` (``key`` is ``name:port``), given the per-host limit of hosts without
        a rule."""
        rate = self.rate
        lowered, port_key = name.lower(), key.lower()
        for rule in self.rules:  # the first match wins
            # "example.com:8080" (or "*:8443") names the port too.
            if fnmatch.fnmatchcase(lowered, rule.match) or fnmatch.fnmatchcase(
                port_key, rule.match
            ):
                return (
                    rule.per_host or per_host,
                    rule.rate if rule.rate is not None else rate,
                    rule,
                )
        return per_host, rate, None

    def alone(self, key: str, name: str, per_host: int, share: int) -> bool:
        """Whether the host must be fetched by one of ``share`` processes from the start:
        it has a rate, or a per-host limit that cannot be shared out."""
        if share <= 1:
            return True
        limit, rate, _ = self.for_host(key, name, per_host)
        return rate is not None or limit < share


@dataclass(slots=True)
class Throttle:
    """A host that told us to slow down (a 429 or a 503), as the summary shows it."""

    #: Requests per second it is paced at now (learned or set), None if not paced.
    rate: float | None = None
    #: Its 429 (Too Many Requests) and 503 (Service Unavailable) answers.
    too_many: int = 0
    unavailable: int = 0


#: Answers are counted per quarter second, to know those of the last second.
_QUARTER = 0.25
#: A host starts at this share of its per-host limit (``start_limit`` at least): slow
#: start doubles once per round trip, and from 2 a host at 50 ms allowed 512 takes 8
#: of them (0.4 s) to get there, from 32 only 4.
_START_SHARE = 16
#: Slow start doubles the limit at most once per this many seconds, from this limit.
_FAST_ROUND = 0.010
_FAST_FROM = 8
#: A learned rate stays this far under the rate at which the host said "too many"...
_MARGIN = 0.08
#: ...for this long (seconds of sending at that rate) before it probes upwards again,
#: growing by (t / _GROWTH)² of itself: slowly near the limit it found, faster beyond
#: it (as TCP CUBIC does), so that a limit that rose is found again.
_HOLD = 30.0
_GROWTH = 30.0
#: A 429 at the learned rate, with the host having allowed about all of it, is taken
#: for a blip (not a lower limit) at most once in this many seconds.
_BLIP_EVERY = 10.0
#: For this long after a host becomes ours, what the other processes still had of it
#: reaches it outside our pace (their requests in flight, and the retries of those
#: that got a 429, after its Retry-After): a 429 then, with the host having allowed
#: all but ``_MARGIN`` of the rate learned, is theirs, not a lower limit.
_HANDOVER_S = 3.0
#: A learned rate allows bursts of this many seconds of requests: the event loop's
#: timers fire a millisecond or so late, which alone would cost a host at 1,000/s a
#: fifth of its rate. (A set rate never bursts: 1/R apart, always.)
_BURST_S = 0.02


@dataclass(slots=True, eq=False)  # compared and hashed by identity
class _Host(Generic[T]):
    key: str
    name: str
    per_host: int
    rate: float | None
    headers: Mapping[str, str] | None
    limit: float
    #: The per-host limit when this process fetches the host alone.
    full_per_host: int = 0
    #: Other processes fetch this host too (each within its share of the limits).
    shared: bool = False
    #: Another process owns this host now: its work is handed back (``on_away``).
    away: bool = False
    #: The owner has been told that this host pushed back (or its circuit opened).
    reported: bool = False
    owned_at: float = -math.inf
    #: Owned after a 429: the rate it allows is learned from what every process was
    #: allowed (a 503 or an open circuit says nothing of a rate).
    owned_for_rate: bool = False
    #: Pacing (GCRA): requests go no earlier than ``tat - tolerance``, each moving
    #: ``tat`` (the theoretical arrival time) on by ``interval`` (1 / pace).
    pace: float | None = None
    interval: float = 0.0
    tolerance: float = 0.0
    tat: float = 0.0
    #: The rate the host tolerates, learned from its 429s (None: unknown); the rate at
    #: which it last said "too many", the learned rate set then, since when it grows.
    learned: float | None = None
    ceiling: float = 0.0
    base: float = 0.0
    probe_from: float = 0.0
    last_learn: float = -math.inf
    last_blip: float = -math.inf
    #: Answers the host allowed (not 429/503): in the quarter second from ``ok_start``,
    #: and in each of the four before it (``ok_1`` the latest).
    ok_start: float = 0.0
    ok_cur: int = 0
    ok_1: int = 0
    ok_2: int = 0
    ok_3: int = 0
    ok_4: int = 0
    throttle: Throttle | None = None
    queue: deque[T] = field(default_factory=deque)
    active: int = 0
    paused_until: float = 0.0
    #: Until the first sign of overload, each healthy answer adds a whole slot.
    slow_start: bool = True
    #: The latency round being measured (answers so far and due, their sum, the lowest
    #: limit it ran at); the no-load latency (a round's mean) and the limit it was
    #: measured at; answers still to skip (sent before the last cut, at the old limit).
    round_n: int = 0
    round_len: int = 0
    round_sum: float = 0.0
    round_limit: float = 0.0
    base_latency: float = math.inf
    base_limit: float = 0.0
    round_skip: int = 0
    #: When the round began, the most answers per second a round has had, and the
    #: answers per second and mean latency of the last round.
    round_started: float = 0.0
    best_rate: float = 0.0
    round_rate: float = 0.0
    round_mean: float = 0.0
    #: After a slow round's cut: the limit before it (0: none to judge yet).
    cut_from: float = 0.0
    #: The scheduler's busy time (see :func:`thread_busy`) and clock when it began.
    round_busy: float = 0.0
    round_busy_at: float = 0.0
    #: The last round was slow: the limit does not grow until one is not.
    congested: bool = False
    last_cut: float = -math.inf
    sent: int = 0
    retries: int = 0
    #: Retries that need no budget: those of the requests in flight at the first 429.
    grace: int = 0
    failures_in_row: int = 0
    open_until: float = 0.0
    cooldown: float = 0.0
    down_since: float | None = None
    probing: bool = False
    given_up: bool = False
    listed: bool = False  # in the eligible list, or waiting on a timer
    blocked: Any = None  # robots.txt gate: a value while not yet allowed to run


class Scheduler(Generic[T]):
    """Which queued work may be sent next, host by host.

    ``add`` queues work for a host; ``take`` returns the next work that may be sent
    now (or None), reserving a slot and a token; ``finished`` frees the slot and
    learns from the outcome; ``wake_in`` says when a timer (token, pause, cooldown)
    will make more work eligible. Hosts are only looked at when something about them
    changed, so the cost does not grow with the number of hosts.

    With ``share`` > 1 this is one of that many processes: a host without a rate is
    *shared* (every process may fetch it, each with ``per_host // share``) until it
    pushes back (a 429 or 503) or its circuit opens; then ``on_throttled`` tells the
    caller, which makes one process its owner (:meth:`own`) and the others hand its
    work over (:meth:`disown`). So each host's politeness is decided in one place.
    """

    def __init__(
        self,
        policy: Politeness,
        per_host: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        busy: Callable[[], float] = thread_busy,
        share: int = 1,
    ) -> None:
        self.policy = policy
        self.per_host = per_host
        self.clock = clock
        #: Seconds this thread has run or waited for a core, on ``clock``'s scale.
        self.busy = busy
        #: The last reading of ``busy`` and its time (see :meth:`_busy_sample`).
        self._busy_last = (-math.inf, 0.0)
        self.share = share
        self.hosts: dict[str, _Host[T]] = {}
        self.queued = 0
        self._eligible: deque[_Host[T]] = deque()
        self._down: set[_Host[T]] = set()
        self._timers: list[tuple[float, int, _Host[T]]] = []
        self._seq = 0
        #: Hosts that pushed back, by key, as the summary shows them, and the keys of
        #: those that changed (for whoever sends them on, and empties it).
        self.throttled: dict[str, Throttle] = {}
        self.throttle_dirty: set[str] = set()
        #: Called with (host name, work) for work given up because its host is down.
        self.on_given_up: Callable[[str, T], None] | None = None
        #: Called once per shared host, when it first pushes back or its circuit opens,
        #: with (key, seconds of its pause left, whether it said "too many" (a 429)).
        self.on_throttled: Callable[[str, float, bool], None] | None = None
        #: Called with (key, work) for work added for a host another process owns.
        self.on_away: Callable[[str, T], None] | None = None
        #: Called when :meth:`own` or :meth:`disown` changed what may be sent.
        self.on_change: Callable[[], None] | None = None

    # -- hosts -------------------------------------------------------------------

    def host(self, key: str, name: str) -> _Host[T]:
        host = self.hosts.get(key)
        if host is None:
            policy = self.policy
            per_host, rate, rule = policy.for_host(key, name, self.per_host)
            full = per_host
            shared = self.share > 1 and rate is None and per_host >= self.share
            if shared:
                per_host //= self.share
            start = per_host
            if policy.adaptive:
                start = min(per_host, max(policy.start_limit, per_host // _START_SHARE))
            host = _Host(
                key,
                name,
                per_host,
                rate,
                rule.headers if rule is not None else None,
                float(start),
                full_per_host=full,
                shared=shared,
            )
            host.ok_start = self.clock()
            self._set_pace(host)
            self.hosts[key] = host
        return host

    def headers(self, key: str) -> Mapping[str, str] | None:
        host = self.hosts.get(key)
        return host.headers if host is not None else None

    def block(self, key: str, name: str, reason: Any) -> None:
        """Hold the host's work until :meth:`unblock` (e.g. while robots.txt loads)."""
        self.host(key, name).blocked = reason

    def unblock(self, key: str, rate: float | None = None) -> None:
        host = self.hosts[key]
        host.blocked = None
        if rate is not None:
            host.rate = min(rate, host.rate) if host.rate else rate
            self._set_pace(host)
        self._list(host)

    def remove(self, key: str, unwanted: Callable[[T], bool]) -> list[T]:
        """Take the host's queued work that ``unwanted`` selects out of the queue."""
        host = self.hosts.get(key)
        if host is None:
            return []
        kept: deque[T] = deque()
        removed: list[T] = []
        for work in host.queue:
            (removed if unwanted(work) else kept).append(work)
        host.queue = kept
        self.queued -= len(removed)
        return removed

    def is_given_up(self, key: str) -> bool:
        host = self.hosts.get(key)
        return host is not None and host.given_up

    # -- owners (share > 1) --------------------------------------------------------

    def own(self, key: str, pause: float = 0.0, *, too_many: bool = False) -> None:
        """This process fetches host ``key`` alone from now on, with its full per-host
        limit; ``pause``: seconds of the Retry-After it sent elsewhere. If it said "too
        many" (a 429, ``too_many``) and is not paced yet, its rate is learned from what
        it allowed here in the last second; :meth:`seen_elsewhere` then adds what it
        allowed the other processes. After a 503 or an open circuit it goes on at its
        concurrency limit, as one process would (a 503 cuts that, and says nothing of
        a rate)."""
        host = self.host(key, _name(key))
        host.reported = True
        now = self.clock()
        if pause > 0:
            host.paused_until = max(host.paused_until, now + pause)
        if host.throttle is None:
            host.throttle = self.throttled[key] = Throttle()
        if host.shared:
            host.shared = False
            host.owned_at = now
            host.owned_for_rate = too_many
            host.per_host = host.full_per_host
            allowed = self._allowed(host, now)
            if too_many and host.learned is None and self.policy.adaptive and allowed >= 1.0:
                self._learn(host, allowed, now)
        self._set_pace(host)
        self._list(host)
        if self.on_change is not None:
            self.on_change()

    def seen_elsewhere(self, key: str, allowed: float) -> None:
        """Host ``key``, just made ours (:meth:`own`), allowed ``allowed`` requests to
        another process in the last second: add them to what it allows in all."""
        host = self.hosts.get(key)
        now = self.clock()
        if host is None or now - host.owned_at > 1.0 or allowed < 1.0:
            return
        host.ok_cur += round(allowed)  # so that the last second counts them
        if not self.policy.adaptive or not (host.owned_for_rate or host.learned is not None):
            return  # no rate to learn: a 503 or an open circuit made it ours
        if host.learned is None:
            self._learn(host, self._allowed(host, now), now)
        else:
            host.ceiling += allowed
            host.base = host.learned = (1.0 - _MARGIN) * host.ceiling
            self._set_pace(host)
        self._list(host)
        if self.on_change is not None:
            self.on_change()

    def disown(self, key: str) -> tuple[list[T], float]:
        """Another process owns host ``key`` from now on: its queued work is taken out,
        and work added later goes to ``on_away``; requests in flight (and their retries)
        finish here. Returns that work, and the requests the host allowed here in the
        last second (for the owner to learn its rate from)."""
        host = self.host(key, _name(key))
        host.away = host.reported = True
        queue, host.queue = host.queue, deque()
        self.queued -= len(queue)
        if host.throttle is not None:
            host.throttle.rate = None  # the owner's to tell
            self.throttle_dirty.add(key)
        if self.on_change is not None:
            self.on_change()
        return list(queue), self._allowed(host, self.clock())

    # -- work in -----------------------------------------------------------------

    def add(self, key: str, name: str, work: T) -> bool:
        """Queue ``work`` for its host. False (and nothing queued) if the host was
        given up: the caller records ``host_unavailable`` itself."""
        host = self.host(key, name)
        if host.given_up:
            return False
        if host.away:
            assert self.on_away is not None
            self.on_away(key, work)
            return True
        host.queue.append(work)
        self.queued += 1
        self._list(host)
        return True

    def _list(self, host: _Host[T]) -> None:
        if not host.listed and host.queue:
            host.listed = True
            self._eligible.append(host)

    # -- work out ----------------------------------------------------------------

    def take(self) -> tuple[_Host[T], T] | None:
        """The next work that may be sent now, with a slot and a token reserved."""
        now = self.clock()
        timers = self._timers
        while timers and timers[0][0] <= now:
            host = heapq.heappop(timers)[2]
            host.listed = False
            self._list(host)
        eligible = self._eligible
        while eligible:
            host = eligible[0]
            wait = self._wait(host, now)
            if wait is None:  # no free slot (or blocked): a finish will list it again
                eligible.popleft()
                host.listed = False
                continue
            if wait > 0:
                eligible.popleft()
                self._seq += 1
                heapq.heappush(timers, (now + wait, self._seq, host))
                continue
            work = host.queue.popleft()
            self.queued -= 1
            host.active += 1
            host.sent += 1
            if host.pace:
                tat = host.tat
                host.tat = (tat if tat > now else now) + host.interval
            if host.open_until:
                host.probing = True
            # Round-robin: the host goes to the back if it still has work.
            eligible.popleft()
            if host.queue:
                eligible.append(host)
            else:
                host.listed = False
            return host, work
        return None

    @property
    def held(self) -> int:
        """Work queued for hosts whose circuit is open (waiting out a cool-down)."""
        if not self._down:
            return 0
        return sum(len(host.queue) for host in self._down)

    def _wait(self, host: _Host[T], now: float) -> float | None:
        """0 if the host may send now; seconds until it may; None if only a finished
        request (or an unblock) can change that."""
        if not host.queue or host.blocked is not None:
            return None
        if host.open_until:
            if host.probing:
                return None  # one probe at a time while the circuit is open
            if now < host.open_until:
                return host.open_until - now
        elif host.active >= max(1, int(host.limit)):
            return None
        if now < host.paused_until:
            return host.paused_until - now
        if host.pace:
            wait = host.tat - host.tolerance - now
            if wait > 0:
                return wait
        return 0.0

    def wake_in(self) -> float | None:
        """Seconds until the earliest timer, or None if there is none."""
        if not self._timers:
            return None
        return max(0.0, self._timers[0][0] - self.clock())

    # -- learning from outcomes --------------------------------------------------

    def attempt_done(
        self,
        key: str,
        *,
        kind: str | None,
        status: int | None,
        latency: float,
        retry_after: float | None = None,
    ) -> None:
        """Learn from one attempt (first or retry) to the host ``key``."""
        host = self.hosts.get(key)
        if host is None:
            return
        now = self.clock()
        policy = self.policy
        if kind in CONNECT_KINDS:
            host.failures_in_row += 1
            if host.down_since is None:
                host.down_since = now
            if host.open_until or host.failures_in_row >= policy.breaker_after:
                self._open(host, now)
        else:
            if host.open_until:  # the probe got through: close the circuit
                host.open_until = 0.0
                host.cooldown = 0.0
                host.probing = False
                self._down.discard(host)
            host.failures_in_row = 0
            host.down_since = None
        if now - host.ok_start >= _QUARTER:
            self._tick(host, now)
        overloaded = status in _OVERLOAD_STATUSES
        if overloaded:
            if retry_after is not None:
                host.paused_until = max(
                    host.paused_until, now + min(retry_after, policy.retry_after_max)
                )
            self._pushed_back(host, status == 429, now)
        elif kind is None:
            host.ok_cur += 1
        if not policy.adaptive:
            return
        overloaded = overloaded or kind in _OVERLOAD_KINDS
        slow = kind is None and not overloaded and self._slow_round(host, latency, now)
        if overloaded or slow:
            host.slow_start = False
            # A slow round comes once a round trip at most; failures come in bursts.
            if slow or now - host.last_cut >= policy.cut_every:
                host.cut_from = host.limit if slow else 0.0
                host.limit = _cut(host, slow)
                host.last_cut = now
                host.round_n, host.round_sum = 0, 0.0
                host.round_skip = host.active  # their latency is of the old limit
        elif kind is None and not host.congested:
            # Slow start doubles the limit per round trip; beyond _FAST_FROM, per
            # _FAST_ROUND if that is longer: a host nearby answers in a millisecond,
            # and its rate limit must be met with few requests in flight.
            if host.slow_start:
                fast = latency < _FAST_ROUND and host.limit >= _FAST_FROM
                grow = latency / _FAST_ROUND if fast else 1.0
            else:
                grow = 1.0 / host.limit
            host.limit = min(float(host.per_host), host.limit + grow)

    def _pushed_back(self, host: _Host[T], too_many: bool, now: float) -> None:
        """A 429 (``too_many``) or 503: count it; after a 429 (once per ``cut_every``)
        learn the rate the host allows; tell the caller if the host is shared."""
        throttle = host.throttle
        if throttle is None:
            throttle = host.throttle = self.throttled[host.key] = Throttle(host.pace)
            if too_many:
                # Sent before the host could say so: each may be retried once, whatever
                # the budget (with --workers N one process may have sent few of them).
                host.grace = host.active
        if too_many:
            throttle.too_many += 1
        else:
            throttle.unavailable += 1
        self.throttle_dirty.add(host.key)
        if too_many and self.policy.adaptive and now - host.last_learn >= self.policy.cut_every:
            allowed = self._allowed(host, now)
            if allowed < 1.0:
                pass  # nothing allowed in the last second (we had paused): no rate to learn
            elif (
                host.learned is not None
                and allowed >= (1.0 - _MARGIN / 2) * host.learned
                and now - host.last_blip >= _BLIP_EVERY
            ):
                # It allowed about all we sent at the rate learned: a blip (the host
                # stalled, then counted a late batch together), not a lower limit. Once.
                host.last_blip = host.last_learn = now
            elif (
                host.learned is not None
                and now - host.owned_at <= _HANDOVER_S
                and allowed >= (1.0 - _MARGIN) * host.learned
            ):
                host.last_learn = now  # the others' leftovers, just after the hand-over
            else:
                self._learn(host, allowed, now)
        if host.shared and not host.reported:
            self._report(host, now)

    def _report(self, host: _Host[T], now: float) -> None:
        host.reported = True
        if self.on_throttled is not None:
            too_many = host.throttle is not None and host.throttle.too_many > 0
            self.on_throttled(host.key, max(0.0, host.paused_until - now), too_many)

    def _allowed(self, host: _Host[T], now: float) -> float:
        """The answers the host allowed in the last second (the current quarter, the
        three before it, and the part of the fourth that the last second covers)."""
        last = host.ok_1 + host.ok_2 + host.ok_3
        return host.ok_cur + last + host.ok_4 * max(0.0, 1.0 - (now - host.ok_start) / _QUARTER)

    def _learn(self, host: _Host[T], allowed: float, now: float) -> None:
        """The host said "too many" having allowed ``allowed`` requests in the last
        second: that is its rate (a sliding-window limit allows exactly that many); go
        on a little under it. One answer divides what was learned by four at most."""
        floor = host.learned / 4 if host.learned is not None else 0.0
        host.ceiling = max(allowed, floor)
        host.base = host.learned = (1.0 - _MARGIN) * host.ceiling
        host.last_learn = now
        host.probe_from = now + _HOLD
        self._set_pace(host)

    def _tick(self, host: _Host[T], now: float) -> None:
        """A quarter second of answers is over: start the next, and let a learned rate
        that the host's requests used in the last second probe upwards."""
        quarters = int((now - host.ok_start) / _QUARTER)
        h = host
        if quarters == 1:
            h.ok_1, h.ok_2, h.ok_3, h.ok_4 = h.ok_cur, h.ok_1, h.ok_2, h.ok_3
        elif quarters == 2:
            h.ok_1, h.ok_2, h.ok_3, h.ok_4 = 0, h.ok_cur, h.ok_1, h.ok_2
        elif quarters == 3:
            h.ok_1, h.ok_2, h.ok_3, h.ok_4 = 0, 0, h.ok_cur, h.ok_1
        elif quarters == 4:
            h.ok_1, h.ok_2, h.ok_3, h.ok_4 = 0, 0, 0, h.ok_cur
        else:
            h.ok_1 = h.ok_2 = h.ok_3 = h.ok_4 = 0
        host.ok_cur = 0
        host.ok_start += quarters * _QUARTER
        if host.learned is None:
            return
        second = host.ok_1 + host.ok_2 + host.ok_3 + host.ok_4
        if second < 0.8 * (host.pace or 0.0):
            # The rate was not what held the host back: no probing for this time.
            host.probe_from += quarters * _QUARTER
            return
        grown = now - host.probe_from
        if grown > 0:
            host.learned = host.base * (1.0 + (grown / _GROWTH) ** 2)
            self._set_pace(host)

    def _set_pace(self, host: _Host[T]) -> None:
        rate, learned = host.rate, host.learned
        burst = 1.0
        if learned is not None and (rate is None or learned < rate):
            rate = learned
            burst = max(1.0, learned * _BURST_S) if host.rate is None else 1.0
        host.pace = rate
        if rate:
            host.interval = 1.0 / rate
            host.tolerance = (burst - 1.0) / rate
        throttle = host.throttle
        if throttle is not None:
            throttle.rate = None if host.away else rate
            self.throttle_dirty.add(host.key)

    def _slow_round(self, host: _Host[T], latency: float, now: float) -> bool:
        """Count a healthy answer's latency; True when it ends a round of answers whose
        mean is more than ``latency_factor`` times the host's no-load latency (+5 ms)
        and that did not bring ``_GAIN`` times the answers per second of the best round
        before: more concurrency bought only waiting, which is overload.

        Like is compared with like: a round that is slow at no more concurrency than the
        no-load latency was measured at cannot be slow because of our load, so it is
        the host's latency now (its endpoints differ in speed, or it got slower)."""
        if host.round_skip:
            host.round_skip -= 1
            return False
        if host.round_n == 0:  # a round lasts a round trip of the limit it starts at
            host.round_len = max(_ROUND, int(host.limit))
            host.round_limit = host.limit
            host.round_started = now
            host.round_busy_at, host.round_busy = self._busy_sample(now)
        elif host.limit < host.round_limit:
            host.round_limit = host.limit
        host.round_n += 1
        host.round_sum += latency
        if host.round_n < host.round_len:
            return False
        mean = host.round_sum / host.round_n
        # Answers per second over a round trip at least: the slots that slow start adds
        # are sent at once, and their answers come back within a millisecond or two;
        # over that span they would make a rate no steady load reaches, next to which
        # every later round would look like overload (two workers sharing a host at
        # 50 ms cut themselves from 256 to 120 in flight each).
        rate = host.round_n / max(now - host.round_started, mean)
        best, host.best_rate = host.best_rate, max(host.best_rate, rate)
        host.round_rate = rate
        host.round_n, host.round_sum = 0, 0.0
        host.congested = False
        slow_before, host.round_mean = host.round_mean, mean
        if host.cut_from and self._cut_in_vain(host, mean, slow_before):
            return False
        if mean > self.policy.latency_factor * host.base_latency + 0.005:
            if host.round_limit > host.base_limit:
                if rate >= _GAIN * best:
                    return False  # slower, but it keeps up: more answers per second
                host.congested = True  # no growth until a round is fast again
                # Latency that this client added, short of CPU, is no sign that the host
                # is overloaded, and fewer requests in flight would not make it faster.
                return not self._client_bound(host, now)
        elif mean >= host.base_latency:
            return False
        host.base_latency, host.base_limit = mean, host.round_limit
        return False

    def _cut_in_vain(self, host: _Host[T], mean: float, slow_mean: float) -> bool:
        """Judge a slow round's cut by the round after it (``mean``): had our load made
        the host slow, fewer requests in flight are answered sooner. When they are
        not (``_UNMOVED`` of the slow round's ``slow_mean`` or more), the latency is
        the host's, or this machine's, at any concurrency: it becomes the no-load
        latency and the limit goes back to what it was. (Two workers sharing two cores
        with a server at 50 ms saw the same 90 ms after each cut, and cut again.) A
        host that got slower still keeps the cut, and the next slow round cuts more."""
        cut_from, host.cut_from = host.cut_from, 0.0
        if not _UNMOVED * slow_mean <= mean <= slow_mean / _UNMOVED:
            return False
        host.base_latency, host.base_limit = mean, host.round_limit
        host.limit = max(host.limit, cut_from)
        return True

    def _client_bound(self, host: _Host[T], now: float) -> bool:
        """Whether this thread ran or waited for a core most of the round (the answers
        waited for us, not for the host)."""
        at, busy = self._busy_sample(now)
        span = at - host.round_busy_at
        return span > 0 and busy - host.round_busy >= _CLIENT_BOUND * span

    def _busy_sample(self, now: float) -> tuple[float, float]:
        """(time, ``busy``) read at most once per ``_BUSY_EVERY`` (reading it costs
        about 10 µs, and rounds of a few answers end thousands of times a second);
        a share computed between two samples, each with its own time, stays exact."""
        last = self._busy_last
        if now - last[0] >= _BUSY_EVERY:
            last = self._busy_last = (now, self.busy())
        return last

    def _open(self, host: _Host[T], now: float) -> None:
        policy = self.policy
        host.probing = False
        if host.down_since is not None and now - host.down_since >= policy.host_down_after:
            self._give_up(host)
            return
        host.cooldown = min(policy.cooldown_max, host.cooldown * 2 or policy.cooldown)
        # Probe no later than the moment the host would be given up.
        assert host.down_since is not None
        deadline = host.down_since + policy.host_down_after - now
        host.open_until = now + max(0.01, min(host.cooldown, deadline))
        self._down.add(host)
        self._list(host)
        if host.shared and not host.reported:
            self._report(host, now)

    def _give_up(self, host: _Host[T]) -> None:
        host.given_up = True
        self._down.discard(host)
        queue, host.queue = host.queue, deque()
        self.queued -= len(queue)
        for work in queue:
            if self.on_given_up is not None:
                self.on_given_up(host.name, work)

    def retry_allowed(self, key: str) -> float | None:
        """Whether a retry may go to host ``key`` now: None if not (budget spent, host
        given up or its circuit open), else the seconds to wait for its rate or pause.
        Takes the retry from the budget and reserves the token."""
        host = self.hosts.get(key)
        if host is None:
            return 0.0
        policy = self.policy
        if host.given_up or host.open_until:
            return None
        if host.grace:
            host.grace -= 1  # in flight at the host's first 429: outside the budget
        elif host.retries + 1 > max(policy.retry_floor, policy.retry_budget * host.sent):
            return None
        else:
            host.retries += 1
        now = self.clock()
        # The retry's turn: after the pause, and after the turns already given out.
        start = max(now, host.paused_until)
        if host.pace:
            start = max(start, host.tat - host.tolerance)
            host.tat = max(host.tat, start) + host.interval
        return start - now

    def finished(self, key: str) -> None:
        """The work taken for host ``key`` is done (its slot is free again)."""
        self.release(self.hosts[key])

    def release(self, host: _Host[T]) -> None:
        """:meth:`finished`, for the host object that :meth:`take` returned."""
        host.active -= 1
        host.probing = False
        if host.given_up:
            return
        self._list(host)


def _name(key: str) -> str:
    """The host name of a key (``name:port``)."""
    return key.rpartition(":")[0]


def _cut(host: _Host[Any], slow: bool) -> float:
    """The limit after a sign of overload. A 429, a 503 or a connect timeout halves it.
    A slow round (more latency, no more answers per second) cuts it to what the
    answers that round brought need at the no-load latency, with ``_HEADROOM``: the
    requests beyond that only waited, in the host's queue or in ours (a client that
    is short of CPU sees this too, and must not starve itself by halving twice).
    Never less than half, so that the cuts still converge as AIMD does."""
    half = max(1.0, host.limit / 2)
    if not slow:
        return half
    needed = host.round_rate * host.base_latency * _HEADROOM
    return max(half, min(host.limit, needed))
