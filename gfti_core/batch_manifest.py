"""The `gfti batch` manifest: a CSV with one concept per row.

Columns: `images` (folder of the concept's images, relative to the manifest's folder unless absolute), `token`
(the new word; it also names the concept's files) and, optionally, any `InversionConfig` field (`generations`,
`popsize`, `num-vectors`, ...). An empty cell takes the command line's value, else the config default.
Every row is checked before any work starts, and every bad row is reported with its line number and the fix.
"""
from __future__ import annotations

import csv
import difflib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import ConfigError, InversionConfig, field_specs
from .errors import GFTIError
from .images import list_images
from .safe_io import display_path, safe_stem

REQUIRED = ("images", "token")
_TRUE, _FALSE = {"1", "true", "yes", "on", "y"}, {"0", "false", "no", "off", "n"}


class ManifestError(GFTIError):
    """One or more manifest rows are bad; the message lists each with its line number and the fix."""


@dataclass(frozen=True)
class Concept:
    line: int                      # line of the manifest this concept came from (1 = the header)
    token: str
    images: Path
    given: dict[str, Any]          # config fields set on the command line or in the row (the row wins)


def read_manifest(path: str | Path, defaults: dict[str, Any]) -> list[Concept]:
    """Every concept of the manifest, or a `ManifestError` naming every bad row (nothing has run yet)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")  # spreadsheet programs write a byte-order mark
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(f"cannot read manifest {display_path(path)} ({exc}); pass a UTF-8 CSV file with "
                            "the columns images,token") from exc
    rows = list(csv.reader(io.StringIO(text)))
    if not rows:
        raise ManifestError(f"{display_path(path)} is empty; write a header line 'images,token' and one row per "
                            "concept")
    columns, problems = _columns(rows[0])
    concepts: list[Concept] = []
    if not problems:
        concepts, problems = _rows(rows[1:], columns, defaults, path.parent)
    if problems:
        raise ManifestError(f"{display_path(path)} has {len(problems)} problem(s), nothing was started:\n  "
                            + "\n  ".join(problems))
    if not concepts:
        raise ManifestError(f"{display_path(path)} lists no concepts; add one row per concept under the header")
    return concepts


def _columns(header: list[str]) -> tuple[list[str], list[str]]:
    """Header cells as field names (`num-vectors` -> `num_vectors`), and what is wrong with them."""
    known = {f.name for f in field_specs()}
    names = [cell.strip().lower().replace("-", "_") for cell in header]
    problems = []
    for name in names:
        if name and name not in known and name not in REQUIRED:
            near = difflib.get_close_matches(name, sorted(known | set(REQUIRED)), n=1)
            hint = f"did you mean {near[0]!r}? " if near else ""
            problems.append(f"line 1: unknown column {name!r}; {hint}columns are images, token and the options of "
                            "`gfti train` (e.g. generations, popsize)")
    for name in sorted({n for n in names if n and names.count(n) > 1}):
        problems.append(f"line 1: column {name!r} appears twice; keep one")
    for name in REQUIRED:
        if name not in names:
            problems.append(f"line 1: the header has no {name!r} column; the header needs at least 'images,token'")
    return names, problems


def _rows(rows: list[list[str]], columns: list[str], defaults: dict[str, Any],
          base: Path) -> tuple[list[Concept], list[str]]:
    concepts, problems, seen = [], [], {}
    for line, row in enumerate(rows, start=2):
        if not any(cell.strip() for cell in row):
            continue  # blank lines between groups of concepts are fine
        try:
            concept = _concept(line, row, columns, defaults, base)
        except (GFTIError, ConfigError) as exc:
            problems.append(f"line {line}: {exc}")
            continue
        key = concept.token.casefold()  # Windows and macOS file systems ignore case: sks-A and sks-a collide
        if key in seen:
            problems.append(f"line {line}: token {concept.token!r} is already used on line {seen[key]}; every "
                            "concept needs its own token (it names the concept's files)")
            continue
        seen[key] = line
        concepts.append(concept)
    return concepts, problems


def _concept(line: int, row: list[str], columns: list[str], defaults: dict[str, Any], base: Path) -> Concept:
    if len(row) > len(columns):
        raise ManifestError(f"{len(row)} cells but the header has {len(columns)} columns; quote cells that "
                            "contain commas")
    cells = {name: cell.strip() for name, cell in zip(columns, row) if name and cell.strip()}
    token, images = cells.pop("token", ""), cells.pop("images", "")
    if not token:
        raise ManifestError("the token cell is empty; name the new word, e.g. sks-cat")
    if not images:
        raise ManifestError("the images cell is empty; give the folder of this concept's images")
    safe_stem(token)  # the token names the files: it must be a safe file name
    folder = Path(images).expanduser()
    folder = folder if folder.is_absolute() else base / folder
    list_images(folder)  # a missing or empty folder is refused now, not an hour into the batch
    given = {**defaults, **{name: _value(name, text) for name, text in cells.items()}, "token": token}
    InversionConfig(**given)  # bounds, choices and cross-field rules, exactly as `gfti train` checks them
    return Concept(line, token, folder, given)


def _value(name: str, text: str) -> Any:
    """A cell's text as the field's type (bounds and choices are the config's to check)."""
    default = next(f.default for f in field_specs() if f.name == name)
    kind = type(default)
    if kind is bool:
        if text.lower() in _TRUE | _FALSE:
            return text.lower() in _TRUE
        raise ManifestError(f"{name}={text!r} is not true or false; write true or false")
    try:
        return kind(text)
    except ValueError:
        what = "a whole number" if kind is int else "a number"
        raise ManifestError(f"{name}={text!r} is not {what}; write e.g. {default!r}") from None
