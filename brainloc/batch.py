"""``python -m brainloc analyze FILE_OR_DIR... [--json] [--out DIR]``: batch analysis.

``python -m brainloc analyze --sequences PRE FLAIR POST``: one case whose pre-contrast, FLAIR
and post-contrast series are given apart (each a file, or a folder with one DICOM series),
combined slice by slice as the app's "One upload per sequence" does
(:func:`brainloc.scan_align.combine_series`: series on one grid as they are, DICOM series on
other grids resampled onto the FLAIR slices by their headers). Its lines and pictures are
named after the FLAIR file.

Each slice gets one line on stdout (with ``--json``: one JSON object per line
with ``file``, ``slice``, ``tumor_probability``, ``has_tumor``,
``tumor_area_px``, a few findings, ``diameters`` (longest and perpendicular, with their unit; None
without tumor), ``models`` and ``arithmetic``). A file that cannot be read prints
``error: FILE: reason`` on stderr and the rest still run; the exit code is 2
if any file failed, 1 if the models are missing, 0 otherwise. A wrong setting the readers or the
models use (``BRAINLOC_MAX_SLICES``, ``BRAINLOC_MAX_IMAGE_PIXELS``, the upload-size limits
``BRAINLOC_MAX_UPLOAD_PIXELS``, ``BRAINLOC_MAX_ARCHIVE_MB`` and ``BRAINLOC_MAX_DECODED_MB``,
``BRAINLOC_INFERENCE_PRECISION``) is reported as itself before anything is read (exit 2).

``--out DIR`` writes ``<name>_overlay.png`` and ``<name>_mask.png`` (``<name>_s<n>_...`` for
each slice of a multi-slice scan). It is created when missing and checked before any model is
loaded: a file, or a folder that cannot be written, is refused (exit 2). No existing file is
ever overwritten: a picture name the run would write that is already there is refused before
anything is read (exit 2, naming it), and one met only while writing stops the run there.

Directories are walked recursively in natural order (``case_2`` before
``case_10``); Kaggle ``*_mask.*`` files and files without a scan extension are
skipped, except DICOM files named as a PACS exports them: without any extension
(``IM0001``) or by their UID (``1.2.840.113619.2.55.3.7``), with or without the preamble,
and the DICOM files of one folder are read together as a series. A ZIP is read as
the image files inside it (:func:`brainloc.scans.expand_archives`). When a ZIP, or the
DICOM files of one folder, hold a study whose pre-contrast, FLAIR and post-contrast
series are recognised by their names, those three are analysed as one case
(:func:`brainloc.study.study_case`; a ``note:`` line on stderr names the series). The
numbered slices of one case (``<case>_<n>.tif`` in one folder), like a series or
any multi-slice file, are decided as one volume (the volume rule of
:mod:`brainloc.decision`); they still get one line per file.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from brainloc.findings_text import probability_text
from brainloc.model_meta import DEFAULT_MODELS_DIR

_DICOM_SUFFIXES = (".dcm", ".dicom", ".ima")


@dataclass(frozen=True)
class Job:
    """One unit of reading: a file, or the DICOM files of one folder."""

    label: str
    paths: tuple[Path, ...]


def _natural_key(path: Path) -> list:
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", str(path))]


def _is_mask(path: Path) -> bool:
    return re.search(r"_mask\.[a-z.]+$", path.name.lower()) is not None


def collect_jobs(paths: list[Path]) -> list[Job]:
    """Expand files and directories into jobs, in the order given (directories sorted).

    A folder without any scan file becomes a job without paths, reported as an error.
    """
    from brainloc.scans import EXTENSIONS, _suffix

    jobs: list[Job] = []
    for path in paths:
        if not path.is_dir():
            jobs.append(Job(str(path), (path,)))
            continue
        before = len(jobs)
        files = sorted((p for p in path.rglob("*") if p.is_file()), key=_natural_key)
        series: dict[Path, list[Path]] = {}
        for file in files:
            suffix = _suffix(file.name)
            dicom = suffix in _DICOM_SUFFIXES or _is_unnamed_dicom(file)
            if file.name.startswith(".") or _is_mask(file):
                continue
            if suffix not in EXTENSIONS and not dicom:
                continue
            if dicom:
                if file.parent not in series:
                    series[file.parent] = []
                    jobs.append(Job(str(file.parent), ()))  # placeholder keeps the order
                series[file.parent].append(file)
            else:
                jobs.append(Job(str(file), (file,)))
        # Fill this folder's DICOM placeholders; earlier folders' jobs (an empty folder's
        # job has no paths either) are left as they are.
        jobs[before:] = [
            Job(job.label, tuple(series[Path(job.label)])) if not job.paths else job
            for job in jobs[before:]
        ]
        if len(jobs) == before:
            jobs.append(Job(str(path), ()))  # an empty folder is reported, not silently skipped
    return jobs


def _is_unnamed_dicom(file: Path) -> bool:
    """A DICOM file named as a PACS exports them: without an extension (``IM0001``;
    DICOMDIR is the index) or by its UID (``1.2.840.113619.2.55.3.7``), with or without the
    128-byte preamble. The rule of an upload (:func:`brainloc.scans._is_dicom`)."""
    from brainloc.scans import _NOT_SCANS, _is_dicom, _may_be_raw_dicom

    if file.name.lower() in _NOT_SCANS or not _may_be_raw_dicom(file.name):
        return False
    try:
        with file.open("rb") as handle:
            return _is_dicom(handle.read(132), file.name)
    except OSError:
        return False


def _output_stem(job: Job, used: set[str]) -> str:
    name = Path(job.label).name
    stem = name[: -len(".nii.gz")] if name.lower().endswith(".nii.gz") else Path(name).stem
    candidate, number = stem, 2
    while candidate in used:
        candidate, number = f"{stem}_{number}", number + 1
    used.add(candidate)
    return candidate


class OutputError(Exception):
    """``--out`` cannot take the run's pictures; the message is printed as ``error: ...``."""


