"""Column types shared by the tables.

Timestamps are stored as naive UTC (portable across SQLite and PostgreSQL) and handed back
to Python as timezone-aware UTC datetimes, so comparisons never mix naive and aware values.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import DateTime
from sqlalchemy.types import TypeDecorator


def utc_now() -> datetime:
    """The current time as an aware UTC datetime (the default clock everywhere)."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator):
    """A DateTime column that accepts and returns aware UTC datetimes."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("timestamps must be timezone-aware (use db.types.utc_now())")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC)
