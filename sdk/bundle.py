"""A bundle: a directory (or one ``.tar`` of it) holding ``manifest.json`` and the model files.

Integrity first: every model file is checked against the manifest's SHA-256 before any runtime sees it,
and a manifest path that would resolve outside the bundle (``../``, absolute paths, symlinks out) is
refused. Tar bundles are unpacked with the same rules into a cache directory keyed by the archive's
own hash, so a shipped ``.tar`` is unpacked once per device, not per process.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import os
import shutil
import tarfile
import tempfile
import threading
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, BinaryIO

from aligngemini_sdk import regular_file
from aligngemini_sdk.cache import default_cache_dir, touch
from aligngemini_sdk.errors import BundleFormatError, BundleIntegrityError, BundleSignatureError
from aligngemini_sdk.manifest import MANIFEST_NAME, FileEntry, LatencyStat, Manifest
from aligngemini_sdk.signature import MAX_SIGNATURE_BYTES, SIGNATURE_NAME, check, load_public_key, read_signature

log = logging.getLogger("aligngemini")
_CHUNK = 1 << 20


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Streamed SHA-256 of a file (model files can be many GB)."""
    with open(path, "rb") as fh:
        return _sha256_stream(fh)


def _sha256_stream(fh: BinaryIO) -> str:
    h = hashlib.sha256()
    while chunk := fh.read(_CHUNK):
        h.update(chunk)
    return h.hexdigest()


def _stat_regular(path: Path, rel: str) -> os.stat_result:
    """``path``'s stat, refusing what is not a regular file (:mod:`~aligngemini_sdk.regular_file`)."""
    with _refusals(rel):
        return regular_file.stat_regular(path)


def _open_regular(path: Path, rel: str) -> BinaryIO:
    """``path`` opened for reading, refused unless it is a regular file both before it is opened and after."""
    with _refusals(rel):
        fd, _ = regular_file.open_regular(path)
    return os.fdopen(fd, "rb")


@contextlib.contextmanager
def _refusals(rel: str) -> Iterator[None]:
    """regular_file's refusals and OS failures as :class:`BundleIntegrityError` naming the bundle file."""
    try:
        yield
    except regular_file.NotRegularFile as exc:
        if exc.swapped:
            raise BundleIntegrityError(f"bundle file {rel} was replaced by something that is not a regular file") from None
        raise BundleIntegrityError(f"bundle file {rel} is {exc.kind}, not a regular file") from None
    except FileNotFoundError:
        raise BundleIntegrityError(f"bundle file missing: {rel}") from None
    except OSError as exc:
        raise BundleIntegrityError(f"bundle file {rel}: {exc.strerror or exc}") from None


def _check_size(size: int, entry: FileEntry) -> None:
    if size != entry.bytes:
        raise BundleIntegrityError(f"bundle file {entry.path} has {size}{'+' if size > entry.bytes else ''} bytes, "
                                   f"manifest says {entry.bytes} (tampered?)")


def _check_digest(digest: str, entry: FileEntry) -> None:
    if digest != entry.sha256:
        raise BundleIntegrityError(
            f"checksum mismatch for {entry.path}: sha256 {digest[:16]}…, manifest {entry.sha256[:16]}…")


