"""Recognising a study's pre-contrast, FLAIR and post-contrast series in one upload.

A study exported from a PACS holds every series of the examination: localisers, T2,
diffusion, and usually the three the models read (a T1-weighted series before contrast,
a FLAIR series and a T1-weighted series after contrast). Uploaded together, each would be
a single-sequence scan read as FLAIR. :func:`study_case` looks at what each series says it
is (a DICOM series' SeriesDescription or ProtocolName and ContrastBolusAgent, or another
file's name such as ``case_t1ce.nii.gz``) and, when exactly one series is recognised for
each of the three (the FLAIR series axial; of several candidates the one axial series),
combines them into one three-sequence case (:func:`brainloc.scan_align.combine_series`: as
they are when they lie on one grid, else resampled onto the FLAIR slices by their file
headers).
Anything less certain leaves the upload as it was, with a note saying why, so that the
user can pick the series by hand (the Analyze page's "A study: choose its series", with
:func:`guess_assignment` filling in what the names settle).

The rules are deliberately plain (:func:`sequence_from_text`): "FLAIR", "dark-fluid" or
Siemens' "TIRM" names FLAIR unless the name also says T1 (a T1-weighted FLAIR is a T1
series); "T1", "MPRAGE", "SPGR" or "BRAVO" names a T1-weighted series, which is
post-contrast when the name says so ("+C", "post", "Gd", "gado", "contrast", "CE", "T1C",
Italian "MDC", German "KM") or the DICOM header names a contrast agent, and pre-contrast
otherwise.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import replace

from brainloc.scan_align import combine_series
from brainloc.scans import ALL_SEQUENCES, SINGLE_SEQUENCE_NOTE, Scan, ScanError

#: How the note naming the series used for a recognised study begins.
RECOGNISED_PREFIX = "sequences recognised from the series' names"

_T1 = re.compile(r"(?<![a-z0-9])t1|mprage|spgr|bravo")
_FLAIR = re.compile(r"flair|dark ?fluid|tirm")
_CONTRAST = re.compile(
    r"\+ ?c(?![a-z])|\+ ?gd|c\+|(?<![a-z])(post|gd|gad|gado\w*|contrast|ce|mdc|km)(?![a-z])"
    r"|t1 ?(c|ce|gd)(?![a-z])"
)


def sequence_from_text(text: str, *, contrast_agent: bool = False) -> str | None:
    """The model channel a series name says it is: "pre-contrast", "FLAIR",
    "post-contrast", or None (T2, diffusion, a localiser, or a name that says nothing).

    Args:
        text: a series description, protocol name or file name.
        contrast_agent: the header names a contrast agent (DICOM ContrastBolusAgent).
    """
    words = re.sub(r"[_\-.]+", " ", text.lower())
    t1 = _T1.search(words) is not None
    if _FLAIR.search(words) and not t1:
        return "FLAIR"
    if not t1:
        return None
    return "post-contrast" if contrast_agent or _CONTRAST.search(words) else "pre-contrast"


def series_label(scan: Scan) -> str:
    """How a note names a series: its description, else its (first) file name."""
    header = scan.header
    if header is not None and header.description:
        return f"'{header.description}'"
    first = scan.names[0]
    if " [" in first:  # a slice of a multi-slice file: "case.nii.gz [slice 1]"
        return first.split(" [")[0]
    return first if scan.n_slices == 1 else f"{first} …"


def scan_sequence(scan: Scan) -> str | None:
    """The channel a single-sequence scan says it is, else None."""
    if not scan.single_sequence:
        return None
    header = scan.header
    agent = header is not None and header.contrast_agent
    return sequence_from_text(_name(scan), contrast_agent=agent)


def _axial(scan: Scan) -> bool:
    """Axial, or of unknown plane (a file that does not say)."""
    return scan.header is None or scan.header.plane in (None, "axial")


def _name(scan: Scan) -> str:
    """What a scan calls itself: a DICOM series' description, else its first file name."""
    header = scan.header
    return header.description if header is not None and header.description else scan.names[0]


