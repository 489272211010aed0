"""Politeness: the scheduler's decisions on a fake clock, then real runs against servers
that push back, slow down, or are dead."""

from __future__ import annotations

import asyncio
import collections
import heapq
import json
import math
import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from surefetch import Client, Limits, Politeness, Record, RetryPolicy, Timeouts
from surefetch.polite import HostRule, Scheduler, load_host_rules, parse_rate, thread_busy

from .conftest import HOSTS, Server, start_app
from .helpers import records, surefetch, write_lines


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0
        #: The scheduler thread's busy seconds (see polite.thread_busy): idle unless set.
        self.busy = 0.0

    def __call__(self) -> float:
        return self.now

    def busy_time(self) -> float:
        return self.busy


def scheduler(**kw: object) -> tuple[Scheduler[int], Clock]:
    clock = Clock()
    sched = Scheduler(Politeness(**kw), 8, clock=clock, busy=clock.busy_time)  # type: ignore[arg-type]
    return sched, clock


def test_parse_rate() -> None:
    assert parse_rate("20/s") == 20.0
    assert parse_rate("30/m") == 0.5
    assert parse_rate(" 2.5 / sec ") == 2.5
    for bad in ("", "20", "0/s", "-1/s", "5/h"):
        with pytest.raises(ValueError, match="not a rate"):
            parse_rate(bad)


def test_rate_spaces_requests_to_a_host() -> None:
    sched, clock = scheduler(rate=10.0, adaptive=False)
    for n in range(3):
        sched.add("a:80", "a", n)
        sched.add("b:80", "b", n)
    taken = [sched.take(), sched.take()]
    assert {t[0].name for t in taken if t} == {"a", "b"}
    assert sched.take() is None  # both hosts must wait for a token
    assert sched.wake_in() == pytest.approx(0.1)
    clock.now += 0.1
    assert sched.take() is not None and sched.take() is not None
    assert sched.take() is None


def test_slots_free_up_when_work_finishes() -> None:
    sched, _ = scheduler(adaptive=False)
    sched.per_host = 2
    for n in range(5):
        sched.add("a:80", "a", n)
    got = [sched.take(), sched.take(), sched.take()]
    assert got[2] is None and sched.wake_in() is None
    sched.finished("a:80")
    assert sched.take() is not None


def test_aimd_grows_on_health_and_halves_on_overload() -> None:
    sched, clock = scheduler(start_limit=2)
    host = sched.host("a:80", "a")
    assert host.limit == 2
    for _ in range(40):
        sched.attempt_done("a:80", kind=None, status=200, latency=0.01)
    assert 6 < host.limit <= 8  # additive: about +1 per round of responses, capped at 8
    sched.attempt_done("a:80", kind=None, status=429, latency=0.01)
    halved = host.limit
    assert 3 < halved <= 4
    sched.attempt_done("a:80", kind=None, status=503, latency=0.01)
    assert host.limit == halved  # one cut per cut_every, however many 429s arrive at once
    clock.now += 1.1
    sched.attempt_done("a:80", kind="connect_timeout", status=None, latency=1.0)
    assert host.limit == halved / 2


def answer(
    sched: Scheduler[int], clock: Clock, latency: float, n: int = 1, key: str = "a:80"
) -> None:
    """``n`` healthy answers of ``latency`` each, spread over the time they take at the
    host's limit (``limit`` of them per ``latency``)."""
    for _ in range(n):
        clock.now += latency / sched.hosts[key].limit
        sched.attempt_done(key, kind=None, status=200, latency=latency)


def test_slow_start_doubles_per_round_until_the_first_overload() -> None:
    sched, clock = scheduler(start_limit=2)
    sched.per_host = 32  # a host starts at a 16th of it: 2
    host = sched.host("a:80", "a")
    answer(sched, clock, 0.01, 2)  # the first round: 2 answers at limit 2
    assert host.limit == 4
    answer(sched, clock, 0.01, 4)
    assert host.limit == 8
    sched.attempt_done("a:80", kind=None, status=503, latency=0.01)
    assert host.limit == 4
    answer(sched, clock, 0.01, 4)  # now additive: one more per round of 4
    assert 4.9 < host.limit < 5.1


def test_a_host_starts_at_a_sixteenth_of_its_per_host_limit() -> None:
    """From 2, a host at 50 ms allowed 512 would spend 8 round trips (0.4 s) in slow
    start; from 32, 4. The default per-host limit (8) still starts at 2."""
    starts = {}
    for per_host, share in ((8, 1), (32, 1), (512, 1), (512, 2), (3, 1)):
        sched = Scheduler(Politeness(start_limit=2), per_host, share=share)
        starts[per_host, share] = sched.host("a:80", "a").limit
    assert starts == {(8, 1): 2, (32, 1): 2, (512, 1): 32, (512, 2): 16, (3, 1): 2}
    sched = Scheduler(Politeness(start_limit=4), 2)
    assert sched.host("a:80", "a").limit == 2  # never above the per-host limit
    sched = Scheduler(Politeness(adaptive=False), 512)
    assert sched.host("a:80", "a").limit == 512