class Bundle:
    """An opened, manifest-validated bundle. Files are verified lazily, once each per process."""

    def __init__(self, root: Path, manifest: Manifest, source: Path | None = None, *, manifest_text: str | None = None,
                 signature: bytes | None = None) -> None:
        self.root = root.resolve()
        self.manifest = manifest
        self.source = source or root
        self._manifest_text = manifest_text  #: the exact manifest the object was parsed from (what a signature covers)
        self._signature = signature
        #: the key id of the trusted key whose signature was checked, once :meth:`require_signature` passed
        self.signed_by: str | None = None
        self._verified: dict[str, tuple[int, int]] = {}
        self._lock = threading.Lock()

    # -- opening -----------------------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | os.PathLike[str], cache_dir: str | os.PathLike[str] | None = None,
             trusted_keys: Sequence[str | os.PathLike[str] | bytes] | None = None) -> Bundle:
        """Open a bundle directory or ``.tar`` archive. Raises :class:`BundleFormatError` if unusable, and
        :class:`~aligngemini_sdk.errors.BundleSignatureError` when ``trusted_keys`` (Ed25519 public keys, PEM)
        are given and none of them signed this manifest."""
        p = Path(path)
        if p.is_dir():
            root = p
        elif p.is_file() and tarfile.is_tarfile(p):
            root = _unpack_tar(p, Path(cache_dir) if cache_dir else default_cache_dir() / "bundles")
        elif not p.exists():
            raise BundleFormatError(f"bundle not found: {p}")
        else:
            raise BundleFormatError(f"{p} is neither a bundle directory nor a tar archive")
        text = _read_manifest_text(root)
        bundle = cls(root, Manifest.from_json(text), source=p, manifest_text=text, signature=_read_signature(root))
        if trusted_keys is not None:
            bundle.require_signature(trusted_keys)
        return bundle

    # -- signature ---------------------------------------------------------------------------------
    def require_signature(self, trusted_keys: Sequence[str | os.PathLike[str] | bytes]) -> str:
        """Check that one of ``trusted_keys`` signed the manifest this object was parsed from; returns its key id."""
        if self._manifest_text is None:
            raise BundleFormatError("this Bundle was built from a Manifest object, not read from disk: open it with "
                                    "Bundle.open to check its signature")
        if isinstance(trusted_keys, (str, bytes, os.PathLike)) or not trusted_keys:
            raise BundleSignatureError(f"trusted_keys must be a non-empty list of keys, got {trusted_keys!r:.60}: an "
                                       "empty list would trust no signer, and checking nothing is what None means")
        keys = [load_public_key(k) for k in trusted_keys]
        self.signed_by = check(self._manifest_text.encode("utf-8"), self._signature, keys)
        return self.signed_by

    @property
    def signature_key_id(self) -> str | None:
        """The key id ``manifest.sig`` claims (unchecked; :meth:`require_signature` checks it), or None."""
        return None if self._signature is None else read_signature(self._signature)[0]

    # -- files -------------------------------------------------------------------------------------
    def resolve(self, entry: FileEntry | str) -> Path:
        """The absolute path of a manifest file, refusing anything that escapes the bundle root."""
        rel = entry.path if isinstance(entry, FileEntry) else entry
        if not rel or os.path.isabs(rel) or rel.startswith(("/", "\\")) or ":" in rel.split("/")[0]:
            raise BundleIntegrityError(f"manifest path {rel!r} is absolute; bundle paths must be relative")
        if "\0" in rel:
            raise BundleIntegrityError(f"manifest path {rel!r} holds a NUL byte")
        try:
            full = (self.root / rel).resolve()
        except OSError as exc:  # e.g. a name over NAME_MAX, a symlink loop
            raise BundleIntegrityError(f"manifest path {rel[:80]!r}…: {exc.strerror or exc}") from None
        if full != self.root and self.root not in full.parents:
            raise BundleIntegrityError(f"manifest path {rel!r} escapes the bundle directory")
        return full

    def verified_path(self, entry: FileEntry) -> Path:
        """Resolve ``entry`` and check its size and SHA-256; cached per (inode, mtime) for this process."""
        path = self.resolve(entry)
        st = _stat_regular(path, entry.path)
        stamp = (st.st_ino, st.st_mtime_ns)
        with self._lock:
            if self._verified.get(str(path)) == stamp:
                return path
        with _open_regular(path, entry.path) as fh:
            _check_size(os.fstat(fh.fileno()).st_size, entry)
            digest = _sha256_stream(fh)
        _check_digest(digest, entry)
        with self._lock:
            self._verified[str(path)] = stamp
        return path

    def read_verified(self, entry: FileEntry) -> bytes:
        """The bytes of a manifest file, read once and checked against its size and SHA-256: what a runtime then
        loads is exactly what was hashed (no window in which the file could be swapped). The size is checked before
        anything is read, so a manifest that overstates it cannot make the reader allocate that much."""
        with _open_regular(self.resolve(entry), entry.path) as fh:
            _check_size(os.fstat(fh.fileno()).st_size, entry)
            data = fh.read(entry.bytes + 1)
        _check_size(len(data), entry)  # it changed while being read
        _check_digest(hashlib.sha256(data).hexdigest(), entry)
        return data

    def sealed_dir(self, files: dict[str, FileEntry], key: str) -> Path:
        """A private directory (in the SDK cache) holding only ``files``, verified, at their bundle-relative paths:
        what a model that reads side files (ONNX external data) is allowed to reach. Hard links where the cache
        shares the bundle's filesystem, copies otherwise."""
        d = default_cache_dir() / "sealed" / f"{self.manifest.bundle_id}-{key}"
        for entry in files.values():
            src, dst = self.verified_path(entry), (d / entry.path)
            if dst.is_file() and dst.stat().st_size == entry.bytes and sha256_file(dst) == entry.sha256:
                continue
            dst.parent.mkdir(parents=True, exist_ok=True)
            tmp = dst.with_name(dst.name + ".part")
            tmp.unlink(missing_ok=True)
            try:
                os.link(src, tmp)
            except OSError:
                shutil.copyfile(src, tmp)
            os.replace(tmp, dst)
        touch(d)
        return d

    def verify(self) -> dict[str, str]:
        """Verify every file in the manifest; returns ``{key: "ok"}`` or raises on the first failure."""
        for entry in self.manifest.all_files().values():
            self.verified_path(entry)
        return dict.fromkeys(self.manifest.all_files(), "ok")

    def model_card(self) -> str | None:
        if not self.manifest.model_card:
            return None
        path = self.resolve(self.manifest.model_card)
        return _read_text(path, self.manifest.model_card, MAX_CARD_BYTES) if path.is_file() else None

    def size_bytes(self, branch: str, artifact: str) -> int:
        spec = self.manifest.branch(branch)
        assert spec is not None
        return sum(f.bytes for f in spec.artifacts[artifact].files.values())


