"""URL credentials never survive redaction, and nothing else is changed."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from surefetch.redact import MASK, redact_text, redact_url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://user:pw@example.com/a", "http://***@example.com/a"),
        ("https://user@example.com", "https://***@example.com"),
        ("https://:pw@example.com:8443/x?y=1#z", "https://***@example.com:8443/x?y=1#z"),
        ("HTTP://User:PW@Example.COM/", "HTTP://***@Example.COM/"),
        ("ftp://anon:mail@ftp.example.com/f", "ftp://***@ftp.example.com/f"),
        # A raw "@" in the password: like urlsplit, the last "@" ends the userinfo.
        ("http://user:p@ss@example.com/", "http://***@example.com/"),
        # Percent-encoded characters are part of the userinfo.
        ("http://us%40er:p%2Fw@example.com/", "http://***@example.com/"),
        # A URL with credentials nested in the query is redacted too.
        (
            "http://example.com/login?next=https://u:p@other.example/",
            "http://example.com/login?next=https://***@other.example/",
        ),
    ],
)
def test_redact_url_hides_userinfo(url: str, expected: str) -> None:
    assert redact_url(url) == expected


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/",
        "https://example.com:8443/path/@user/page?q=a@b#c@d",
        "https://medium.com/@someone",
        "mailto:someone@example.com",
        "not a url at all",
        "",
    ],
)
def test_redact_url_leaves_urls_without_userinfo_alone(url: str) -> None:
    assert redact_url(url) == url


def test_redacted_url_keeps_host_port_and_path_as_urlsplit_sees_them() -> None:
    url = "https://bob:s3cr%20et@api.example.com:444/v1/items?id=7#frag"
    before, after = urlsplit(url), urlsplit(redact_url(url))
    assert after.username == MASK
    assert after.password is None
    assert (after.hostname, after.port, after.path, after.query, after.fragment) == (
        before.hostname,
        before.port,
        before.path,
        before.query,
        before.fragment,
    )


def test_redaction_is_idempotent() -> None:
    url = "http://user:pw@example.com/a"
    assert redact_url(redact_url(url)) == redact_url(url)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "Cannot connect to http://bob:hunter2@db.internal:5432/x (refused)",
            "Cannot connect to http://***@db.internal:5432/x (refused)",
        ),
        (
            "redirect from https://a:b@one.example/ to https://c:d@two.example/next",
            "redirect from https://***@one.example/ to https://***@two.example/next",
        ),
        ('{"url":"http://u:p@h.example/"}', '{"url":"http://***@h.example/"}'),
        ("<http://u:p@h.example>", "<http://***@h.example>"),
        ("see 'http://u:p@h.example' and more", "see 'http://***@h.example' and more"),
        (
            "line one\nhttp://u:p@h.example\nline three",
            "line one\nhttp://***@h.example\nline three",
        ),
    ],
)
def test_redact_text_hides_every_urls_userinfo(text: str, expected: str) -> None:
    assert redact_text(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "mail bob@example.com about http://example.com/x",
        "http://example.com/ failed for user@example.com",
        "'http://example.com' is down; ask ops@example.com",
        "HTTP 503 from the final response",
    ],
)
def test_redact_text_leaves_other_at_signs_alone(text: str) -> None:
    assert redact_text(text) == text


def test_redact_text_returns_text_without_at_signs_unchanged() -> None:
    text = "connection refused by 127.0.0.1:1"
    assert redact_text(text) is text


def test_no_password_survives_in_a_long_mixed_text() -> None:
    secrets = [f"pw{i}secret" for i in range(50)]
    text = " | ".join(f"http://user{i}:{s}@host{i}.example/p" for i, s in enumerate(secrets))
    redacted = redact_text(text)
    assert not any(s in redacted for s in secrets)
    assert redacted.count(f"{MASK}@") == 50