def test_latency_rise_counts_as_overload_a_round_at_a_time() -> None:
    sched, clock = scheduler(start_limit=8, latency_factor=1.5)
    sched.per_host = 16
    host = sched.host("a:80", "a")
    answer(sched, clock, 0.020, 8)  # the first round, at limit 8: 20 ms is the no-load latency
    assert host.limit == 16 and host.base_latency == pytest.approx(0.020)
    answer(sched, clock, 0.080, 15)  # a round at 16 lasts 16 answers: one short of its end
    assert host.limit == 16
    answer(sched, clock, 0.080)  # 80 ms > 1.5 x 20 ms + 5 ms, at twice the concurrency
    assert host.limit == 8
    answer(sched, clock, 0.034, 16)  # within 1.5 x + 5 ms: not overload
    assert host.limit > 8


def test_a_slower_round_that_brings_more_answers_per_second_is_not_overload() -> None:
    """Latency up from 20 to 40 ms, but at four times the concurrency: twice the
    answers per second. The host keeps up (a busy client or a server warming up), so
    the limit goes on growing; at the same latency without the gain it is cut."""
    sched, clock = scheduler(start_limit=8)
    sched.per_host = 64
    host = sched.host("a:80", "a")
    answer(sched, clock, 0.020, 8)  # 400 answers/s at 8
    host.slow_start = False
    host.limit = 32.0
    answer(sched, clock, 0.040, 32)  # 800 answers/s at 32
    assert host.limit > 32 and not host.congested
    host.limit = 64.0
    answer(sched, clock, 0.160, 64)  # 400 answers/s at 64: only waiting was bought
    assert host.limit == 32 and host.congested


def test_a_burst_of_answers_is_no_rate_to_measure_later_rounds_by() -> None:
    """Slow start sends its new slots at once, and 32 answers of 50 ms come back within
    3 ms: over a round trip that is 640 answers/s, not 10,000. A later round at 128 in
    flight and 90 ms (a client short of CPU) brings 1,400/s, more than that: no cut."""
    sched, clock = scheduler(start_limit=2)
    sched.per_host = 512
    host = sched.host("a:80", "a")
    assert host.limit == 32
    for _ in range(32):
        clock.now += 0.0001
        sched.attempt_done("a:80", kind=None, status=200, latency=0.050)
    assert host.best_rate == pytest.approx(32 / 0.050)
    host.limit = 128.0
    answer(sched, clock, 0.090, 128)
    assert not host.congested and host.limit > 128


def test_a_slow_round_cuts_to_the_concurrency_its_answers_need() -> None:
    """More latency and no more answers per second (a busy server, or this client short
    of CPU): the requests beyond what those answers need at the no-load latency only
    waited. The limit goes to that (Little's law, with 25 % headroom), not always to
    half, so a client that is itself the bottleneck does not halve itself twice."""
    sched, clock = scheduler(start_limit=8)
    sched.per_host = 64
    host = sched.host("a:80", "a")
    answer(sched, clock, 0.020, 8)  # no load: 20 ms at 8, 400 answers/s
    host.slow_start = False
    host.limit = 16.0
    answer(sched, clock, 0.040, 16)  # twice the latency, about the same answers/s
    assert host.congested
    needed = host.round_rate * 0.020 * 1.25
    assert 8 < needed < 16
    assert host.limit == pytest.approx(needed)
    host.limit, host.congested = 64.0, False
    answer(sched, clock, 0.400, 64)  # ten times the latency: half is the most cut at once
    assert host.limit == 32


def out_of_slow_start(limit: float) -> tuple[Scheduler[int], Clock, Any]:
    """A host (up to 64) whose no-load latency is 20 ms at 8 in flight (400 answers/s),
    out of slow start at ``limit``."""
    sched, clock = scheduler(start_limit=8)
    sched.per_host = 64
    host = sched.host("a:80", "a")
    answer(sched, clock, 0.020, 8)
    host.slow_start = False
    host.limit = limit
    return sched, clock, host


def test_a_slow_round_while_this_client_is_short_of_cpu_holds_the_limit() -> None:
    """Twice the latency at no more answers per second, but the scheduler's thread ran
    or waited for a core through the round: the answers waited for this client, not
    for the host. The limit stops growing and is not cut."""
    sched, clock, host = out_of_slow_start(16.0)
    start = clock.now
    for _ in range(16):
        clock.now += 0.040 / 16
        clock.busy += 0.95 * 0.040 / 16
        sched.attempt_done("a:80", kind=None, status=200, latency=0.040)
    held = host.limit
    assert clock.now > start and host.congested and held >= 16  # grown in it, not cut
    answer(sched, clock, 0.040)
    assert host.limit == held  # and no growth until a round is fast again
    clock.busy = 0.0  # the same round again, the client idle: cut (see the test above)
    host.congested, host.limit = False, 16.0
    answer(sched, clock, 0.040, 16)
    assert host.congested and host.limit < 16


def test_the_busy_time_is_read_at_most_every_10_ms() -> None:
    """Rounds of 8 answers 1 ms apart end 125 times a second; reading the thread's busy
    time (about 10 µs) at each start and end would cost more than the rest of them."""
    reads = []
    clock = Clock()

    def busy() -> float:
        reads.append(clock.now)
        return 0.0

    sched: Scheduler[int] = Scheduler(Politeness(start_limit=8), 8, clock=clock, busy=busy)
    sched.host("a:80", "a")
    for _ in range(1000):
        clock.now += 0.001
        sched.attempt_done("a:80", kind=None, status=200, latency=0.008)
    assert 50 <= len(reads) <= 101, len(reads)