#: The manifest and model card are read from an archive with these caps before anything else is written.
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
MAX_CARD_BYTES = 1024 * 1024
#: Most bytes one tar bundle may unpack to, whatever its manifest declares (and never more than the disk has free).
MAX_UNPACKED_BYTES = 64 * 1024 ** 3
MAX_MEMBERS = 10_000


def read_manifest(root: Path) -> Manifest:
    return Manifest.from_json(_read_manifest_text(root))


def _read_manifest_text(root: Path) -> str:
    mpath = root / MANIFEST_NAME
    if not mpath.is_file():
        raise BundleFormatError(f"{root} has no {MANIFEST_NAME}")
    return _read_text(mpath, MANIFEST_NAME, MAX_MANIFEST_BYTES)


def _read_signature(root: Path) -> bytes | None:
    path = root / SIGNATURE_NAME
    if not path.exists() and not path.is_symlink():
        return None
    if root.resolve() not in path.resolve().parents:
        raise BundleIntegrityError(f"{SIGNATURE_NAME} is a link out of the bundle")
    return _read_capped(path, SIGNATURE_NAME, MAX_SIGNATURE_BYTES)


def _read_text(path: Path, rel: str, cap: int) -> str:
    """A bundle's UTF-8 text file (manifest, model card), at most ``cap`` bytes, refused by name otherwise."""
    return _decode_text(_read_capped(path, rel, cap), rel)


def _read_capped(path: Path, rel: str, cap: int) -> bytes:
    """A bundle file that is not listed in the manifest (so has no digest), at most ``cap`` bytes, refused by name."""
    with _open_regular(path, rel) as fh:
        raw = fh.read(cap + 1)
    if len(raw) > cap:
        raise BundleFormatError(f"bundle file {rel} is over {cap} bytes")
    return raw


