"""Speed of the clinical workflow around the models: store a case, reopen it, issue a report.

    python -m benchmarks.bench_workflow [--slices 40] [--repeats 5]

Run by hand, not by the test suite. It uses synthetic 256x256 slices and masks (no dataset
files) on a temporary SQLite database migrated by Alembic, and prints the median of
``--repeats`` runs for each step the pages take after the pipeline has answered:

- save: :func:`brainloc.casework.save_outcome` of a whole case (scans and masks stored
  losslessly, one transaction);
- reopen: :func:`brainloc.casework.load_case` (decode every slice), as the case page does;
- report: :func:`brainloc.report.build_report` of the case, and the bytes' size;
- history: :func:`db.clinical.list_analyses` with a text filter over 200 analyses.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from sqlmodel import Session

from brainloc.case_report import Author, report_data
from brainloc.casework import AnalyzedSlice, Outcome, load_case, save_outcome
from brainloc.findings import case_findings, slice_findings
from brainloc.report import build_report
from brainloc.results import SliceResult
from db import clinical
from db.engine import make_engine
from db.migrate import upgrade_head
from db.models import User


def _outcome(slices: int) -> Outcome:
    rng = np.random.default_rng(0)
    rows, cols = np.mgrid[:256, :256]
    brain = ((rows - 128) / 100) ** 2 + ((cols - 128) / 85) ** 2 <= 1
    items = []
    for index in range(slices):
        image = np.where(brain[..., None], rng.integers(40, 200, (256, 256, 3)), 0).astype(np.uint8)
        mask = np.zeros((256, 256), bool)
        if slices // 4 <= index < 3 * slices // 4:
            mask[100:140, 60 : 60 + 2 * index] = True
        findings = slice_findings(mask, image, (0.9, 0.9))
        result = SliceResult(0.9 if mask.any() else 0.1, bool(mask.any()), mask, findings, 0.5, {})
        items.append(AnalyzedSlice(image, f"slice_{index + 1}.tif", result, (0.9, 0.9), 3.0))
    summary = case_findings([s.result.findings.area_px for s in items], (0.9, 0.9), 3.0)
    return Outcome(
        tuple(items), summary, "bench.tif", "tiff", ("pre-contrast", "FLAIR", "post-contrast"),
        (), ("brainloc-classifier", "1"), ("brainloc-segmenter", "1"), 0.5,
    )  # fmt: skip


def _median(function, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    outcome = _outcome(args.slices)
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{Path(folder) / 'bench.db'}"
        upgrade_head(url)
        engine = make_engine(url)
        with Session(engine, expire_on_commit=False) as session:
            user = User(username="bench", full_name="Dr Bench", email="b@x.example",
                        password_hash="x", status="approved")  # fmt: skip
            session.add(user)
            session.commit()
        ids: list[int] = []

        def save() -> None:
            with Session(engine) as session:
                ids.append(save_outcome(session, owner_id=user.id, case_reference=f"C{len(ids)}",
                                        outcome=outcome))  # fmt: skip
                session.commit()

        def reopen():
            with Session(engine) as session:
                return load_case(session, owner_id=user.id, analysis_id=ids[0])

        save_s = _median(save, args.repeats)
        reopen_s = _median(reopen, args.repeats)
        case = reopen()
        author = Author(user.id, "Dr Bench", "Radiologist", "Bench Hospital")
        data = report_data(case, author=author, notes="Bench note.", note_version=1,
                           issued_at=datetime.now(UTC))  # fmt: skip
        report_s = _median(lambda: build_report(data), args.repeats)
        size = len(build_report(data))
        while len(ids) < 200:
            with Session(engine) as session:
                ids.append(clinical.create_analysis(
                    session, owner_id=user.id, case_reference=f"H{len(ids)}",
                    slices=[clinical.SliceInput(np.zeros((8, 8, 3), np.uint8),
                                                np.zeros((8, 8), bool), 0.2, False)],
                ).id)  # fmt: skip
                session.commit()

        def history():
            with Session(engine) as session:
                return clinical.list_analyses(session, owner_id=user.id, text="C1")

        history_s = _median(history, args.repeats)
        stored = Path(folder, "bench.db").stat().st_size
        engine.dispose()
    print(f"case of {args.slices} slices (256x256x3), median of {args.repeats} runs")
    print(f"  save (scans + masks, one transaction): {save_s * 1000:8.1f} ms")
    print(f"  reopen (decode every slice):           {reopen_s * 1000:8.1f} ms")
    print(f"  PDF report:                            {report_s * 1000:8.1f} ms")
    print(f"  PDF size:                              {size / 1024:8.0f} KiB")
    print(f"  history text search, 200 analyses:     {history_s * 1000:8.1f} ms")
    print(f"  database size after the runs:          {stored / 1024 / 1024:8.1f} MiB")


if __name__ == "__main__":
    main()