def test_thread_busy_counts_the_cpu_this_thread_used() -> None:
    before, cpu = thread_busy(), time.thread_time()
    while time.thread_time() - cpu < 0.05:
        pass
    assert thread_busy() - before >= 0.045
    done: list[float] = []
    other = threading.Thread(target=lambda: done.append(thread_busy()))
    start = thread_busy()
    other.start()
    other.join()
    assert done and thread_busy() - start < 0.02  # another thread's time is not ours


@pytest.mark.parametrize(("after", "undone"), [(0.080, True), (0.030, False), (0.200, False)])
def test_a_cut_that_did_not_bring_the_latency_down_is_undone(after: float, undone: bool) -> None:
    """80 ms at 32 in flight, no more answers per second than 20 ms at 8: cut to 16.
    The next round, at 16, still 80 ms: the latency was not of our load (the host's
    own, or this machine short of cores); it becomes the no-load latency and the limit
    goes back to 32. Down to 30 ms, the cut was right; up to 200 ms, the host got
    slower still: both keep it."""
    sched, clock, host = out_of_slow_start(32.0)
    answer(sched, clock, 0.080, 32)  # the limit grew to 33 in it (+1 a round)
    cut = host.limit
    assert 16 <= cut < 17 and host.congested  # half: Little's law asked for 10
    answer(sched, clock, after, 17)
    if undone:
        assert host.limit > 32 and host.base_latency == pytest.approx(0.080)
    else:
        assert host.limit < 17 and host.base_latency == pytest.approx(min(0.020, after))


def test_slow_rounds_at_the_no_load_concurrency_are_the_hosts_own_speed() -> None:
    sched, clock = scheduler(start_limit=8)
    host = sched.host("a:80", "a")
    answer(sched, clock, 0.020, 8)
    answer(sched, clock, 0.300, 8)  # slower, but at the concurrency 20 ms was measured at
    assert host.limit == 8
    assert host.base_latency == pytest.approx(0.300)


def test_one_fast_answer_does_not_pin_a_slow_host() -> None:
    sched, clock = scheduler(start_limit=2)
    host = sched.host("a:80", "a")
    answer(sched, clock, 0.001)  # a fast 404, say
    limits = []
    for _ in range(300):
        answer(sched, clock, 0.300)
        limits.append(host.limit)
    assert limits[10:] == [8.0] * 290


def test_endpoints_of_two_speeds_are_not_overload() -> None:
    sched, clock = scheduler(start_limit=2)
    host = sched.host("a:80", "a")
    rng = random.Random(7)
    limits = []
    for _ in range(5000):
        answer(sched, clock, rng.choice((0.001, 0.300)))
        limits.append(host.limit)
    assert min(limits[10:]) == 8.0


def test_retry_after_pauses_the_whole_host() -> None:
    sched, clock = scheduler()
    for n in range(3):
        sched.add("a:80", "a", n)
    sched.attempt_done("a:80", kind=None, status=429, latency=0.01, retry_after=2.0)
    assert sched.take() is None
    assert sched.wake_in() == pytest.approx(2.0)
    clock.now += 2.0
    assert sched.take() is not None


def test_retry_budget_caps_retries_per_host() -> None:
    sched, _ = scheduler(retry_budget=0.2, retry_floor=2, adaptive=False)
    for n in range(50):
        sched.add("a:80", "a", n)
    for _ in range(8):
        assert sched.take() is not None
    # 8 first attempts: 20 % is 1.6, so the floor of 2 applies.
    assert sched.retry_allowed("a:80") == 0.0
    assert sched.retry_allowed("a:80") == 0.0
    assert sched.retry_allowed("a:80") is None


def test_requests_in_flight_at_the_first_429_may_all_be_retried() -> None:
    """They were sent before the host could say "too many": each gets its retry, even
    when this process had sent too few to the host for the budget to cover them (one
    of two workers that had barely started, say). Later 429s and 503s do not."""
    sched, _ = scheduler(retry_budget=0.0, retry_floor=1, adaptive=False)
    for n in range(20):
        sched.add("a:80", "a", n)
    for _ in range(6):
        sched.take()
    sched.attempt_done("a:80", kind=None, status=429, latency=0.01)
    assert all(sched.retry_allowed("a:80") is not None for _ in range(6))
    assert sched.retry_allowed("a:80") is not None  # the floor of 1
    assert sched.retry_allowed("a:80") is None
    sched.add("b:80", "b", 1)
    sched.take()
    sched.attempt_done("b:80", kind=None, status=503, latency=0.01)
    assert sched.retry_allowed("b:80") is not None and sched.retry_allowed("b:80") is None


def test_breaker_opens_probes_closes_and_gives_up() -> None:
    sched, clock = scheduler(breaker_after=3, cooldown=1.0, host_down_after=10.0, adaptive=False)
    lost: list[int] = []
    sched.on_given_up = lambda name, work: lost.append(work)
    for n in range(20):
        sched.add("a:80", "a", n)
    for _ in range(3):
        sched.take()
        sched.attempt_done("a:80", kind="connect_refused", status=None, latency=0.001)
        sched.finished("a:80")
    assert sched.take() is None  # open: wait for the cool-down
    assert sched.retry_allowed("a:80") is None  # no retries into an open circuit
    clock.now += 1.0
    probe = sched.take()
    assert probe is not None and sched.take() is None  # one probe at a time
    sched.attempt_done("a:80", kind=None, status=200, latency=0.01)  # it answered
    sched.finished("a:80")
    assert sched.take() is not None  # closed again
    # Down for good: failures keep coming until host_down_after has passed.
    for _ in range(30):
        clock.now += 1.0
        got = sched.take()
        if got is None:
            continue
        sched.attempt_done("a:80", kind="connect_refused", status=None, latency=0.001)
        sched.finished("a:80")
        if sched.is_given_up("a:80"):
            break
    assert sched.is_given_up("a:80")
    assert lost and sched.queued == 0
    assert not sched.add("a:80", "a", 99)