def _decode_text(raw: bytes, rel: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BundleFormatError(f"bundle file {rel} is not UTF-8 text: {exc}") from None


def _unpack_tar(archive: Path, cache: Path) -> Path:
    """Unpack a tar bundle into the cache, once, writing only what its manifest lists.

    The manifest is read first (at most :data:`MAX_MANIFEST_BYTES`); then each listed file is extracted with its
    declared size as a hard limit (a member of another size is refused), the model card up to
    :data:`MAX_CARD_BYTES`, and nothing else: a sparse 8 GiB member or a gzip bomb that no manifest lists is
    never written. Duplicated member names, members that are not regular files, paths that escape, declared
    totals over :data:`MAX_UNPACKED_BYTES` or over the disk's free space are refused before writing. Each listed
    file is hashed as it is written and the unpacked copy enters the cache only if every SHA-256 matches: a
    tampered archive leaves nothing behind."""
    digest = sha256_file(archive)
    dest = cache / digest[:32]
    if (dest / MANIFEST_NAME).is_file():
        touch(dest)
        return dest
    cache.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".unpack-", dir=cache))
    try:
        with tarfile.open(archive) as tf:
            members = _index_members(tf, archive)
            raw = _read_member(tf, members, MANIFEST_NAME, MAX_MANIFEST_BYTES, archive)
            manifest = Manifest.from_json(_decode_text(raw, MANIFEST_NAME))
            wanted = {e.path: e for e in manifest.all_files().values()}
            total = sum(e.bytes for e in wanted.values())
            free = shutil.disk_usage(cache).free
            if total > min(MAX_UNPACKED_BYTES, free):
                raise BundleFormatError(f"{archive}: its manifest declares {total} bytes of files; the limit is "
                                        f"{MAX_UNPACKED_BYTES} and {free} bytes are free in {cache}")
            (tmp / MANIFEST_NAME).write_bytes(raw)
            for entry in wanted.values():
                _check_digest(_extract_exact(tf, members, entry.path, entry.bytes, tmp, archive), entry)
            for extra, cap in ((manifest.model_card, MAX_CARD_BYTES), (SIGNATURE_NAME, MAX_SIGNATURE_BYTES)):
                if extra and extra in members and extra not in wanted and members[extra].size <= cap:
                    _extract_exact(tf, members, extra, members[extra].size, tmp, archive)  # optional; oversized: left
        try:
            os.replace(tmp, dest)
        except OSError:  # another process won the race; use theirs
            shutil.rmtree(tmp, ignore_errors=True)
        return dest
    except tarfile.TarError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise BundleFormatError(f"{archive}: unreadable tar: {exc}") from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _index_members(tf: tarfile.TarFile, archive: Path) -> dict[str, tarfile.TarInfo]:
    """Members by bundle-relative name (the archive's top folder stripped); duplicates refused."""
    out: dict[str, tarfile.TarInfo] = {}
    raw = []
    for i, m in enumerate(tf):
        if i >= MAX_MEMBERS:
            raise BundleFormatError(f"{archive}: more than {MAX_MEMBERS} members")
        raw.append(m)
    prefix = _common_prefix(raw)
    for m in raw:
        name = m.name[len(prefix):] if prefix and m.name.startswith(prefix) else m.name
        name = name.removeprefix("./")
        if not name or name in (".", "./"):
            continue
        if os.path.isabs(name) or ".." in name.replace("\\", "/").split("/"):
            raise BundleIntegrityError(f"{archive}: member {m.name!r} escapes the bundle")
        if not (m.isfile() or m.isdir()):
            raise BundleIntegrityError(f"{archive}: member {m.name!r} is not a regular file or dir")
        if m.isdir():
            continue
        if name in out:
            raise BundleIntegrityError(f"{archive}: member {name!r} appears more than once")
        out[name] = m
    if MANIFEST_NAME not in out:
        raise BundleFormatError(f"{archive} contains no {MANIFEST_NAME}")
    return out


def _read_member(tf: tarfile.TarFile, members: dict[str, tarfile.TarInfo], name: str, limit: int,
                 archive: Path) -> bytes:
    m = members[name]
    if not m.isfile() or m.size > limit:
        raise BundleFormatError(f"{archive}: {name} is not a regular file of at most {limit} bytes")
    src = tf.extractfile(m)
    assert src is not None
    with src:
        return src.read(limit)


