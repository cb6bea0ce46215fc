"""Fuzz the image boundary: every hostile image or video file must get a verdict or a typed error -- never an untyped
exception, a crash of the process, a hang, or a verdict that is not a probability.

    .venv/bin/python benchmarks/fuzz_images.py [--cases 15000] [--seed 1] [--workers 2] [--out benchmarks/reports/fuzz_images]

What an image meets before a verdict, all of it reached here through the embedded default's ``Detector.detect``:
the header checks (``image.py``: sizes from PNG, JPEG, GIF, BMP, WebP, TIFF, HEIC headers), provenance (C2PA through
c2pa-python's Rust reader, EXIF/XMP/PNG-text metadata in Python), this project's C shim over libjpeg-turbo (region
decode for the crop, DCT-scaled decode for the whole image), OpenCV's decoders, libheif, then both branches; a
video file goes through ``Detector.detect_video`` (``video.py``, OpenCV's FFmpeg backend), every frame checked.

Seeds, made from real shared photos in the run: baseline JPEG with camera EXIF, progressive JPEG, JPEG with restart
markers, grayscale JPEG, a C2PA-signed JPEG (keys made in the run), PNG with a generator's text chunk, 16-bit PNG,
WebP, BMP, TIFF, GIF, AVIF, HEIC, HEIC as a grid of tiles, and two short videos (MJPG in AVI, MPEG-4 part 2 in MP4). Case
``i`` takes seed ``i mod 15`` and one mutator, drawn from ``(seed, i)`` alone, so any case can be rebuilt from its
number: ``bitflip`` (1-8 bits), ``bytes`` (1-16 bytes set to boundary values), ``truncate``, ``segment`` (1-4 bytes
inside one JPEG marker segment or PNG chunk, its type drawn first; in a C2PA-signed JPEG, its APP11 JUMBF data 3
times in 4), ``splice`` (a range repeated or removed). A PNG's chunk CRCs are then fixed (every ``segment`` case,
half the ``bitflip`` and ``bytes`` ones) so that libpng reads the changed bytes instead of refusing them at a
checksum. Every fourth image goes through a file path, the others as bytes; videos always through a path.

Cases run in ``--workers`` child processes, each with an 8 GiB address-space limit; a child that dies on a signal
(a crash) or answers nothing for 60 s (a hang) is noted with its case and replaced, and the input is kept under
``--out``/crashers. Output: ``fuzz.json``, ``README.md`` and ``fuzz.png`` under ``--out``, with the CPU named.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import random
import select
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from aligngemini_sdk import heic, metadata
from aligngemini_sdk.plot import figure

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ALIGNGEMINI_SHARED_DATA", ROOT.parent / "shared" / "data"))
HANG_S = 60.0
MEMORY_LIMIT = 8 << 30
DEFECTS = ("untyped", "crash", "hang", "bad_verdict")
BOUNDARY = (0x00, 0x01, 0x7F, 0x80, 0xFE, 0xFF)
MUTATORS = ("bitflip", "bytes", "truncate", "segment", "splice")
#: where C2PA's JUMBF boxes live -- JPEG APP11, a HEIF ``uuid`` box: a signed file's ``segment`` cases change it 3 times
#: in 4 (c2pa's reader)
C2PA_SEGMENTS = (b"\xeb", b"uuid")


# -- seeds -------------------------------------------------------------------------------------------------------------

def _photo() -> np.ndarray:
    """RGB of a real lossless photo (Kodak 768 x 512)."""
    bgr = cv2.imread(str(SHARED / "images" / "real" / "kodak24" / "testsets__Kodak24__kodim01.png"), cv2.IMREAD_COLOR)
    assert bgr is not None
    return np.ascontiguousarray(bgr[:, :, ::-1])


def _encode(rgb: np.ndarray, ext: str, *params: int) -> bytes:
    ok, buf = cv2.imencode(ext, np.ascontiguousarray(rgb[..., ::-1]) if rgb.ndim == 3 else rgb, list(params))
    assert ok, ext
    return buf.tobytes()


def _pil(rgb: np.ndarray, fmt: str) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(rgb).save(out, fmt)
    return out.getvalue()


def _avif(rgb: np.ndarray) -> bytes | None:
    """AVIF as Pillow writes it (decoded by OpenCV's AVIF reader); None when this Pillow has no AVIF encoder."""
    from PIL import features

    return _pil(rgb, "AVIF") if features.check("avif") else None


def _png_with_text(rgb: np.ndarray) -> bytes:
    """PNG with a ``parameters`` tEXt chunk, as Stable Diffusion front-ends write (provenance reads it)."""
    png = _encode(rgb, ".png")
    body = b"parameters\0a photo, Steps: 20, Sampler: Euler a, Model: sd_xl_base_1.0"
    chunk = struct.pack(">I", len(body)) + b"tEXt" + body + struct.pack(">I", zlib.crc32(b"tEXt" + body))
    return png[:33] + chunk + png[33:]  # after the signature (8) and IHDR (25)


def _camera_jpeg() -> bytes:
    """A real camera JPEG with its EXIF (the shared pool's camera set), the smallest one of at least 640 px."""
    folder = SHARED / "wild" / "images" / "real" / "drewnoakes__metadata-extractor-images"
    sizes = sorted((p.stat().st_size, p) for p in folder.glob("*.jpg"))
    return next(p.read_bytes() for _, p in sizes if min(_shape(p)) >= 640)


def _shape(path: Path) -> tuple[int, ...]:
    img = cv2.imread(str(path))
    return (0,) if img is None else img.shape[:2]


def _signed(data: bytes, mime: str) -> bytes | None:
    """``data`` with a C2PA manifest declaring generative AI, signed by a throwaway test PKI (None without the
    [c2pa] extra)."""
    try:
        from aligngemini_sdk.provenance_testing import make_test_pki, sign_image
    except ImportError:
        return None
    try:
        pki = make_test_pki()
    except Exception:  # the [c2pa] extra is not installed
        return None
    return sign_image(pki, data, "trainedAlgorithmicMedia", "fuzz", mime=mime)


def _heic(rgb: np.ndarray, tile: int = 0, metadata: bool = False) -> bytes | None:
    """HEIC, one HEVC image or (``tile``) a grid of tile x tile images as phones write (read tile by tile under a
    crop by ``heic.py``'s ctypes calls into libheif); with ``metadata``, a phone's EXIF, an XMP packet and a C2PA
    signature (``uuid`` box), which the provenance branch reads (``metadata.py``'s HEIF boxes, c2pa's reader)."""
    try:
        import pillow_heif
        from PIL import Image
    except ImportError:
        return None
    pillow_heif.register_heif_opener()
    out = io.BytesIO()
    extra: dict[str, object] = {"tile_size": tile} if tile else {}
    if metadata:
        exif = Image.Exif()
        exif[0x010F], exif[0x0110], exif[0x0131] = "Apple", "iPhone 15 Pro", "17.1"
        extra.update(exif=exif.tobytes(), xmp=b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF/></x:xmpmeta>')
    Image.fromarray(rgb).save(out, format="HEIF", quality=80, **extra)
    return _signed(out.getvalue(), "image/heic") if metadata else out.getvalue()


def _video(rgb: np.ndarray, fourcc: str, ext: str, frames: int = 4) -> bytes | None:
    """A short clip of the photo (320 x 240, shifted a little each frame), written by OpenCV's FFmpeg backend."""
    small = cv2.resize(rgb, (336, 256), interpolation=cv2.INTER_AREA)[:, :, ::-1]
    with tempfile.TemporaryDirectory(prefix="ag-fuzz-seed-") as tmp:
        path = Path(tmp) / f"clip{ext}"
        vw = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*fourcc), 5, (320, 240))
        if not vw.isOpened():
            return None
        for k in range(frames):
            vw.write(np.ascontiguousarray(small[k * 4:k * 4 + 240, k * 4:k * 4 + 320]))
        vw.release()
        return path.read_bytes() if path.is_file() and path.stat().st_size else None


