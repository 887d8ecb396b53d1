"""`ServerLimits`, `Security` and the `--limit` parser: defaults in one place, bad values named."""

from __future__ import annotations

import pytest

from search.serve.config import Security, ServerLimits, is_loopback, parse_limits


def test_limits_parse_by_name_and_keep_the_other_defaults():
    limits = parse_limits(["max_k=5", "coalesce_wait_ms=1.5", " max_queue = 7"])
    assert (limits.max_k, limits.coalesce_wait_ms, limits.max_queue) == (5, 1.5, 7)
    assert limits.max_batch == ServerLimits().max_batch
    assert limits.describe()["max_k"] == 5


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("max_kk=5", "NAME one of max_body_bytes"),
        ("max_k", "expected NAME=VALUE"),
        ("max_k=x", "'x' is not an integer"),
        ("coalesce_wait_ms=fast", "is not a number"),
        ("max_k=0", "max_k must be >= 1"),
    ],
)
def test_bad_limits_are_named(item, message):
    with pytest.raises(ValueError, match=message):
        parse_limits([item])


def test_security_needs_a_key_off_loopback_and_answers_loopback_names():
    assert is_loopback("127.0.0.5")
    assert is_loopback("::1")
    assert is_loopback("localhost")
    assert not is_loopback("0.0.0.0")
    with pytest.raises(ValueError, match="needs an API key"):
        Security(host="0.0.0.0")
    assert Security(host="0.0.0.0", api_key="k").host_names() == ("0.0.0.0",)
    assert set(Security(allowed_hosts=("search.local",)).host_names()) == {
        "127.0.0.1",
        "localhost",
        "::1",
        "search.local",
    }
