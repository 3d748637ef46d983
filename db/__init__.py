"""Database layer: SQLModel tables, the engine and sessions, typed data-access functions and
Alembic migrations.

Nothing outside this package writes a ``select()``. Data-access functions are keyword-only,
take a :class:`sqlmodel.Session` first and, for clinical data, always filter by owner.
"""
