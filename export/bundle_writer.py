"""Writing bundles (the exporters' side): file entries with their checksums, the bundle id, a branch put into a
manifest, and deterministic tar packing. Reading and verifying a bundle is :mod:`aligngemini_sdk.bundle`."""

from __future__ import annotations

import hashlib
import os
import tarfile
from pathlib import Path

from aligngemini_sdk.bundle import MANIFEST_NAME, read_manifest, sha256_file, write_manifest
from aligngemini_sdk.manifest import FileEntry, Manifest


def file_entry(root: Path, rel: str) -> FileEntry:
    path = root / rel
    return FileEntry(path=rel, sha256=sha256_file(path), bytes=path.stat().st_size)


def compute_bundle_id(manifest: Manifest, prefix: str = "ag") -> str:
    """A stable id: the same model files give the same id, whatever directory they sit in."""
    h = hashlib.sha256()
    for key, entry in sorted(manifest.all_files().items()):
        h.update(f"{key}={entry.sha256}\n".encode())
    return f"{prefix}-{h.hexdigest()[:16]}"


def pack_tar(root: str | os.PathLike[str], out: str | os.PathLike[str]) -> Path:
    """Pack a bundle directory into one deterministic ``.tar`` (sorted, zeroed times and owners)."""
    root, out = Path(root), Path(out)
    tmp = out.with_suffix(out.suffix + ".tmp")
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tf:
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            info = tf.gettarinfo(str(path), arcname=path.relative_to(root).as_posix())
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
            with open(path, "rb") as fh:
                tf.addfile(info, fh)
    os.replace(tmp, out)
    return out


def put_branch(root: str | os.PathLike[str], branch: str, spec: object, *, name: str | None = None,
               description: str | None = None, provenance: dict | None = None, placeholder: bool | None = None,
               model_card: str | None = None) -> Manifest:
    """Create or update a bundle directory's manifest with one branch (the other branch is kept), and
    recompute the bundle id. Lets the pixel and VLM exporters write into the same bundle in any order."""
    from aligngemini_sdk.manifest import FusionSpec, PixelBranchSpec, SemanticBranchSpec

    root = Path(root)
    if (root / MANIFEST_NAME).is_file():
        m = read_manifest(root)
    else:
        m = Manifest(bundle_id="ag-pending", name=name or root.name, pixel=None, semantic=None,
                     fusion=FusionSpec())
    if branch == "pixel":
        assert isinstance(spec, PixelBranchSpec)
        m.pixel = spec
    elif branch == "semantic":
        assert isinstance(spec, SemanticBranchSpec)
        m.semantic = spec
    else:
        raise ValueError(f"unknown branch {branch!r}")
    if name:
        m.name = name
    if description is not None:
        m.description = description
    if placeholder is not None:
        m.placeholder = placeholder
    if model_card is not None:
        m.model_card = model_card
    m.provenance = {**m.provenance, **({branch: provenance} if provenance else {})}
    m.device_profiles = {}  # new model files invalidate measured latencies
    m.bundle_id = compute_bundle_id(m)
    write_manifest(root, m)
    return m