def test_host_rules_from_toml(tmp_path: Path) -> None:
    path = tmp_path / "hosts.toml"
    path.write_text(
        '[[host]]\nmatch = "*.slow.example"\nrate = "2/s"\nper_host = 1\n'
        '[[host]]\nmatch = "api.example"\nheaders = { "X-Key" = "k" }\n'
    )
    rules = load_host_rules(str(path))
    assert rules == (
        HostRule("*.slow.example", 2.0, 1, None),
        HostRule("api.example", None, None, {"X-Key": "k"}),
    )
    sched: Scheduler[int] = Scheduler(Politeness(rules=rules), 8)
    assert sched.host("a.slow.example:80", "a.slow.example").per_host == 1
    assert sched.host("a.slow.example:80", "a.slow.example").rate == 2.0
    assert sched.headers("api.example:443") is None  # not seen yet
    sched.host("api.example:443", "api.example")
    assert sched.headers("api.example:443") == {"X-Key": "k"}
    path.write_text(
        '[[host]]\nmatch = "api.example:8443"\nper_host = 3\n'
        '[[host]]\nmatch = "*.example"\nper_host = 2\n'
        '[[host]]\nmatch = "api.example"\nper_host = 5\n'
    )
    sched = Scheduler(Politeness(rules=load_host_rules(str(path))), 8)
    assert sched.host("api.example:8443", "api.example").per_host == 3  # name:port
    assert sched.host("api.example:443", "api.example").per_host == 2  # first match wins
    assert sched.host("b.example:80", "b.example").per_host == 2
    assert sched.host("other.org:80", "other.org").per_host == 8
    path.write_text('[[host]]\nrate = "2/s"\n')
    with pytest.raises(ValueError, match='needs match = "pattern"'):
        load_host_rules(str(path))
    path.write_text('[[host]]\nmatch = "x"\nspeed = 3\n')
    with pytest.raises(ValueError, match="unknown key 'speed'"):
        load_host_rules(str(path))


# -- the learned rate, on a fake clock -------------------------------------------------


class SlidingLimit:
    """A host on a fake clock that allows ``limit(t)`` requests in any sliding second
    (t: seconds since the start) and answers 429 with Retry-After: 1 beyond, as
    tests/limited_server.py does; ``stalls`` are (from, to) times when it takes nothing
    in, and then takes all that came meanwhile at once."""

    def __init__(self, limit: Callable[[float], float], stalls: tuple[tuple[float, float], ...]):
        self.limit = limit
        self.stalls = stalls
        self.window: collections.deque[float] = collections.deque()
        #: When requests were sent, and when those it allowed and refused arrived.
        self.sent: list[float] = []
        self.ok: list[float] = []
        self.rejected: list[float] = []

    def arrive(self, t: float) -> int:
        for start, end in self.stalls:
            if start <= t < end:
                t = end
        while self.window and t - self.window[0] >= 1.0:
            self.window.popleft()
        if len(self.window) >= self.limit(t):
            self.rejected.append(t)
            return 429
        self.window.append(t)
        self.ok.append(t)
        return 200


def fetch_on_a_fake_clock(
    limit: Callable[[float], float],
    urls: int,
    *,
    seconds: float = math.inf,
    latency: float = 0.002,
    concurrency: int = 64,
    stalls: tuple[tuple[float, float], ...] = (),
) -> tuple[SlidingLimit, Scheduler[int]]:
    """Fetch ``urls`` URLs of one host as the engine and the Client use the scheduler:
    ``concurrency`` workers, each answer ``latency`` after its request, a 429 retried
    (in the same slot) after max(its Retry-After, what ``retry_allowed`` says)."""
    clock = Clock()
    start = clock.now
    sched: Scheduler[int] = Scheduler(Politeness(retry_budget=1.0), 64, clock=clock)
    host = SlidingLimit(
        lambda t: limit(t - start), tuple((a + start, b + start) for a, b in stalls)
    )
    for n in range(urls):
        sched.add("h:80", "h", n)
    events: list[tuple[float, int, str, int]] = []  # (when, order, answer/retry, URL)
    order = 0
    idle = concurrency
    statuses: dict[int, int] = {}
    sent_at: dict[int, float] = {}

    def send(n: int) -> None:
        nonlocal order
        statuses[n] = host.arrive(clock.now + latency / 2)
        sent_at[n] = clock.now
        host.sent.append(clock.now)
        order += 1
        heapq.heappush(events, (clock.now + latency, order, "answer", n))

    while clock.now - start < seconds:
        while idle and (taken := sched.take()) is not None:
            idle -= 1
            send(taken[1])
        wake = sched.wake_in()
        if not events and wake is None:
            break
        if wake is not None and (not events or clock.now + wake < events[0][0]):
            clock.now += wake + 1e-9
            continue
        when, _, what, n = heapq.heappop(events)
        clock.now = max(clock.now, when)
        if what == "retry":
            send(n)
            continue
        status = statuses[n]
        sched.attempt_done(
            "h:80",
            kind=None,
            status=status,
            latency=clock.now - sent_at[n],
            retry_after=1.0 if status == 429 else None,
        )
        if status == 429 and (wait := sched.retry_allowed("h:80")) is not None:
            order += 1
            heapq.heappush(events, (clock.now + max(1.0, wait), order, "retry", n))
            continue
        sched.finished("h:80")
        idle += 1
    for times in (host.sent, host.ok, host.rejected):
        times[:] = [t - start for t in times]
    return host, sched