def seeds() -> dict[str, bytes]:
    """The formats and variants the fuzzer starts from (name -> encoded bytes); a seed whose extra is missing is
    left out and said so."""
    rgb = _photo()
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    out: dict[str, bytes | None] = {
        "jpeg-camera-exif": _camera_jpeg(),
        "jpeg-progressive": _encode(rgb, ".jpg", cv2.IMWRITE_JPEG_QUALITY, 90, cv2.IMWRITE_JPEG_PROGRESSIVE, 1),
        "jpeg-restart": _encode(rgb, ".jpg", cv2.IMWRITE_JPEG_QUALITY, 90, cv2.IMWRITE_JPEG_RST_INTERVAL, 4),
        "jpeg-gray": _encode(gray, ".jpg", cv2.IMWRITE_JPEG_QUALITY, 90),
        "jpeg-c2pa": _signed(_encode(rgb, ".jpg", cv2.IMWRITE_JPEG_QUALITY, 90), "image/jpeg"),
        "png-text": _png_with_text(rgb),
        "png-16bit": _encode((rgb.astype(np.uint16) * 257), ".png"),
        "webp": _encode(rgb, ".webp", cv2.IMWRITE_WEBP_QUALITY, 90),
        "bmp": _encode(rgb, ".bmp"),
        "tiff": _encode(rgb, ".tiff"),
        "gif": _pil(rgb, "GIF"),
        "avif": _avif(rgb),
        "heic": _heic(rgb),
        "heic-grid": _heic(cv2.resize(rgb, (1024, 1024), interpolation=cv2.INTER_AREA), tile=256),
        "heic-c2pa-exif": _heic(cv2.resize(rgb, (512, 384), interpolation=cv2.INTER_AREA), metadata=True),
        "video-mjpg-avi": _video(rgb, "MJPG", ".avi"),
        "video-mp4v-mp4": _video(rgb, "mp4v", ".mp4"),
    }
    for name in [n for n, v in out.items() if v is None]:
        print(f"[fuzz] seed {name} left out: its extra (or OpenCV's encoder) is not installed", file=sys.stderr)
    return {n: v for n, v in out.items() if v is not None}


