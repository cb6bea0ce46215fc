"""The SDK's own cache: what it holds, and pruning what can be made again.

Everything the SDK writes lives under :func:`default_cache_dir` (``$ALIGNGEMINI_CACHE``, else
``$XDG_CACHE_HOME/aligngemini``, else ``~/.cache/aligngemini``). Two kinds of entry live there:

- *derived* ones, made again on demand from a bundle: unpacked tar bundles (``bundles/<archive hash>``), sealed
  side-file folders (``sealed/<bundle id>-<artifact>``) and TensorRT engines (``trt/``). A device that receives a
  new bundle with every firmware update gains one unpacked copy per update; :func:`prune` removes the stale ones.
- *tool* ones, written by ``setup.sh`` and ``aligngemini export vlm`` (``wheels``, ``sdist``,
  ``llama-cpp-converter``) and by the emulated-ARM benchmark (``emulators``): listed, and removed only when asked
  for by name.

An entry's last use is its folder's modification time; the SDK touches it each time it reuses an entry.
Pruning never follows a link, only removes the entries directly under the folders named here, and leaves a
half-written unpack (``.unpack-*``) alone unless it is a day old (a crashed process's leftover). Pruning an entry
a running process still reads makes that process's next load from it fail with ``BundleIntegrityError`` (the
file is missing; files are verified by hash when loaded), never give another answer."""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

DERIVED = ("bundles", "sealed", "trt")
TOOLS = ("wheels", "sdist", "llama-cpp-converter", "emulators")
KINDS = DERIVED + TOOLS
#: a temporary unpack folder younger than this may belong to a process still writing it
STALE_TEMP_S = 24 * 3600.0


def default_cache_dir() -> Path:
    """The one folder the SDK writes to."""
    root = os.environ.get("ALIGNGEMINI_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "aligngemini")
    return Path(root)


@dataclass(frozen=True)
class CacheEntry:
    """One top-level item of a cache folder (an unpacked bundle, a sealed folder, a wheel folder...)."""

    kind: str
    path: Path
    bytes: int
    last_used: float  #: seconds since the epoch (the entry's modification time)


def entries(root: str | os.PathLike[str] | None = None, kinds: tuple[str, ...] = KINDS) -> list[CacheEntry]:
    """Every entry under the folders of ``kinds``, oldest use first (links are neither followed nor listed)."""
    base = Path(root) if root is not None else default_cache_dir()
    out = []
    for kind in kinds:
        folder = base / kind
        if folder.is_symlink() or not folder.is_dir():
            continue
        for item in os.scandir(folder):
            if item.is_symlink():
                continue
            st = item.stat(follow_symlinks=False)
            out.append(CacheEntry(kind, Path(item.path), _tree_bytes(item), st.st_mtime))
    return sorted(out, key=lambda e: e.last_used)


def prune(root: str | os.PathLike[str] | None = None, *, older_than_s: float = 0.0,
          kinds: tuple[str, ...] = DERIVED, now: float | None = None) -> list[CacheEntry]:
    """Remove the entries of ``kinds`` last used more than ``older_than_s`` ago; returns what was removed."""
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown:
        raise ValueError(f"unknown cache kinds {unknown}; known: {', '.join(KINDS)}")
    now = time.time() if now is None else now
    removed = []
    for e in entries(root, kinds):  # only the kinds asked for are walked and sized
        age = now - e.last_used
        if age < older_than_s or (e.path.name.startswith(".unpack-") and age < STALE_TEMP_S):
            continue
        if e.path.is_dir():
            shutil.rmtree(e.path, ignore_errors=True)
        else:
            e.path.unlink(missing_ok=True)
        removed.append(e)
    return removed


def touch(path: Path) -> None:
    """Record a use of a cache entry (best effort: a read-only cache is still usable)."""
    with contextlib.suppress(OSError):
        os.utime(path)


def _tree_bytes(item: os.DirEntry[str]) -> int:
    if not item.is_dir(follow_symlinks=False):
        return item.stat(follow_symlinks=False).st_size
    total = 0
    for dirpath, _dirs, files in os.walk(item.path):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                continue
    return total