def per_second(times: list[float], start: float, end: float) -> list[int]:
    counts = collections.Counter(int(t - start) for t in times if start <= t < end)
    return [counts[i] for i in range(int(end - start))]


def busiest_second(times: list[float]) -> int:
    """The most of ``times`` within any one second."""
    times = sorted(times)
    best = first = 0
    for last, t in enumerate(times):
        while t - times[first] >= 1.0:
            first += 1
        best = max(best, last - first + 1)
    return best


@pytest.mark.parametrize("rate", [50, 300, 1000])
def test_learned_rate_converges_at_the_first_429(rate: int) -> None:
    """At the first 429 the host has allowed its rate in the last second: the learned
    rate is a little under it at once, with no sawtooth after it."""
    host, sched = fetch_on_a_fake_clock(lambda t: rate, rate * 20, latency=0.001)
    # Within 2 s, never a 429 again, every second at 85-100 % of the rate...
    ok_seconds = per_second(host.ok, 2.0, 19.0)
    assert min(ok_seconds) >= 0.85 * rate and max(ok_seconds) <= rate, ok_seconds
    assert not [t for t in host.rejected if t >= 2.0]
    # ...and few 429s before: the first burst is what was in flight (slow start grows
    # per 10 ms for a host that answers in 1 ms, so a rate of 50 is met by ~10, not 50).
    assert len(host.rejected) < 0.01 * rate * 20 + 5, len(host.rejected)
    pace = sched.hosts["h:80"].pace
    assert pace is not None and 0.85 * rate <= pace < rate
    assert sched.throttled["h:80"].too_many == len(host.rejected)


def test_no_second_above_the_limit_after_convergence() -> None:
    """After convergence (and until it probes upwards again, 30 s on) no second has
    more requests than the limit, a stall of the host included: the 429 it causes at
    the learned rate is a blip, not a lower limit."""
    host, sched = fetch_on_a_fake_clock(lambda t: 300, 300 * 25, stalls=((8.0, 8.1),))
    assert busiest_second([t for t in host.sent if t >= 2.0]) <= 300
    assert len([t for t in host.rejected if t >= 2.0]) == 1  # the stall's
    seconds = per_second(host.ok, 11.0, 24.0)  # after it: the same rate
    assert min(seconds) >= 0.9 * 300, seconds
    pace = sched.hosts["h:80"].pace
    assert pace is not None and pace >= 0.9 * 300


def test_learned_rate_recovers_when_the_limit_rises() -> None:
    """200/s, then 400/s from 10 s on: after its hold, the learned rate probes upwards
    (slowly near 200, faster beyond) and finds the new limit within 80 s."""
    host, _ = fetch_on_a_fake_clock(lambda t: 200 if t < 10 else 400, 10**6, seconds=100)
    seconds = per_second(host.ok, 0.0, 100.0)
    assert max(seconds[2:10]) <= 200
    assert min(seconds[90:]) >= 0.8 * 400, seconds
    assert len([t for t in host.rejected if t >= 2.0]) <= 5  # a probe costs a 429 or two


def test_learned_rate_follows_a_limit_down_and_up() -> None:
    """300/s, 100/s from 15 s, 300/s again from 40 s: followed down within 4 s (a few
    429s), then up again."""

    def limit(t: float) -> float:
        return 100 if 15 <= t < 40 else 300

    host, _ = fetch_on_a_fake_clock(limit, 10**6, seconds=130)
    seconds = per_second(host.ok, 0.0, 130.0)
    assert min(seconds[2:15]) >= 0.85 * 300
    down = per_second(host.ok, 19.0, 40.0)
    assert min(down) >= 0.8 * 100 and max(down) <= 100, down
    assert len([t for t in host.rejected if 15 <= t < 40]) <= 5
    assert busiest_second([t for t in host.sent if 19 <= t < 40]) <= 100
    assert min(seconds[120:]) >= 0.8 * 300, seconds


def test_a_lone_429_learns_no_rate() -> None:
    """A 429 when the host allowed nothing in the last second (a first request, or the
    first after a long pause) says nothing of its rate: only the pause is kept."""
    sched, clock = scheduler()
    sched.add("a:80", "a", 1)
    sched.take()
    sched.attempt_done("a:80", kind=None, status=429, latency=0.01, retry_after=5.0)
    host = sched.hosts["a:80"]
    assert host.learned is None and host.pace is None
    assert host.paused_until == pytest.approx(clock.now + 5.0)
    assert sched.throttled["a:80"].too_many == 1


# -- one owner per host (share > 1, --workers N) --------------------------------------