# -- mutators ----------------------------------------------------------------------------------------------------------

def _segments(data: bytes) -> dict[bytes, list[tuple[int, int]]]:
    """Marker, chunk or box type -> (start, end) of the payload of each JPEG marker segment (the entropy-coded scan
    data as b"scan"), of each PNG chunk (type + data) or of each HEIF box (top level, and inside ``meta``: the item
    lists and locations the metadata reader walks); empty for other formats (the mutator then works on the first
    256 bytes, where their headers are)."""
    out: dict[bytes, list[tuple[int, int]]] = {}
    if data[:2] == b"\xff\xd8":
        i = 2
        while i + 4 <= len(data) and data[i] == 0xFF:
            length = struct.unpack(">H", data[i + 2:i + 4])[0]
            out.setdefault(data[i + 1:i + 2], []).append((i + 2, min(len(data), i + 2 + length)))
            if data[i + 1] == 0xDA:  # start of scan: the entropy-coded data follows
                out.setdefault(b"scan", []).append((i + 2 + length, len(data)))
                break
            i += 2 + length
    elif data[:8] == b"\x89PNG\r\n\x1a\n":
        i = 8
        while i + 8 <= len(data):
            length = struct.unpack(">I", data[i:i + 4])[0]
            out.setdefault(data[i + 4:i + 8], []).append((i + 4, min(len(data), i + 8 + length)))
            i += 12 + length
    elif heic.kind(data) is not None:
        for kind, start, end in metadata.boxes(data, 0, len(data), metadata.Metadata()):
            out.setdefault(kind, []).append((start, end))
            if kind == b"meta":
                for sub, s, e in metadata.boxes(data, start + 4, end, metadata.Metadata()):
                    out.setdefault(b"meta/" + sub, []).append((s, e))
    return out


def _fix_png_crcs(data: bytearray) -> None:
    """Recompute every PNG chunk's CRC, so that a mutated chunk is read, not refused at its checksum."""
    i = 8
    while i + 12 <= len(data):
        length = struct.unpack(">I", data[i:i + 4])[0]
        end = i + 8 + length
        if end + 4 > len(data):
            return
        data[end:end + 4] = struct.pack(">I", zlib.crc32(bytes(data[i + 4:end])))
        i = end + 4