def _extract_exact(tf: tarfile.TarFile, members: dict[str, tarfile.TarInfo], rel: str, size: int, root: Path,
                   archive: Path) -> str:
    """Write member ``rel`` under ``root``: a regular, non-sparse file of exactly ``size`` bytes, inside root.
    Returns the SHA-256 of what was written."""
    m = members.get(rel)
    if m is None:
        raise BundleIntegrityError(f"{archive}: listed file {rel!r} is not in the archive")
    if not m.isfile() or m.issparse() or m.size != size:
        raise BundleIntegrityError(f"{archive}: member {rel!r} is not a regular file of the {size} bytes its manifest "
                                   f"declares ({m.size} bytes, type {m.type!r})")
    target = (root / rel).resolve()
    if root.resolve() not in target.parents:
        raise BundleIntegrityError(f"{archive}: member {rel!r} escapes the bundle")
    target.parent.mkdir(parents=True, exist_ok=True)
    src = tf.extractfile(m)
    assert src is not None
    left, h = size, hashlib.sha256()
    with src, open(target, "wb") as out:
        while left > 0 and (chunk := src.read(min(_CHUNK, left))):
            out.write(chunk)
            h.update(chunk)
            left -= len(chunk)
    if left:
        raise BundleIntegrityError(f"{archive}: member {rel!r} is shorter than its header says")
    return h.hexdigest()


def _common_prefix(members: list[tarfile.TarInfo]) -> str:
    """Archives made with ``tar cf b.tar bundle/`` have one top folder; strip it."""
    names = [m.name for m in members if m.name not in (".", "./")]
    if any(n in (MANIFEST_NAME, "./" + MANIFEST_NAME) for n in names):
        return "./" if all(n.startswith("./") for n in names) else ""
    tops = {n.split("/", 1)[0] for n in names}
    return f"{tops.pop()}/" if len(tops) == 1 else ""


# -- writing the manifest (device side too: `bench --write-profile`) ------------------------------------------
def write_manifest(root: str | os.PathLike[str], manifest: Manifest) -> Path:
    """Atomically (write-then-rename) write ``manifest.json`` so a crash never leaves half a manifest."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".manifest-", suffix=".json", dir=root)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(manifest.to_json())
    os.chmod(tmp, 0o644)  # mkstemp creates 0600; a shipped manifest must be world-readable
    os.replace(tmp, root / MANIFEST_NAME)
    if (root / SIGNATURE_NAME).is_file():  # it signed the old bytes: a device trusting the key now sees "unsigned"
        (root / SIGNATURE_NAME).unlink()
        log.warning("%s: the manifest changed, so its signature was removed; sign the bundle again", root)
    return root / MANIFEST_NAME


def write_device_profile(root: str | os.PathLike[str], device_key: str, stats: dict[str, LatencyStat]) -> Manifest:
    """Merge measured latencies for ``device_key`` into a bundle directory's manifest."""
    root = Path(root)
    manifest = read_manifest(root)
    profiles = dict(manifest.device_profiles)
    profiles[device_key] = {**profiles.get(device_key, {}), **stats}
    manifest = replace(manifest, device_profiles=profiles)
    write_manifest(root, manifest)
    return manifest


def import_estimated_profile(root: str | os.PathLike[str], profiles: dict[str, Any], model: str,
                             artifact: str | None = None) -> Manifest:
    """Merge a model's *estimated* latencies into a bundle directory's manifest: ``profiles`` as
    ``benchmarks/vlm_shapes.py`` writes them (``{model: {device_key: {"semantic/<artifact>": stat}}}``), so the
    planner predicts a real VLM's cost on those devices before it has measured it (``n`` = 0 marks an estimate).
    ``artifact`` renames the semantic artifact to the bundle's own (default: as written)."""
    if model not in profiles:
        raise ValueError(f"no profile for {model!r} (has: {', '.join(sorted(profiles)) or 'none'})")
    manifest = read_manifest(Path(root))
    for dev, stats in profiles[model].items():
        parsed: dict[str, LatencyStat] = {}
        for key, raw in stats.items():
            stat = LatencyStat(float(raw["p50_ms"]), float(raw["p90_ms"]), int(raw.get("n", 0)))
            if not (math.isfinite(stat.p90_ms) and 0 < stat.p50_ms <= stat.p90_ms):
                raise ValueError(f"{model} {dev} {key}: p50/p90 must be finite, > 0 and p50 <= p90, got {raw}")
            parsed[f"semantic/{artifact}" if artifact and key.startswith("semantic/") else key] = stat
        manifest = write_device_profile(root, dev, parsed)
    return manifest