def test_a_shared_host_has_its_share_until_it_pushes_back() -> None:
    clock = Clock()
    policy = Politeness(
        rules=(HostRule("slow.example", rate=5.0), HostRule("one.example", per_host=1))
    )
    sched: Scheduler[int] = Scheduler(policy, 8, clock=clock, share=2)
    told: list[tuple[str, float, bool]] = []
    sched.on_throttled = lambda key, pause, too_many: told.append((key, pause, too_many))
    free = sched.host("a:80", "a")
    assert free.shared and free.per_host == 4
    # A rate, or a per-host limit that cannot be shared out: one owner from the start.
    for key, name in (("slow.example:80", "slow.example"), ("one.example:80", "one.example")):
        host = sched.host(key, name)
        assert not host.shared and host.per_host == host.full_per_host
        assert policy.alone(key, name, 8, 2)
    assert not policy.alone("a:80", "a", 8, 2) and policy.alone("a:80", "a", 8, 1)
    for n in range(3):
        sched.add("a:80", "a", n)
    sched.take()
    sched.attempt_done("a:80", kind=None, status=200, latency=0.01)
    sched.attempt_done("a:80", kind=None, status=503, latency=0.01, retry_after=2.0)
    sched.attempt_done("a:80", kind=None, status=429, latency=0.01)
    assert told == [("a:80", pytest.approx(2.0), False)]  # once per host: a 503 first
    # A host whose circuit opens is told of too.
    for _ in range(5):
        sched.attempt_done("b:80", kind="connect_refused", status=None, latency=0.01)
    assert len(told) == 1  # (b was never seen: no host yet)
    sched.add("b:80", "b", 9)
    for _ in range(5):
        sched.attempt_done("b:80", kind="connect_refused", status=None, latency=0.01)
    assert told[1][::2] == ("b:80", False)


def test_an_owner_learns_the_rate_from_what_every_process_was_allowed() -> None:
    """The owner learns the host's rate from the answers it allowed here and those the
    others say it allowed them (Seen); the others hand its queued work back."""
    clock = Clock()
    owner: Scheduler[int] = Scheduler(Politeness(), 8, clock=clock, share=2)
    other: Scheduler[int] = Scheduler(Politeness(), 8, clock=clock, share=2)
    away: list[int] = []
    other.on_away = lambda key, work: away.append(work)
    for sched in (owner, other):
        for n in range(6):
            sched.add("a:80", "a", n)
    for _ in range(120):  # 120 answers here, 180 there, in the last second
        owner.attempt_done("a:80", kind=None, status=200, latency=0.001)
    for _ in range(180):
        other.attempt_done("a:80", kind=None, status=200, latency=0.001)
    clock.now += 0.5
    owner.attempt_done("a:80", kind=None, status=429, latency=0.001, retry_after=1.0)
    queued, allowed = other.disown("a:80")
    assert queued == list(range(6)) and other.queued == 0 and allowed == 180
    other.add("a:80", "a", 99)
    assert away == [99] and other.queued == 0
    owner.own("a:80", pause=1.0, too_many=True)
    host = owner.hosts["a:80"]
    assert not host.shared and host.per_host == 8
    assert host.learned == pytest.approx(0.92 * 120)  # only what it saw, so far
    owner.seen_elsewhere("a:80", allowed)
    assert host.learned == pytest.approx(0.92 * 300)
    assert owner.throttled["a:80"].rate == pytest.approx(0.92 * 300)
    assert other.throttled == {}  # it never saw a 429


def test_an_owner_after_a_503_learns_no_rate() -> None:
    """A 503 (or an open circuit) made the host one process's: it goes on at its full
    per-host limit, adaptive, as it would in one process, not paced at whatever it
    happened to allow in the last second (which held the demo's hosts at ~12 URLs/s
    with --workers 2 against ~57 with --workers 1)."""
    clock = Clock()
    owner: Scheduler[int] = Scheduler(Politeness(), 8, clock=clock, share=2)
    told: list[tuple[str, float, bool]] = []
    owner.on_throttled = lambda key, pause, too_many: told.append((key, pause, too_many))
    for n in range(6):
        owner.add("a:80", "a", n)
    for _ in range(12):
        owner.attempt_done("a:80", kind=None, status=200, latency=0.001)
    owner.attempt_done("a:80", kind=None, status=503, latency=0.001)
    assert told == [("a:80", 0.0, False)]
    owner.own("a:80", too_many=False)
    owner.seen_elsewhere("a:80", 15.0)
    host = owner.hosts["a:80"]
    assert not host.shared and host.per_host == 8
    assert host.learned is None and host.pace is None
    assert owner.throttled["a:80"].rate is None
    # A 429 later, to the owner, is a rate to learn (what it allowed in the last
    # second, the others' included).
    owner.attempt_done("a:80", kind=None, status=429, latency=0.001)
    assert host.learned == pytest.approx(0.92 * (12 + 15))


# -- real runs ------------------------------------------------------------------------


@dataclass
class Limited:
    """The rate-limited server (tests/limited_server.py) in its own process."""

    base: str
    proc: subprocess.Popen[bytes]
    result_file: Path

    def finish(self) -> tuple[list[float], list[float]]:
        """Stop the server; the arrival times of the requests it allowed, and of those
        it answered with 429."""
        self.proc.terminate()
        self.proc.wait(10)
        seen = json.loads(self.result_file.read_text())
        return seen["ok_times"], seen["rejected_times"]