def mutate(data: bytes, rng: random.Random) -> tuple[str, bytes]:
    """One hostile variant of ``data``: (mutator, bytes)."""
    kind = rng.choice(MUTATORS)
    b = bytearray(data)
    if kind == "bitflip":
        for _ in range(rng.randint(1, 8)):
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
    elif kind == "bytes":
        for _ in range(rng.randint(1, 16)):
            b[rng.randrange(len(b))] = rng.choice(BOUNDARY)
    elif kind == "truncate":
        b = b[:rng.randrange(len(b))]
    elif kind == "segment":  # a marker or chunk type first (one IDAT of many weighs as much as IHDR), then one of them
        segments = _segments(data)
        kinds = sorted(segments)
        signed = [k for k in C2PA_SEGMENTS if k in segments]
        pick = signed[0] if signed and rng.random() < 0.75 else rng.choice(kinds) if kinds else None
        start, end = rng.choice(segments[pick]) if pick is not None else (0, min(256, len(data)))
        for _ in range(rng.randint(1, 4)):
            if end > start:
                b[rng.randrange(start, end)] = rng.choice((*BOUNDARY, rng.randrange(256)))
    else:  # splice
        i, n = rng.randrange(len(b)), rng.randint(1, 4096)
        b = b[:i] + b[i:i + n] + b[i:] if rng.random() < 0.5 else b[:i] + b[i + n:]
    if data[:4] == b"\x89PNG" and kind in ("bitflip", "bytes", "segment") and (kind == "segment" or rng.random() < 0.5):
        _fix_png_crcs(b)  # so that libpng reads the changed bytes instead of refusing them at a checksum
    return kind, bytes(b)


def case(seed_bytes: dict[str, bytes], seed: int, i: int) -> tuple[str, str, bytes]:
    """Case ``i``: (seed name, mutator, bytes), from ``(seed, i)`` alone."""
    names = sorted(seed_bytes)
    name = names[i % len(names)]
    kind, data = mutate(seed_bytes[name], random.Random(f"{seed}:{i}"))
    return name, kind, data


# -- one worker ----------------------------------------------------------------------------------------------------------

def judge(det: object, data: bytes, via_path: Path | None, is_video: bool = False) -> tuple[str, str]:
    """(outcome, detail) of one input: "verdict", a typed error's class name, "untyped" or "bad_verdict". A video
    goes through ``detect_video`` from a file (every frame it yields is checked)."""
    from aligngemini_sdk.errors import AlignGeminiError

    try:
        if via_path is not None:
            via_path.write_bytes(data)
        if is_video:
            assert via_path is not None
            results = list(det.detect_video(via_path, max_frames=8))  # type: ignore[attr-defined]
        else:
            results = [det.detect(via_path if via_path is not None else data)]  # type: ignore[attr-defined]
    except AlignGeminiError as exc:
        return type(exc).__name__, str(exc)[:160]
    except Exception as exc:  # the defect this run looks for: recorded, the run goes on
        return "untyped", f"{type(exc).__name__}: {str(exc)[:160]}"
    if not results:
        return "no_frames", ""
    probs = [p for r in results for p in [r.score] + [b.probability for b in (r.pixel, r.semantic) if b.ran]]
    if not all(p is not None and math.isfinite(float(p)) and 0.0 <= float(p) <= 1.0 for p in probs):
        return "bad_verdict", repr(probs)
    return "verdict", ""


def worker(seed: int, seed_dir: Path, cases: list[int]) -> int:
    """Judge ``cases`` in order, printing "start I" before and "done [I, SEED, MUTATOR, OUTCOME, DETAIL]" after each."""
    import resource

    from aligngemini_sdk import Detector, DetectorOptions

    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    det = Detector(options=DetectorOptions(threads=1))
    made = read_seeds(seed_dir)
    with tempfile.TemporaryDirectory(prefix="worker-", dir=seed_dir.parent) as tmp:  # the run removes it
        for i in cases:
            print(f"start {i}", flush=True)
            name, kind, data = case(made, seed, i)
            video = name.startswith("video-")
            outcome, detail = judge(det, data, Path(tmp) / "case" if video or i % 4 == 3 else None, video)
            print("done " + json.dumps([i, name, kind, outcome, detail]), flush=True)
    return 0


