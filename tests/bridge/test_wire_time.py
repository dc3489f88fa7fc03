"""`isoformat_z` (spec timestamps) keeps the exact output of its first, strftime-based form."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone

from mchat.wire import isoformat_z


def _reference(moment: datetime) -> str:
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def test_isoformat_z_matches_the_strftime_form():
    rng = random.Random(19)
    edges = [0, 1, 999, 1000, 1001, 499999, 500000, 998999, 999000, 999999]
    moments = [
        datetime(2025, 2, 3, 10, 0, 0, 0, tzinfo=UTC),
        datetime(1, 1, 1, 0, 0, 0, 999999, tzinfo=UTC),
        datetime(999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(1000, 1, 1, tzinfo=UTC),
        datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        # Another zone: converted to UTC, across a day and a year boundary.
        datetime(2026, 1, 1, 7, 30, 0, 123456, tzinfo=timezone(timedelta(hours=8))),
        datetime(2025, 12, 31, 20, 0, 0, 999999, tzinfo=timezone(timedelta(hours=-5, minutes=-30))),
    ]
    for _ in range(5000):
        base = datetime(1000, 1, 1, tzinfo=UTC) + timedelta(seconds=rng.randrange(280_000_000_000))
        zone = timezone(timedelta(minutes=rng.randrange(-14 * 60, 14 * 60 + 1)))
        moments.append(
            (base + timedelta(microseconds=rng.choice([*edges, rng.randrange(10**6)]))).astimezone(zone)
        )
    for moment in moments:
        assert isoformat_z(moment) == _reference(moment), moment
    assert isoformat_z(datetime(2025, 2, 3, 10, 0, 0, 999999, tzinfo=UTC)) == "2025-02-03T10:00:00.999Z"