@pytest.fixture
def limited(tmp_path: Path) -> Iterator[Limited]:
    """A server allowing 400 requests in any second, in its own process so that the
    client's work in this process never delays the server's clock."""
    port_file, result_file = tmp_path / "limited.port", tmp_path / "limited.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.limited_server", "400", str(port_file), str(result_file)],
        cwd=Path(__file__).parent.parent,
    )
    try:
        deadline = time.monotonic() + 10
        while not port_file.exists():
            assert proc.poll() is None and time.monotonic() < deadline, "server did not start"
            time.sleep(0.02)
        yield Limited(f"http://127.0.0.1:{port_file.read_text()}", proc, result_file)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("workers", [1, 2])
async def test_run_converges_under_a_servers_rate_limit(
    limited: Limited, tmp_path: Path, workers: int
) -> None:
    """4,000 URLs to a host allowing 400 requests a second, as a new user would fetch
    them (the first run, no --rate): few 429s from the start, none to speak of once
    converged, most of the rate used, and the summary says what it settled at."""
    src = write_lines(tmp_path / "in.txt", (f"{limited.base}/item/{i}" for i in range(4000)))
    out, summary = tmp_path / "out.jsonl", tmp_path / "summary.json"
    code, _, err = await surefetch(
        "fetch",
        str(src),
        "-o",
        str(out),
        "--workers",
        str(workers),
        "--concurrency",
        "64",
        "--per-host",
        "64",
        "--no-body",
        "--summary-json",
        str(summary),
        timeout=100,
    )
    assert code == 0, err
    recs = records(out)
    failed = [(r["url"], r["attempts"], r["error"]) for r in recs if not r["ok"]]
    assert len(recs) == 4000 and not failed, failed[:5]
    ok_times, rejected_times = limited.finish()
    first, last = min(ok_times + rejected_times), max(ok_times)
    # From the start: the first 429s are what was in flight when the host said so.
    assert len(rejected_times) < 0.03 * 4000, len(rejected_times)
    # Once converged (2 s in), next to no 429s, no second above the limit (+10 % for
    # arrival jitter on a busy machine), and at least 75 % of the rate used.
    converged = first + 2
    ok = sum(t >= converged for t in ok_times)
    rejected = sum(t >= converged for t in rejected_times)
    assert rejected / (ok + rejected) < 0.01, (rejected, ok)
    arrivals = sorted(t for t in ok_times + rejected_times if t >= converged)
    print(
        f"--workers {workers}: {len(rejected_times)} 429s ({rejected} once converged),"
        f" {ok / (last - converged):.0f} req/s once converged, busiest second"
        f" {busiest_second(arrivals)}"
    )
    assert busiest_second(arrivals) <= 440
    assert ok / (last - converged) >= 0.75 * 400, ok / (last - converged)
    # The summary names the host, the rate it settled at and every 429 it sent.
    throttled = json.loads(summary.read_text())["throttled_hosts"]
    assert [h["host"] for h in throttled] == [limited.base.removeprefix("http://")]
    assert throttled[0]["429s"] == len(rejected_times)
    assert 0.8 * 400 <= throttled[0]["rate"] < 400, throttled
    assert "hosts that said slow down" in err and "/s, " in err


class Kneed:
    """Latency 20 ms up to 8 requests in flight; beyond, it grows with the queue."""

    def __init__(self) -> None:
        self.inflight = 0
        self.samples: list[int] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.inflight += 1
        self.samples.append(self.inflight)
        try:
            await asyncio.sleep(0.020 * max(1.0, self.inflight / 8))
            return web.Response(text="ok")
        finally:
            self.inflight -= 1


