"""Factories for the clinical db tests: a migrated database, users, slices, analyses."""

from __future__ import annotations

import numpy as np
from sqlalchemy.engine import Engine
from sqlmodel import Session

from db import clinical
from db.engine import make_engine
from db.migrate import upgrade_head
from db.models import Analysis, User


def migrated_engine(url: str) -> Engine:
    """The empty database at ``url`` (the ``empty_database_url`` fixture: SQLite or
    PostgreSQL), brought to the newest schema by Alembic; an engine on it."""
    upgrade_head(url)
    return make_engine(url)


def make_user(session: Session, username: str) -> User:
    user = User(
        username=username,
        full_name=f"Dr {username.title()}",
        email=f"{username}@clinic.example",
        password_hash="x" * 60,
        status="approved",
    )
    session.add(user)
    session.flush()
    return user


def make_slice(probability: float = 0.9, area: int = 16, seed: int = 0) -> clinical.SliceInput:
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, size=(32, 40, 3), dtype=np.uint8)
    mask = np.zeros((32, 40), bool)
    if area:
        mask[:4, : area // 4] = True
    return clinical.SliceInput(
        image=image,
        mask=mask,
        tumor_probability=probability,
        has_tumor=probability >= 0.5,
        findings={"area_px": area},
        source_name=f"slice{seed}.tif",
        spacing_mm=(0.5, 0.5),
    )


def make_analysis(session, owner_id: int, reference="CASE-1", probabilities=(0.9,)) -> Analysis:
    return clinical.create_analysis(
        session,
        owner_id=owner_id,
        case_reference=reference,
        slices=[make_slice(p, seed=i) for i, p in enumerate(probabilities)],
        source_name="case.tif",
        source_format="tiff",
        classifier=("brainloc-classifier", "1.0.0"),
        segmenter=("brainloc-segmenter", "1.0.0"),
        decision_threshold=0.5,
        findings={"n_slices": len(probabilities)},
    )