def prepare_out_dir(out_dir: Path) -> None:
    """Create ``--out`` when missing and check that files can be made in it (before any model
    is loaded or scan read); raises :class:`OutputError` saying why not."""
    import tempfile

    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(f"--out {out_dir}: it is a file, not a folder")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out_dir, prefix=".brainloc-write-check-"):
            pass
    except OSError as exc:
        raise OutputError(f"--out {out_dir}: cannot write there ({_os_reason(exc)})") from exc


def _os_reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


#: Picture names of one input: ``<stem>``, ``<stem>_<n>`` (a ZIP's or study's further scans,
#: or a name met before), each maybe with ``_s<slice>``, then the kind.
_PICTURE_RE = r"(_\d+)?(_s\d+)?_(overlay|mask)\.png"


def refuse_existing_pictures(out_dir: Path, jobs: list[Job]) -> None:
    """Refuse (:class:`OutputError`, naming the file) when ``--out`` already holds a picture
    the run would write, before anything is read or written. The names are foreseen from the
    inputs' names; :func:`_write_png` still refuses any existing file at write time."""
    existing = {path.name for path in out_dir.iterdir()}
    used: set[str] = set()
    for job in jobs:
        if not job.paths:
            continue
        stem = _output_stem(job, used)
        pattern = re.compile(re.escape(stem) + _PICTURE_RE)
        for name in sorted(existing):
            if pattern.fullmatch(name):
                raise _exists_error(out_dir / name)


def _exists_error(path: Path) -> OutputError:
    return OutputError(
        f"--out {path.parent}: {path.name} already exists and is not overwritten "
        "(choose another folder)"
    )