async def test_adaptive_concurrency_settles_near_the_knee() -> None:
    state = Kneed()
    app = web.Application()
    app.router.add_get("/{tail:.*}", state.handle)
    runner, port = await start_app(app)
    try:
        urls = [f"http://127.0.0.1:{port}/{i}" for i in range(3000)]
        async with Client(limits=Limits(concurrency=64, per_host=64)) as client:
            results = [r async for r in client.fetch_many(urls)]
    finally:
        await runner.cleanup()
    assert all(r.ok for r in results)
    settled = sorted(state.samples[len(state.samples) // 2 :])
    median = settled[len(settled) // 2]
    assert 4 <= median <= 20, median  # near the knee at 8, far from the allowed 64


async def test_one_fast_answer_first_does_not_slow_a_slow_host() -> None:
    """A fast 404 first, then 40 URLs that take 300 ms: adaptive concurrency must not
    take the 1 ms answer as the host's speed and hold it to one request at a time."""

    async def fast(request: web.Request) -> web.Response:
        return web.Response(status=404)

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(0.3)
        return web.Response(text="slow")

    app = web.Application()
    app.router.add_get("/missing", fast)
    app.router.add_get("/slow/{n}", slow)
    runner, port = await start_app(app)
    urls = [f"http://127.0.0.1:{port}/missing"]
    urls += [f"http://127.0.0.1:{port}/slow/{n}" for n in range(40)]

    async def took(adaptive: bool) -> float:
        started = time.monotonic()
        async with Client(limits=Limits(concurrency=64, per_host=8)) as client:
            done = [
                r async for r in client.fetch_many(urls, politeness=Politeness(adaptive=adaptive))
            ]
        assert len(done) == 41
        return time.monotonic() - started

    try:
        fixed, adaptive = await took(False), await took(True)
        # A stall of the machine only makes a run slower (the fixed one cannot beat
        # 1.5 s): an adaptive run over the bound gets a second try, the faster counts.
        if adaptive >= fixed * 1.5:
            adaptive = min(adaptive, await took(True))
    finally:
        await runner.cleanup()
    # 40 x 300 ms at 8 at a time: 1.5 s; pinned at one at a time it took 12 s. (Here:
    # about 1.85 s against 1.54 s, 1.2 times, with two other processes busy.)
    assert adaptive < fixed * 1.5, (adaptive, fixed)


async def test_retry_after_pauses_the_host_in_a_real_run() -> None:
    """The first answer is a 429 with Retry-After: 1; no new request may reach the
    host in that second (the pause is the host's, not only that URL's)."""
    arrivals: list[float] = []

    async def handle(request: web.Request) -> web.Response:
        arrivals.append(time.monotonic())
        if len(arrivals) == 1:
            return web.Response(status=429, headers={"Retry-After": "1"})
        await asyncio.sleep(0.01)
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/{n}", handle)
    runner, port = await start_app(app)
    urls = [f"http://127.0.0.1:{port}/{n}" for n in range(10)]
    policy = Politeness(adaptive=False)
    try:
        async with Client(limits=Limits(concurrency=8, per_host=4)) as client:
            done = [r async for r in client.fetch_many(urls, politeness=policy)]
    finally:
        await runner.cleanup()
    assert len(done) == 10 and all(r.ok for r in done)
    assert len(arrivals) == 11
    # The first 4 went together; nothing after them until the second is over.
    assert min(arrivals[4:]) - arrivals[0] >= 0.95, [t - arrivals[0] for t in arrivals]


async def test_dead_host_costs_healthy_hosts_little(slow_server: Server, unused_port: int) -> None:
    """The healthy hosts' URLs finish as fast with a dead host mixed in (within 10 %);
    the dead host's URLs end as host_unavailable once its breaker gives up."""
    healthy = [slow_server.url(f"/p/{h}-{i}", h) for i in range(100) for h in HOSTS[:2]]
    dead = [f"http://127.0.0.1:{unused_port}/x/{i}" for i in range(300)]
    limits = Limits(concurrency=16, per_host=8)
    policy = Politeness(host_down_after=1.0, cooldown=0.2)
    retry = RetryPolicy(retries=2, backoff=0.05)

    async def healthy_done_after(urls: list[str]) -> tuple[float, list[Record]]:
        """Seconds until the last healthy URL's record arrived, and all records."""
        started = time.monotonic()
        last_healthy = 0.0
        done: list[Record] = []
        async with Client(limits=limits, retry=retry) as client:
            async for record in client.fetch_many(urls, politeness=policy):
                done.append(record)
                if "/p/" in record.url:
                    last_healthy = time.monotonic() - started
        return last_healthy, done

    mixed_urls = [u for pair in zip(healthy, dead[: len(healthy)], strict=False) for u in pair]
    mixed_urls += dead[len(healthy) :]
    # Each twice, in turn, and the faster of each: one run slowed by something else on
    # the machine (a 0.1 s stall is 13 % here) does not decide.
    alone = mixed = float("inf")
    for _ in range(2):
        alone = min(alone, (await healthy_done_after(healthy))[0])
        took, results = await healthy_done_after(mixed_urls)
        mixed = min(mixed, took)
        assert len(results) == 500
        kinds = collections.Counter(r.error.kind if r.error else "ok" for r in results)
        assert kinds["ok"] == 200 and kinds["host_unavailable"] > 250
    print(f"healthy URLs done after {alone:.2f} s alone, {mixed:.2f} s with a dead host")
    assert mixed < alone * 1.1, (alone, mixed)


async def test_retry_budget_caps_a_failing_hosts_requests(server: Server) -> None:
    urls = [server.url(f"/status/503?i={i}") for i in range(200)]
    retry = RetryPolicy(retries=3, backoff=0.001, backoff_max=0.001)
    policy = Politeness(adaptive=False)
    async with Client(retry=retry, timeouts=Timeouts(total=5)) as client:
        results = [r async for r in client.fetch_many(urls, politeness=policy)]
    assert all(r.status == 503 for r in results)
    sent = sum(server.tracker.hits.values())
    assert sent <= 1.2 * 200 + 10, sent
    assert sent > 200  # some retries did happen


async def test_rate_holds_with_high_concurrency(server: Server, tmp_path: Path) -> None:
    src = write_lines(tmp_path / "in.txt", (server.url(f"/p/{i}") for i in range(60)))
    out = tmp_path / "o.jsonl"
    code, _, err = await surefetch(
        "fetch",
        str(src),
        "-o",
        str(out),
        "--rate",
        "40/s",
        "--concurrency",
        "256",
        "--per-host",
        "256",
    )
    assert code == 0, err
    assert len(records(out)) == 60
    # Sends are 1/40 s apart (the host has a rate: one of the two processes owns it);
    # arrival times jitter, which lets one more request into a one-second window, two
    # with a jitter of 25 ms on a busy machine: 40 + 2 at most.
    assert server.tracker.busiest_second() <= 42
    assert max(server.tracker.times) - min(server.tracker.times) >= 1.4
