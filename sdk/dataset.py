"""Labelled image collections for calibration, validation, evaluation and benchmarks.

A collection is a directory with ``real/`` and ``fake/`` subfolders (the first folder below each names
the *source*, e.g. ``fake/sd_family/x.jpg`` -> source ``sd_family``), or a CSV with columns
``path,label`` (+ optional ``source``/``generator``), paths relative to the CSV.
"""

from __future__ import annotations

import csv
import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from aligngemini_sdk.image import IMAGE_EXTENSIONS as IMAGE_EXTS


@dataclass(frozen=True)
class Sample:
    path: Path
    label: int  # 1 = fake, 0 = real
    source: str


def _is_dir(p: Path) -> bool:
    try:
        return p.is_dir()
    except OSError:  # a name over NAME_MAX, say: not a directory we can walk; reading it reports why
        return False


def list_images(root: str | os.PathLike[str], *, links_out: bool = False) -> list[Path]:
    """``root`` itself when it is not a directory (reading it will say what is wrong), else every entry with an
    image extension (:data:`~aligngemini_sdk.image.IMAGE_EXTENSIONS`) under it, sorted, each once.

    Links: a file link is listed like a file (reading follows it, and reports a broken link or a link loop as
    that input's error). A directory link is followed only when its target lies inside ``root`` and that
    directory was not walked yet: links out of the tree, loops (``loop -> .``) and second routes to a folder
    are skipped, so a walk always ends and sees each folder once. ``links_out=True`` (labelled collections,
    which are often link farms of dataset folders) also follows links out of the tree, still each folder once."""
    root = Path(root)
    if not _is_dir(root):
        return [root]
    base = root.resolve()
    seen: set[tuple[int, int]] = set()
    out: list[Path] = []
    stack = [root]
    while stack:
        d = stack.pop()
        try:
            st, real = d.stat(), d.resolve()
            entries = list(os.scandir(d))
        except OSError:
            continue
        if (st.st_dev, st.st_ino) in seen or (not links_out and real != base and base not in real.parents):
            continue
        seen.add((st.st_dev, st.st_ino))
        for e in entries:
            if _is_dir(Path(e.path)):
                stack.append(Path(e.path))
            elif Path(e.name).suffix.lower() in IMAGE_EXTS:
                out.append(Path(e.path))
    return sorted(out)


def load_collection(spec: str | os.PathLike[str], exclude_sources: Sequence[str] = ()) -> list[Sample]:
    """Read a labelled collection (directory with real/ and fake/, or CSV), leaving out ``exclude_sources``."""
    return [s for s in _read_collection(Path(spec)) if s.source not in exclude_sources]


def _read_collection(p: Path) -> list[Sample]:
    if p.is_file() and p.suffix.lower() == ".csv":
        out = []
        with open(p, newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                label = str(row["label"]).strip().lower()
                if label not in ("real", "fake", "0", "1"):
                    raise ValueError(f"{p}: label must be real/fake, got {label!r}")
                y = 1 if label in ("fake", "1") else 0
                src = row.get("source") or (Path(row["path"]).parts[-2] if len(Path(row["path"]).parts) > 1 else "")
                out.append(Sample((p.parent / row["path"]).resolve(), y, src or ("fake" if y else "real")))
        return out
    if not p.is_dir():
        raise FileNotFoundError(f"{p}: not a directory or CSV")
    out = []
    for label_name, y in (("real", 0), ("fake", 1)):
        d = p / label_name
        if not d.is_dir():
            continue
        for img in list_images(d, links_out=True):
            rel = img.relative_to(d)
            out.append(Sample(img, y, rel.parts[0] if len(rel.parts) > 1 else label_name))
    if not out:
        raise FileNotFoundError(f"{p}: no images under real/ or fake/")
    return out


def split_by_hash(samples: list[Sample], fraction: float, salt: str = "aligngemini") -> tuple[list[Sample], list[Sample]]:
    """Deterministic split (stable across machines and file order): (held-out fraction, rest)."""
    held: list[Sample] = []
    rest: list[Sample] = []
    for s in samples:
        h = int(hashlib.sha256(f"{salt}:{s.path.name}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
        (held if h < fraction else rest).append(s)
    return held, rest
