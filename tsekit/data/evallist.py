"""Evaluation lists (``mixtures.csv``): what ``tsekit simulate`` writes and ``eval``/``extract --list`` read.

Required columns: ``mixture_id,mixture_path,enrollment_path,target_path`` (paths relative to the CSV;
``target_path`` may be empty when no reference exists). An optional ``more_enrollments`` column lists further
enrollments of the target (paths joined by ``;``; a selector combines them). Any further columns (simulation parameters:
``sir_db``, ``snr_db``, ``rt60``, ``target_speaker``, ...) are kept as strings in ``extras``.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tsekit.errors import TsekitError
from tsekit.io import atomic_open

COLUMNS = ("mixture_id", "mixture_path", "enrollment_path", "target_path")
MORE_ENROLLMENTS = "more_enrollments"


@dataclass(frozen=True)
class EvalItem:
    mixture_id: str
    mixture: Path
    enrollment: Path
    target: Path | None
    extras: dict[str, str] = field(default_factory=dict)
    where: str = ""  # file:line of its row
    more_enrollments: tuple[Path, ...] = ()

    @property
    def enrollments(self) -> Path | list[Path]:
        """What to enroll: the one enrollment, or all of them for a selector to combine."""
        return [self.enrollment, *self.more_enrollments] if self.more_enrollments else self.enrollment


@dataclass(frozen=True)
class SkippedRow:
    """A row of an evaluation list that was left out, and why."""

    where: str
    mixture_id: str
    reason: str

    def __str__(self) -> str:
        return f"{self.where} ({self.mixture_id or 'no mixture_id'}): {self.reason}"


def read_eval_list(path: str | Path, *, check_files: bool = True, skipped: list[SkippedRow] | None = None) -> list[EvalItem]:
    """Parse and validate; problems raise a one-line TsekitError naming ``file:line``. With ``skipped``,
    a bad row is recorded there and left out instead (a bad file or header still raises)."""
    path = Path(path)
    if not path.is_file():
        raise TsekitError(f"{path}: no such evaluation list")
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            header = reader.fieldnames or []
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise TsekitError(f"{path}: not a readable CSV ({type(exc).__name__}: {exc})") from None
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise TsekitError(f"{path}: missing column(s) {', '.join(missing)} (need {','.join(COLUMNS)})")
    if not rows:
        raise TsekitError(f"{path}: no rows")
    items: list[EvalItem] = []
    seen: set[str] = set()
    for line, row in enumerate(rows, start=2):
        mid = (row["mixture_id"] or "").strip()
        try:
            items.append(_parse_row(path, f"{path}:{line}", row, mid, seen, check_files))
        except TsekitError as exc:
            if skipped is None:
                raise TsekitError(f"{path}:{line}: {exc}") from None
            skipped.append(SkippedRow(f"{path}:{line}", mid, str(exc)))
        seen.add(mid)
    return items


def _parse_row(path: Path, where: str, row: dict[str, str], mid: str, seen: set[str], check_files: bool) -> EvalItem:
    if not mid:
        raise TsekitError("empty mixture_id")
    if mid in seen:
        raise TsekitError(f"duplicate mixture_id '{mid}'")
    paths: dict[str, Path | None] = {}
    for col in COLUMNS[1:]:
        value = (row[col] or "").strip()
        if not value:
            if col == "target_path":
                paths[col] = None
                continue
            raise TsekitError(f"empty {col}")
        full = path.parent / value
        if check_files and not full.is_file():
            raise TsekitError(f"{col} {full} does not exist")
        paths[col] = full
    extras = {k: (v or "") for k, v in row.items() if k not in COLUMNS and k is not None}
    more = tuple(path.parent / p.strip() for p in extras.pop(MORE_ENROLLMENTS, "").split(";") if p.strip())
    missing = next((p for p in more if check_files and not p.is_file()), None)
    if missing is not None:
        raise TsekitError(f"{MORE_ENROLLMENTS} {missing} does not exist")
    mixture, enrollment = paths["mixture_path"], paths["enrollment_path"]
    assert mixture is not None and enrollment is not None
    return EvalItem(mid, mixture, enrollment, paths["target_path"], extras, where, more)


def write_eval_list(path: str | Path, rows: Iterable[Mapping[str, Any]]) -> Path:
    """Write rows atomically. Path values are made relative to the CSV's folder."""
    path = Path(path)
    rows = list(rows)
    extra_cols: list[str] = []
    for row in rows:
        for key in row:
            if key not in COLUMNS and key not in extra_cols:
                extra_cols.append(key)
    root = path.parent.resolve()

    def cell(value: Any) -> str:
        if value is None:
            return ""
        if isinstance(value, Path):
            full = value.resolve()
            return full.relative_to(root).as_posix() if full.is_relative_to(root) else str(full)
        if isinstance(value, float):
            return f"{value:.6g}"
        return str(value)

    with atomic_open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow([*COLUMNS, *extra_cols])
        for row in rows:
            writer.writerow([cell(row.get(c)) for c in (*COLUMNS, *extra_cols)])
    return path