def _write_png(path: Path, array) -> None:
    """Write one PNG, never over an existing file; the bytes are encoded first, so a failure
    leaves no partial file."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    try:
        with path.open("xb") as handle:
            try:
                handle.write(buffer.getvalue())
            except OSError:
                handle.close()
                path.unlink(missing_ok=True)
                raise
    except FileExistsError as exc:
        raise _exists_error(path) from exc
    except OSError as exc:
        reason = _os_reason(exc)
        raise OutputError(f"--out {path.parent}: cannot write {path.name} ({reason})") from exc


def _write_pictures(out_dir: Path, stem: str, image, result) -> dict:
    from brainloc.overlay import mask_png_array, render

    overlay_path = out_dir / f"{stem}_overlay.png"
    mask_path = out_dir / f"{stem}_mask.png"
    picture = render(image, result.mask, sequence="FLAIR", style="fill+outline", opacity=0.35)
    _write_png(overlay_path, picture)
    _write_png(mask_path, mask_png_array(result.mask))
    return {"overlay_png": str(overlay_path), "mask_png": str(mask_path)}


def _line(file: str, index: int, count: int, result, extra: dict, as_json: bool) -> str:
    findings = result.findings
    calipers = findings.calipers
    if as_json:
        record = {
            "file": file,
            "slice": index,
            "slice_name": result.name,
            "tumor_probability": round(result.tumor_probability, 6),
            "has_tumor": result.has_tumor,
            "tumor_area_px": result.tumor_area_px,
            "tumor_area_mm2": findings.area_mm2,
            "percent_of_brain": findings.percent_of_brain,
            "side": findings.side,
            "regions": findings.regions,
            "diameters": {
                "longest": round(calipers.longest, 2),
                "perpendicular": round(calipers.perpendicular, 2),
                "unit": calipers.unit,
            }
            if calipers
            else None,
            **extra,
        }
        return json.dumps(record)
    where = file if count == 1 else f"{file} [slice {index}]"
    decision = "TUMOR" if result.has_tumor else "no tumor"
    area = f"area {result.tumor_area_px} px"
    if findings.area_mm2 is not None:
        area += f" ({findings.area_mm2:.1f} mm²)"
    if calipers:
        area += f", diameters {calipers.text}"
    return f"{where}: {decision}, probability {probability_text(result.tumor_probability)}, {area}"


class _Runner:
    """Analyses scans as they are read; single-slice files of one size share model batches."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.pipeline = None
        self.used_stems: set[str] = set()
        self.pending: list[tuple[Job, object]] = []
        self.pending_key = None  # the shared _key() of the pending slices

    def add(self, job: Job, scan) -> bool:
        """Queue or analyse one scan; False when the models cannot be loaded."""
        if self.pipeline is None:
            self.pipeline = _load_pipeline(self.args.models_dir)
            if self.pipeline is None:
                return False
        key = self._key(job, scan)
        if self.pending and (
            scan.n_slices > 1
            or key != self.pending_key
            # A volume is analysed whole (the volume rule needs every slice of it).
            or (key[-1] is None and len(self.pending) >= self.args.batch_size)
        ):
            self.flush()
        if scan.n_slices > 1:
            case = self.pipeline.analyze_scan(scan, batch_size=self.args.batch_size)
            self._emit(job, scan, case.slices)
        else:
            self.pending.append((job, scan))
            self.pending_key = key
        return True

    @staticmethod
    def _key(job: Job, scan):
        """Single slices with equal keys share model calls. The last part names the volume
        of a ``<case>_<n>.tif`` slice (its folder and case), None for any other file."""
        from brainloc.kaggle_layout import SLICE_RE

        match = SLICE_RE.match(job.paths[0].name) if len(job.paths) == 1 else None
        volume = (str(job.paths[0].parent), match["case"]) if match else None
        return (scan.shape, scan.spacing_mm, scan.slice_thickness_mm, volume)

    def flush(self) -> None:
        if not self.pending:
            return
        import numpy as np

        from brainloc.kaggle_layout import SLICE_RE, consecutive_runs

        first = self.pending[0][1]
        one_case = self.pending_key[-1] is not None
        if not one_case:
            runs = [list(range(len(self.pending)))]  # unrelated slices, each decided alone
        else:  # one case: each run of consecutive slice numbers is a volume, in number order
            numbers = [int(SLICE_RE.match(j.paths[0].name)["index"]) for j, _ in self.pending]
            runs = consecutive_runs(numbers)
        results = {}
        for run in runs:
            case = self.pipeline.analyze_case(
                np.concatenate([self.pending[k][1].slices for k in run]),
                batch_size=self.args.batch_size,
                spacing_mm=first.spacing_mm,
                slice_thickness_mm=first.slice_thickness_mm,
                names=[self.pending[k][1].names[0] for k in run],
                volume=one_case,
            )
            results.update(zip(run, case.slices, strict=True))
        for k, (job, scan) in enumerate(self.pending):
            self._emit(job, scan, (results[k],))
        self.pending, self.pending_key = [], None

    def _emit(self, job: Job, scan, results) -> None:
        args = self.args
        stem = _output_stem(job, self.used_stems) if args.out is not None else ""
        for index, result in enumerate(results):
            # Provenance in every JSON line: which models, in which arithmetic.
            extra = (
                {"models": dict(result.model_versions), "arithmetic": self.pipeline.precision}
                if args.json
                else {}
            )
            if args.out is not None:
                name = stem if scan.n_slices == 1 else f"{stem}_s{index:03d}"
                extra |= _write_pictures(args.out, name, scan.slices[index], result)
            print(_line(job.label, index, scan.n_slices, result, extra, args.json), flush=True)


