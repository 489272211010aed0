"""The policy objects: validation and the pure retry decision (no network)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from surefetch import KINDS, Limits, RetryPolicy, Timeouts
from surefetch.policy import RETRY_KINDS, parse_retry_after


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Limits(concurrency=0), "concurrency must be a whole number >= 1, got 0"),
        (lambda: Limits(per_host=-1), "per_host must be a whole number >= 1, got -1"),
        (lambda: Limits(max_body=-5), "max_body must be a whole number >= 0, got -5"),
        (lambda: Limits(max_redirects=1.5), "max_redirects must be a whole number >= 0, got 1.5"),
        (lambda: Timeouts(total=0), "total timeout must be a positive number, got 0"),
        (lambda: Timeouts(read=-1), "read timeout must be a positive number, got -1"),
        (lambda: Timeouts(connect=True), "connect timeout must be a positive number, got True"),
        (lambda: RetryPolicy(retries=-1), "retries must be a whole number >= 0, got -1"),
        (lambda: RetryPolicy(backoff=0), "backoff must be a positive number, got 0"),
    ],
)
def test_invalid_settings_are_refused_with_a_clear_message(make, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError) as info:
        make()
    assert str(info.value) == message


def test_policies_are_immutable() -> None:
    limits = Limits()
    with pytest.raises(AttributeError):
        limits.concurrency = 3  # type: ignore[misc]


def test_retry_kinds_are_real_kinds() -> None:
    assert set(KINDS) >= RETRY_KINDS
    for never in ("invalid_url", "tls_error", "body_too_large", "redirect_blocked"):
        assert never not in RETRY_KINDS


def top(policy: RetryPolicy) -> RetryPolicy:
    """The same policy with jitter pinned to its maximum."""
    return RetryPolicy(
        retries=policy.retries,
        backoff=policy.backoff,
        backoff_max=policy.backoff_max,
        retry_after_max=policy.retry_after_max,
        jitter=lambda: 1.0,
    )


def test_backoff_doubles_up_to_the_cap() -> None:
    policy = top(RetryPolicy(retries=10, backoff=0.5, backoff_max=3.0))
    delays = [policy.delay(n, kind="read_timeout") for n in range(1, 6)]
    assert delays == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_full_jitter_stays_in_range() -> None:
    policy = RetryPolicy(retries=5, backoff=1.0, backoff_max=100.0)
    for attempts in (1, 2, 3):
        for _ in range(200):
            delay = policy.delay(attempts, status=503)
            assert delay is not None
            assert 0.0 <= delay <= 2 ** (attempts - 1)


def test_attempts_past_the_budget_stop() -> None:
    policy = RetryPolicy(retries=2)
    assert policy.delay(1, kind="connect_refused") is not None
    assert policy.delay(2, kind="connect_refused") is not None
    assert policy.delay(3, kind="connect_refused") is None
    assert RetryPolicy(retries=0).delay(1, kind="connect_refused") is None


@pytest.mark.parametrize("status", [408, 425, 429, 500, 502, 503, 504])
def test_retryable_statuses(status: int) -> None:
    assert RetryPolicy().delay(1, status=status) is not None


@pytest.mark.parametrize("status", [200, 204, 301, 400, 401, 403, 404, 410, 501])
def test_other_statuses_are_final(status: int) -> None:
    assert RetryPolicy().delay(1, status=status) is None


@pytest.mark.parametrize("kind", sorted(set(KINDS) - RETRY_KINDS))
def test_non_transient_kinds_are_final(kind: str) -> None:
    assert RetryPolicy().delay(1, kind=kind) is None


def test_only_idempotent_methods_are_retried() -> None:
    policy = RetryPolicy()
    for method in ("GET", "head", "PUT", "DELETE", "OPTIONS"):
        assert policy.delay(1, method=method, kind="connection_reset") is not None
    for method in ("POST", "PATCH"):
        assert policy.delay(1, method=method, kind="connection_reset") is None


def test_retry_after_seconds_replaces_backoff_and_is_capped() -> None:
    policy = RetryPolicy(retries=3, backoff=0.01, retry_after_max=5.0)
    assert policy.delay(1, status=429, headers={"Retry-After": "3"}) == 3.0
    assert policy.delay(1, status=503, headers={"Retry-After": "120"}) == 5.0
    # Only 429 and 503 carry a meaningful Retry-After.
    delay = policy.delay(1, status=500, headers={"Retry-After": "3"})
    assert delay is not None and delay <= 0.01


def test_retry_after_http_date() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    later = format_datetime(now + timedelta(seconds=42), usegmt=True)
    assert parse_retry_after(later, now=now) == 42.0
    earlier = format_datetime(now - timedelta(seconds=42), usegmt=True)
    assert parse_retry_after(earlier, now=now) == 0.0


@pytest.mark.parametrize("value", [None, "", "soon", "-5", "1.5e3"])
def test_unreadable_retry_after_is_ignored(value: str | None) -> None:
    assert parse_retry_after(value) is None