def write_seeds(made: dict[str, bytes], folder: Path) -> None:
    """The seeds as files, made once per run (a C2PA signature differs each time it is made)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in made.items():
        (folder / name).write_bytes(data)


def read_seeds(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


# -- the run -----------------------------------------------------------------------------------------------------------

@dataclass
class Finding:
    case: int
    seed: str
    mutator: str
    outcome: str
    detail: str


@dataclass
class Report:
    cpu: str
    seed: int
    cases: int
    wall_s: float
    seeds: list[str]
    by_seed: dict[str, dict[str, int]]  # seed -> outcome -> cases
    by_mutator: dict[str, dict[str, int]]
    defects: list[Finding] = field(default_factory=list)

    @property
    def n_defects(self) -> int:
        return len(self.defects)


class _Child:
    """One worker process over a list of cases, restarted after the case that killed or hung it."""

    def __init__(self, seed: int, seed_dir: Path, cases: list[int]) -> None:
        self.seed, self.seed_dir, self.todo = seed, seed_dir, list(cases)
        self.proc: subprocess.Popen[bytes] | None = None
        self.current: int | None = None
        self.buf, self.last = b"", time.monotonic()
        self._spawn()

    def _spawn(self) -> None:
        todo = self.seed_dir.parent / f"todo-{id(self)}.json"  # a file: 26,000 case numbers outgrow argv
        todo.write_text(json.dumps(self.todo))
        self.proc = subprocess.Popen([sys.executable, __file__, "--worker", "--seed", str(self.seed), "--seed-dir",
                                      str(self.seed_dir), "--cases-file", str(todo)],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.current, self.buf, self.last = None, b"", time.monotonic()

    def fileno(self) -> int:
        assert self.proc is not None and self.proc.stdout is not None
        return self.proc.stdout.fileno()

    def read(self, on_done: Callable[[list], None], on_finding: Callable[[int, str, str], None]) -> None:
        """Take what the child wrote; at its end, either it finished or the case it was on killed it."""
        chunk = os.read(self.fileno(), 1 << 16)
        self.last = time.monotonic()
        if not chunk:
            self._ended(on_finding)
            return
        self.buf += chunk
        *lines, self.buf = self.buf.split(b"\n")
        for line in lines:
            if line.startswith(b"start "):
                self.current = int(line.split()[1])
            elif line.startswith(b"done "):
                row = json.loads(line[5:])  # [case, seed, mutator, outcome, detail]
                on_done(row)
                self.todo.remove(row[0])
                self.current = None

    def _ended(self, on_finding: Callable[[int, str, str], None]) -> None:
        assert self.proc is not None
        code = self.proc.wait()
        if self.current is None and not self.todo and code == 0:
            self.proc = None
        elif self.current is None:
            raise SystemExit(f"a fuzz worker ended outside any case (exit {code}); cases left: {len(self.todo)}")
        else:
            self.lost("crash", f"exit {code}", on_finding)

    def lost(self, outcome: str, detail: str, on_finding: Callable[[int, str, str], None]) -> None:
        """The child died or hung on its current case: that case is a finding; go on from the next one."""
        assert self.proc is not None and self.current is not None
        self.proc.kill()
        self.proc.wait()
        on_finding(self.current, outcome, detail)
        self.todo.remove(self.current)
        if self.todo:
            self._spawn()
        else:
            self.proc = None


def run(seed: int, seed_dir: Path, n: int, workers: int, on_done: Callable[[list], None],
        on_finding: Callable[[int, str, str], None]) -> None:
    """All ``n`` cases over ``workers`` children; ``on_done([i, seed, mutator, outcome, detail])`` per case answered,
    ``on_finding(i, "crash" | "hang", detail)`` per case that took its child down."""
    children = [_Child(seed, seed_dir, list(range(w, n, workers))) for w in range(workers)]
    while live := [c for c in children if c.proc is not None]:
        ready, _, _ = select.select(live, [], [], 1.0)
        for c in ready:
            c.read(on_done, on_finding)
        for c in live:
            if c.proc is not None and c.current is not None and time.monotonic() - c.last > HANG_S:
                c.lost("hang", f"no answer in {HANG_S:.0f} s", on_finding)


def fuzz(seed: int, n: int, workers: int, crashers: Path) -> Report:
    from aligngemini_sdk.device import cpu_label
    from aligngemini_sdk.progress import Progress

    made = seeds()
    work = Path(tempfile.mkdtemp(prefix="ag-fuzz-"))  # the seeds and the workers' case lists
    seed_dir = work / "seeds"
    write_seeds(made, seed_dir)
    by_seed: dict[str, Counter[str]] = {s: Counter() for s in sorted(made)}
    by_mutator: dict[str, Counter[str]] = {m: Counter() for m in MUTATORS}
    defects: list[Finding] = []
    bar = Progress(n, "fuzz images", None)

    def note(i: int, name: str, kind: str, outcome: str, detail: str) -> None:
        by_seed[name][outcome] += 1
        by_mutator[kind][outcome] += 1
        bar.update(1)
        if outcome in DEFECTS:
            defects.append(Finding(i, name, kind, outcome, detail))
            crashers.mkdir(parents=True, exist_ok=True)
            (crashers / f"case-{i}-{name}-{kind}.bin").write_bytes(case(made, seed, i)[2])

    def on_finding(i: int, outcome: str, detail: str) -> None:
        name, kind, _ = case(made, seed, i)
        note(i, name, kind, outcome, detail)

    t0 = time.time()
    try:
        run(seed, seed_dir, n, workers, lambda row: note(*row), on_finding)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    bar.close()
    return Report(cpu_label(), seed, n, round(time.time() - t0, 1), sorted(made),
                  {s: dict(c) for s, c in by_seed.items()}, {m: dict(c) for m, c in by_mutator.items()},
                  sorted(defects, key=lambda f: f.case))


def markdown(rep: Report) -> str:
    outcomes = sorted({o for c in rep.by_seed.values() for o in c}, key=lambda o: (o in DEFECTS, o != "verdict", o))
    lines = [f"# Image fuzzing: {rep.cases} hostile image and video files through `Detector.detect`"
             " and `detect_video`", "",
             f"{rep.cpu}; seed {rep.seed}; {rep.wall_s:.0f} s. Defects (untyped error, crash, hang, a verdict that is "
             f"not a probability): **{rep.n_defects}**.", "",
             "| seed | " + " | ".join(outcomes) + " |", "|---|" + "---|" * len(outcomes)]
    for s, c in rep.by_seed.items():
        lines.append(f"| {s} | " + " | ".join(str(c.get(o, 0)) for o in outcomes) + " |")
    lines += ["", "| mutator | " + " | ".join(outcomes) + " |", "|---|" + "---|" * len(outcomes)]
    for m, c in rep.by_mutator.items():
        lines.append(f"| {m} | " + " | ".join(str(c.get(o, 0)) for o in outcomes) + " |")
    if rep.defects:
        lines += ["", "## Defects (inputs under crashers/)", ""]
        lines += [f"- case {f.case} ({f.seed}, {f.mutator}): {f.outcome} -- {f.detail}" for f in rep.defects[:50]]
    return "\n".join(lines) + "\n"


def plot(rep: Report, path: Path) -> None:
    groups = {"verdict": lambda o: o == "verdict", "typed error": lambda o: o not in DEFECTS and o != "verdict",
              "defect": lambda o: o in DEFECTS}
    names = list(rep.by_seed)
    with figure(path, dpi=110, figsize=(8, 0.35 * len(names) + 1.5)) as ax:
        left = np.zeros(len(names))
        for (label, match), colour in zip(groups.items(), ("tab:green", "tab:blue", "tab:red")):
            share = np.array([sum(v for o, v in rep.by_seed[s].items() if match(o)) / max(1, sum(rep.by_seed[s].values()))
                              for s in names])
            ax.barh(names, share, left=left, color=colour, label=label)
            left += share
        ax.set_xlabel("share of cases")
        ax.set_title(f"{rep.cases} fuzzed image and video files, {rep.n_defects} defects\n{rep.cpu}", fontsize=8)
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=3)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=int, default=15000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "reports" / "fuzz_images"))
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--cases-file", help=argparse.SUPPRESS)
    ap.add_argument("--seed-dir", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args.seed, Path(args.seed_dir), json.loads(Path(args.cases_file).read_text()))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rep = fuzz(args.seed, args.cases, args.workers, out / "crashers")
    (out / "fuzz.json").write_text(json.dumps(asdict(rep) | {"n_defects": rep.n_defects}, indent=1))
    (out / "README.md").write_text(markdown(rep))
    plot(rep, out / "fuzz.png")
    print(markdown(rep))
    return 1 if rep.n_defects else 0


if __name__ == "__main__":
    sys.exit(main())