def run(args: argparse.Namespace) -> int:
    """Analyse every input; see the module docstring for output and exit codes."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if args.batch_size < 1:
        print("error: --batch-size must be at least 1", file=sys.stderr)
        return 2
    if bool(args.paths) == bool(args.sequences):
        print("error: give FILE_OR_DIR arguments or --sequences PRE FLAIR POST", file=sys.stderr)
        return 2
    from brainloc.settings import inference_precision, scan_limits

    try:
        # The settings the readers and the models use, checked once before anything runs: a
        # wrong value is reported as itself, not as a scan that cannot be read.
        scan_limits()
        inference_precision()
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        if args.out is not None:
            prepare_out_dir(args.out)
        jobs = [_sequences_job(args)] if args.sequences else collect_jobs(list(args.paths))
        if args.out is not None:
            refuse_existing_pictures(args.out, jobs)
        if args.sequences:
            return _run_sequences(args)
        return _run_jobs(args, jobs)
    except OutputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _run_jobs(args: argparse.Namespace, jobs: list[Job]) -> int:
    from brainloc.scans import ScanError, read_paths
    from brainloc.study import study_case

    failed = False
    runner = _Runner(args)
    for job in jobs:
        if not job.paths:
            runner.flush()
            print(f"error: {job.label}: no scan files found in this folder", file=sys.stderr)
            failed = True
            continue
        try:
            scans, notes = study_case(read_paths(job.paths))
        except ScanError as exc:
            # Results already read are printed first, so output stays in input order.
            runner.flush()
            print(f"error: {job.label}: {_strip_label(str(exc), job)}", file=sys.stderr)
            failed = True
            continue
        for note in notes:
            # Unless a case was recognised, every scan is analysed on its own.
            then = "" if len(scans) == 1 else "; each scan is analysed on its own"
            print(f"note: {job.label}: {note}{then}", file=sys.stderr)
        for scan in scans:
            if not runner.add(job, scan):
                return 1
    runner.flush()
    return 2 if failed else 0


def _run_sequences(args: argparse.Namespace) -> int:
    """One case from three single-sequence series (``--sequences PRE FLAIR POST``)."""
    from brainloc.scan_align import combine_series
    from brainloc.scans import (
        ALL_SEQUENCES,
        ScanError,
        read_paths,
        refuse_repeated_sequences,
        sequence_scan,
    )

    series, contents = {}, {}
    for name, path in zip(ALL_SEQUENCES, args.sequences, strict=True):
        jobs = [job for job in collect_jobs([path]) if job.paths]
        try:
            if len(jobs) != 1:
                raise ScanError("give one file, or one folder holding one DICOM series")
            series[name] = sequence_scan(name, read_paths(jobs[0].paths))
            contents[name] = [file.read_bytes() for file in jobs[0].paths]
        except ScanError as exc:
            message = _strip_label(str(exc), jobs[0]) if len(jobs) == 1 else str(exc)
            print(f"error: {name} {path}: {message}", file=sys.stderr)
            return 2
    try:
        refuse_repeated_sequences(contents)
        scan = combine_series(series)
    except ScanError as exc:
        print(f"error: sequences: {exc}", file=sys.stderr)
        return 2
    runner = _Runner(args)
    if not runner.add(_sequences_job(args), scan):
        return 1
    runner.flush()
    return 0


def _sequences_job(args: argparse.Namespace) -> Job:
    """The one job of ``--sequences``: named after the FLAIR series."""
    return Job(str(args.sequences[1]), tuple(args.sequences))


def _strip_label(message: str, job: Job) -> str:
    """ScanError messages start with the file name; when the job is that file, the error line
    names it already (a folder's job keeps it, to say which of its files failed)."""
    for path in job.paths:
        prefix = f"{path.name}: "
        if message.startswith(prefix) and Path(job.label).name == path.name:
            return message[len(prefix) :]
    return message


def _load_pipeline(models_dir: Path):
    from brainloc.inference import ModelsNotFoundError, get_pipeline

    try:
        return get_pipeline(models_dir)
    except (ModelsNotFoundError, ValueError) as exc:
        print(f"error: models: {exc}", file=sys.stderr)
        return None


def register(subparsers) -> None:
    """Add the ``analyze`` subcommand to the ``python -m brainloc`` parser."""
    parser = subparsers.add_parser(
        "analyze",
        help="analyse scan files or folders and print one result per slice",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("paths", nargs="*", type=Path, metavar="FILE_OR_DIR")
    parser.add_argument(
        "--sequences",
        nargs=3,
        type=Path,
        metavar=("PRE", "FLAIR", "POST"),
        help="one case given as its three co-registered series (each a file or a DICOM folder)",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per slice and line")
    parser.add_argument(
        "--out",
        type=Path,
        help="write <name>_overlay.png and <name>_mask.png here (never over an existing file)",
    )
    parser.add_argument(
        "--models-dir",
        type=Path,
        default=Path(os.environ.get("BRAINLOC_MODELS_DIR") or DEFAULT_MODELS_DIR),
        help="default: $BRAINLOC_MODELS_DIR or %(default)s",
    )
    parser.add_argument(
        "--batch-size", type=int, default=16, help="slices per model call (default: %(default)s)"
    )
    parser.set_defaults(func=run)