def study_case(scans: Sequence[Scan]) -> tuple[list[Scan], tuple[str, ...]]:
    """The scans to analyse as one case, and notes for the user on what was recognised
    (not attached to the scans).

    The notes say what was recognised, or why the scans were left as they are (the caller
    says what it does then).

    Returns ``[combined]`` when exactly one single-sequence scan is recognised as each of
    pre-contrast, FLAIR (axial) and post-contrast (of several candidates, the one axial
    series) and the three can be combined (:func:`brainloc.scan_align.combine_series`); every
    other scan (colour maps and screenshots of a study included) is then left out and named
    in the note. Otherwise the scans are returned unchanged, with a note when the three
    sequences were recognised but could not be used together.
    """
    scans = list(scans)
    if len(scans) < 3:
        return scans, ()
    found = _candidates(scans)
    if not all(found.values()):
        return scans, ()
    ambiguous = [name for name in ALL_SEQUENCES if len(found[name]) > 1]
    if ambiguous:
        listed = "; ".join(
            f"{name}: {', '.join(series_label(scan) for scan in found[name])}" for name in ambiguous
        )
        return scans, (
            f"more than one series could be the {' and the '.join(ambiguous)} series "
            f"({listed}), so the series were not combined",
        )
    chosen = {name: found[name][0] for name in ALL_SEQUENCES}
    named = ", ".join(f"{name} {_chosen_label(name, chosen[name])}" for name in ALL_SEQUENCES)
    try:
        combined = combine_series(chosen)
    except ScanError as error:
        return scans, (f"the series {named} were recognised but cannot be combined: {error}",)
    others = [scan for scan in scans if not any(scan is pick for pick in chosen.values())]
    combined = with_upload_notes(combined, scans, chosen.values())
    note = f"{RECOGNISED_PREFIX}: {named}"
    if others:
        note += f"; not analysed: {', '.join(series_label(scan) for scan in others)}"
    return [combined], (note,)


def with_upload_notes(case: Scan, scans: Sequence[Scan], used: Iterable[Scan]) -> Scan:
    """``case`` (made of the ``used`` scans) also carrying the notes about the whole upload
    (what a ZIP skipped, series too long to read) that would be lost with its first scan when
    that scan is not ``used``.

    :func:`brainloc.scans.read_uploads` puts them on the first scan. Its own conversion notes
    come too; they are those the used series carry, or the single-sequence note that
    combining replaces (left out here).
    """
    first = scans[0]
    if any(first is scan for scan in used):
        return case
    carried = [note for note in first.notes if note != SINGLE_SEQUENCE_NOTE]
    return replace(case, notes=tuple(dict.fromkeys((*carried, *case.notes))))


def _candidates(scans: Sequence[Scan]) -> dict[str, list[Scan]]:
    """The scans that could be each model channel, by their names."""
    found: dict[str, list[Scan]] = {name: [] for name in ALL_SEQUENCES}
    for scan in scans:
        name = scan_sequence(scan)
        if name is not None:
            found[name].append(scan)
    # The case is shown and analysed in the FLAIR series' slices, which must be axial; the
    # others may be resampled onto them (brainloc.scan_align), but an axial one is preferred.
    found["FLAIR"] = [scan for scan in found["FLAIR"] if _axial(scan)]
    for name in ALL_SEQUENCES:
        axial = [scan for scan in found[name] if _axial(scan)]
        if len(found[name]) > 1 and axial:
            found[name] = axial
    return found


def guess_assignment(scans: Sequence[Scan]) -> dict[str, int | None]:
    """For each model channel, the index of the one scan whose name says it is that channel
    (as :func:`study_case` would choose), or None when none or several do."""
    found = _candidates(scans)
    guess: dict[str, int | None] = {}
    for name in ALL_SEQUENCES:
        unique = found[name][0] if len(found[name]) == 1 else None
        guess[name] = next((k for k, scan in enumerate(scans) if scan is unique), None)
    return guess


def describe_series(scan: Scan) -> str:
    """One line for choosing a series: name, plane, slices and matrix, e.g.
    "'AX T2 FLAIR' · axial · 20 slices of 256×256"."""
    parts = [series_label(scan)]
    if scan.header is not None and scan.header.plane:
        parts.append(scan.header.plane)
    if not scan.single_sequence:
        parts.append("three sequences as colour")
    parts.append(f"{scan.n_slices} slice(s) of {scan.shape[0]}×{scan.shape[1]}")
    return " · ".join(parts)


def _chosen_label(name: str, scan: Scan) -> str:
    label = series_label(scan)
    if name == "post-contrast" and sequence_from_text(_name(scan)) != name:
        label += " (contrast agent in its header)"
    return label
