"""Hostile files, paths, arrays and bundles: each class the red-team run found gets a typed error (or a bounded,
correct result), with real files built here. Memory claims are checked with the process's peak RSS, not time."""

import io
import json
import math
import os
import shutil
import struct
import subprocess
import sys
import tarfile
import zlib

import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from aligngemini_sdk import Bundle, Detector
from aligngemini_sdk.dataset import list_images
from aligngemini_sdk.errors import (
    BundleFormatError,
    BundleIntegrityError,
    DetectorClosedError,
    ExportError,
    ImageDecodeError,
    ImageTooLargeError,
    InputShapeError,
    ModelOutputError,
)
from aligngemini_sdk.export.bundle_writer import file_entry, pack_tar, put_branch
from aligngemini_sdk.image import FORMATS, IMAGE_EXTENSIONS, decode_bytes, load_image
from aligngemini_sdk.manifest import Artifact, InputSpec, PixelBranchSpec
from tests.conftest import ROOT, real_images
from tests.sdk.test_cli import cli

pytestmark = pytest.mark.shared_data  # reads ../shared/data (skipped, with the reason, without it)


def _peak_rss_mb(code: str) -> float:
    """Peak RSS (MB) of a fresh interpreter that runs ``code`` after importing the SDK: this test process's own
    peak is already high from earlier tests, so a bomb could hide under it."""
    probe = ("import resource, aligngemini_sdk\n" + code +
             "\nprint(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)")
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return float(r.stdout.strip().splitlines()[-1])


# -- 1. bombs in every format the SDK opens -------------------------------------------------------------------
def _tiff_bomb(side: int = 20000, strips: int = 400) -> bytes:
    """A few KB of TIFF declaring side x side 8-bit grey pixels: every strip points at one deflated block."""
    rows = side // strips
    block = zlib.compress(bytes(side * rows), 9)
    tags = [(256, 4, side), (257, 4, side), (258, 3, 8), (259, 3, 8), (262, 3, 1), (277, 3, 1), (278, 4, rows)]
    n_tags = len(tags) + 2
    ifd_at = 8
    arrays_at = ifd_at + 2 + 12 * n_tags + 4
    offsets_at, counts_at = arrays_at, arrays_at + 4 * strips
    data_at = counts_at + 4 * strips
    ifd = struct.pack("<H", n_tags)
    for tag, typ, val in tags:
        ifd += struct.pack("<HHI", tag, typ, 1) + (struct.pack("<HH", val, 0) if typ == 3 else struct.pack("<I", val))
    ifd += struct.pack("<HHII", 273, 4, strips, offsets_at) + struct.pack("<HHII", 279, 4, strips, counts_at)
    ifd += struct.pack("<I", 0)
    return (b"II*\x00" + struct.pack("<I", ifd_at) + ifd + struct.pack(f"<{strips}I", *[data_at] * strips)
            + struct.pack(f"<{strips}I", *[len(block)] * strips) + block)


def test_a_tiff_bomb_is_refused_from_its_header_without_decoding(tmp_path):
    bomb = _tiff_bomb()
    assert len(bomb) < 20_000
    with pytest.raises(ImageTooLargeError, match="20000x20000"):
        decode_bytes(bomb)
    (tmp_path / "bomb.tif").write_bytes(bomb)
    path = str(tmp_path / "bomb.tif")
    refuse = f"from aligngemini_sdk.image import load_image\ntry:\n    load_image({path!r})\nexcept Exception:\n    pass"
    assert _peak_rss_mb(refuse) - _peak_rss_mb("") < 200  # decoding it first cost +2.3 GB


@pytest.mark.parametrize("header", [b"PF\n20000 20000\n-1.0\n", b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y 20000 +X 20000\n",
                                    b"\x00\x00\x00\x0cjP  \r\n\x87\n", b"\x59\xa6\x6a\x95"])
def test_formats_whose_size_is_not_checked_first_are_refused(header):
    """PFM, Radiance HDR, JPEG 2000, Sun raster: OpenCV opens them, the SDK does not (no header size check)."""
    with pytest.raises(ImageDecodeError, match="unsupported format"):
        decode_bytes(header + bytes(64))


def test_a_pnm_header_declaring_a_bomb_is_refused():
    with pytest.raises(ImageTooLargeError):
        decode_bytes(b"P5\n# comment\n30000 30000\n255\n" + bytes(16))


# -- 2. paths that are not regular files ----------------------------------------------------------------------
def _odd_paths(tmp_path):
    (tmp_path / "loop.jpg").symlink_to(tmp_path / "loop.jpg")
    (tmp_path / "file.jpg").write_bytes(b"not an image")
    os.mkfifo(tmp_path / "pipe.jpg")
    return {"loop.jpg": (tmp_path / "loop.jpg", "symbolic link loop"),
            "long": (tmp_path / ("x" * 300 + ".jpg"), "file name too long"),
            "through a file": (tmp_path / "file.jpg" / "a.jpg", "not a directory"),
            "fifo": (tmp_path / "pipe.jpg", "not a regular file"),
            "device": ("/dev/zero", "not a regular file")}


def test_paths_that_are_not_regular_files_give_typed_errors_naming_them(tmp_path):
    for _kind, (path, reason) in _odd_paths(tmp_path).items():
        with pytest.raises(ImageDecodeError, match=reason) as e:
            load_image(path)
        assert str(path) in str(e.value)


def test_a_directory_run_reports_each_odd_path_and_goes_on(ladeda_bundle, tmp_path):
    _odd_paths(tmp_path)
    (tmp_path / "good.png").symlink_to(real_images(1)[0])
    r = cli("detect", tmp_path, "/dev/zero", "--bundle", ladeda_bundle, "--json", check=False)
    recs = [json.loads(line) for line in r.stdout.splitlines()]
    assert r.returncode == 5, r.stderr  # some inputs failed, the others gave verdicts
    assert sum("score" in x for x in recs) == 1 and sum("error" in x for x in recs) == 4
    assert "Traceback" not in r.stderr


# -- 3. directory walks ---------------------------------------------------------------------------------------
def test_directory_walks_visit_each_folder_once_and_stay_in_the_tree(tmp_path):
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    for name in ("a.png", "sub/b.png"):
        shutil.copyfile(real_images(1)[0], root / name)
    (root / "loop").symlink_to(root)
    (root / "sub" / "up").symlink_to(root)
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.copyfile(real_images(1)[0], outside / "c.png")
    (root / "out").symlink_to(outside)
    assert [p.relative_to(root).as_posix() for p in list_images(root)] == ["a.png", "sub/b.png"]
    # labelled collections (link farms of dataset folders) follow links out of the tree, each folder still once
    assert [p.relative_to(root).as_posix() for p in list_images(root, links_out=True)] == ["a.png", "out/c.png",
                                                                                         "sub/b.png"]


# -- 4. arrays and the Detector's own state -------------------------------------------------------------------
def test_arrays_are_size_checked_before_any_copy_and_typed(ladeda_bundle):
    det = Detector(ladeda_bundle)
    huge = np.broadcast_to(np.zeros((1, 1, 3), np.uint8), (100000, 100000, 3))  # 28 GiB if copied
    with pytest.raises(ImageTooLargeError):
        det.detect(huge, color_order="RGB")
    refuse = ("import numpy as np\nfrom aligngemini_sdk.image import load_image\ntry:\n    load_image(np.broadcast_to("
              "np.zeros((1, 1, 3), np.uint8), (100000, 100000, 3)), color_order='RGB')\nexcept Exception:\n    pass")
    assert _peak_rss_mb(refuse) - _peak_rss_mb("") < 200
    with pytest.raises(InputShapeError, match="color_order"):
        det.detect(np.zeros((8, 8, 3), np.uint8), color_order=123)
    det.close()
    with pytest.raises(DetectorClosedError):
        det.detect(real_images(1)[0])
    det.close()  # twice is harmless


# -- 5. JPEG header scan --------------------------------------------------------------------------------------
def test_jpeg_header_scan_is_bounded():
    with pytest.raises(ImageDecodeError, match="size"):
        decode_bytes(b"\xff\xd8" + b"\xff" * (32 << 20) + b"\xff\xd9")
    _, enc = cv2.imencode(".jpg", np.zeros((16, 16, 3), np.uint8))
    jpg = enc.tobytes()
    padded = jpg[:2] + (b"\xff\xe1\xff\xfe" + bytes(65532)) * 300 + jpg[2:]  # ~19 MiB of APP1 before the frame
    with pytest.raises(ImageDecodeError, match="size"):
        decode_bytes(padded)
    assert decode_bytes(jpg[:2] + (b"\xff\xe1\xff\xfe" + bytes(65532)) * 4 + jpg[2:]).shape == (16, 16, 3)


# -- 6. one list of formats -----------------------------------------------------------------------------------
def test_every_listed_format_decodes_and_is_listed_by_directory_runs(tmp_path):
    img = cv2.cvtColor(np.random.default_rng(0).integers(0, 256, (24, 32, 3), dtype=np.uint8), cv2.COLOR_RGB2BGR)
    written = []
    for fmt, exts in FORMATS.items():
        ext = ".ppm" if fmt == "pnm" else exts[0]
        try:
            ok, enc = cv2.imencode(ext, img)
        except cv2.error:
            ok = False
        if not ok:
            continue  # OpenCV cannot encode it here (GIF, say); decoding is covered by its header sniffer
        (tmp_path / f"x{ext}").write_bytes(enc.tobytes())
        assert decode_bytes(enc.tobytes()).shape == (24, 32, 3), fmt
        written.append(f"x{ext}")
    assert {"x.png", "x.jpg", "x.tif", "x.webp", "x.avif"} <= set(written)
    (tmp_path / "notes.txt").write_text("not an image")
    assert sorted(p.name for p in list_images(tmp_path)) == sorted(written)
    assert {".avif", ".tif", ".ppm"} <= IMAGE_EXTENSIONS


# -- 7. tar bundles -------------------------------------------------------------------------------------------
def test_a_tar_bundle_unpacks_only_the_files_its_manifest_lists(tmp_path, ladeda_bundle):
    tar = tmp_path / "b.tar.gz"
    with tarfile.open(tar, "w:gz") as tf:
        for p in sorted(ladeda_bundle.rglob("*")):
            if p.is_file():
                tf.add(p, arcname=p.relative_to(ladeda_bundle).as_posix())
        info = tarfile.TarInfo("junk.bin")
        info.size = 64 << 20  # 64 MiB of zeros: ~64 KB compressed, never listed
        tf.addfile(info, io.BytesIO(bytes(info.size)))
    assert tar.stat().st_size < 2_000_000
    b = Bundle.open(tar, cache_dir=tmp_path / "cache")
    assert not (b.root / "junk.bin").exists()
    assert sum(f.stat().st_size for f in b.root.rglob("*") if f.is_file()) < 2_000_000
    assert set(b.verify().values()) == {"ok"}


def test_a_tar_with_a_duplicated_or_missized_member_is_refused_before_writing(tmp_path, ladeda_bundle):
    dup = tmp_path / "dup.tar"
    with tarfile.open(dup, "w") as tf:
        for _ in range(3):
            tf.add(ladeda_bundle / "manifest.json", arcname="manifest.json")
    with pytest.raises(BundleIntegrityError, match="more than once"):
        Bundle.open(dup, cache_dir=tmp_path / "c1")
    grown = tmp_path / "grown"
    shutil.copytree(ladeda_bundle, grown)
    with open(grown / "pixel" / "model.fp32.onnx", "ab") as fh:
        fh.write(bytes(1 << 20))  # the manifest still declares the old size
    with pytest.raises(BundleIntegrityError, match="declares"):
        Bundle.open(pack_tar(grown, tmp_path / "grown.tar"), cache_dir=tmp_path / "c2")
    assert not any(p.is_file() for p in (tmp_path / "c2").rglob("*"))


# -- 8, 9, 10: models and manifests that disagree -------------------------------------------------------------
def _graph_bundle(root, nodes, inits=(), outputs=("y",), out_dims=(None, 1), size=32, threshold=0.5,
                  external=None, list_external=True):
    """A pixel bundle around a hand-built float graph reading x (N, 3, size, size)."""
    g = helper.make_graph(list(nodes), "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 3, size, size])],
                          [helper.make_tensor_value_info(o, TensorProto.FLOAT, list(out_dims)) for o in outputs],
                          list(inits))
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    (root / "pixel").mkdir(parents=True)
    path = root / "pixel" / "m.onnx"
    if external:
        onnx.save(model, str(path), save_as_external_data=True, location=external, size_threshold=0)
    else:
        onnx.save(model, str(path))
    files = {"model": file_entry(root, "pixel/m.onnx")}
    if external and list_external:
        files["external_data0"] = file_entry(root, f"pixel/{external}")
    spec = PixelBranchSpec(artifacts={"fp32": Artifact("onnxruntime", "fp32", files)}, default_artifact="fp32",
                           input=InputSpec(height=size, width=size), threshold=threshold)
    put_branch(root, "pixel", spec, name="hand-built")
    return root


def _mean_logit(scale: float = 1.0):
    """y = mean over pixels of each channel, times ``scale``, summed: one logit per image, one weight tensor."""
    w = numpy_helper.from_array(np.full((3, 1), scale, np.float32), "w")
    return [helper.make_node("ReduceMean", ["x"], ["m"], axes=[2, 3], keepdims=0),
            helper.make_node("MatMul", ["m", "w"], ["y"])], [w]


def test_external_data_the_manifest_does_not_list_is_refused(tmp_path):
    nodes, inits = _mean_logit()
    root = _graph_bundle(tmp_path / "b", nodes, inits, external="w.bin", list_external=False)
    with pytest.raises(BundleFormatError, match="external data"):
        Detector(root)
    listed = _graph_bundle(tmp_path / "ok", nodes, inits, external="w.bin")
    assert Detector(listed).detect(real_images(1)[0]).pixel.ran
    # a listed side file is checked like the model: changing it is refused, not loaded unhashed
    (listed / "pixel" / "w.bin").write_bytes(np.zeros(1, np.float32).tobytes())
    with pytest.raises(BundleIntegrityError):
        Detector(listed)


@pytest.mark.parametrize("field,value", [("threshold", float("nan")), ("threshold", float("inf")),
                                         ("threshold", 1.5), ("max_side", -1), ("height", 100000)])
def test_manifest_values_are_checked_when_the_bundle_opens(tmp_path, field, value):
    nodes, inits = _mean_logit()
    root = _graph_bundle(tmp_path / "b", nodes, inits)
    m = json.loads((root / "manifest.json").read_text())
    target = m["branches"]["pixel"] if field == "threshold" else m["branches"]["pixel"]["input"]
    target[field] = value
    (root / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(BundleFormatError, match=field):
        Bundle.open(root)


def test_a_model_that_disagrees_with_its_manifest_is_refused_at_load(tmp_path):
    nodes, inits = _mean_logit()
    wrong_size = _graph_bundle(tmp_path / "size", nodes, inits)
    m = json.loads((wrong_size / "manifest.json").read_text())
    m["branches"]["pixel"]["input"].update(height=100, width=100)
    (wrong_size / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(BundleFormatError, match="input"):
        Detector(wrong_size)
    three = _graph_bundle(tmp_path / "three", [*nodes, helper.make_node("Identity", ["y"], ["y2"]),
                                                helper.make_node("Identity", ["y"], ["y3"])], inits,
                          outputs=("y", "y2", "y3"))
    with pytest.raises(BundleFormatError, match="3 outputs"):
        Detector(three)


def test_a_non_finite_output_is_a_typed_error_and_the_cli_prints_only_json(tmp_path):
    nodes, inits = _mean_logit(scale=float("nan"))
    root = _graph_bundle(tmp_path / "nan", nodes, inits)
    with pytest.raises(ModelOutputError, match="non-finite"):
        Detector(root).detect(real_images(1)[0])
    r = cli("detect", *real_images(2), "--bundle", root, "--json", check=False)
    for line in r.stdout.splitlines():
        json.loads(line, parse_constant=lambda c: pytest.fail(f"not RFC 8259 JSON: {c}"))
    assert r.returncode == 2 and "ModelOutputError" in r.stdout


# -- 11. budgets ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("budget", [0, -1, float("nan"), float("inf")])
def test_every_entry_point_validates_budget_ms_the_same_way(ladeda_bundle, budget):
    det = Detector(ladeda_bundle)
    with pytest.raises(ValueError, match="budget_ms"):
        det.detect(real_images(1)[0], budget_ms=budget)
    with pytest.raises(ValueError, match="budget_ms"):
        det.detect_batch(real_images(1), budget_ms=budget)
    with pytest.raises(ValueError, match="budget_ms"):
        Detector(ladeda_bundle, budget_ms=budget)
    assert not math.isnan(det.detect(real_images(1)[0], budget_ms=50.0).score)


# -- 12. pickles ----------------------------------------------------------------------------------------------
class _Payload:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_pickle_payload_checkpoint_gives_a_typed_export_error(tmp_path):
    import torch

    from aligngemini_sdk.export.ladeda import load_ladeda

    evil = tmp_path / "evil.pth"
    torch.save({"conv1.weight": _Payload(tmp_path / "ran")}, evil)
    with pytest.raises(ExportError, match="tensors only") as e:
        load_ladeda(evil)
    assert "weights_only=False" not in str(e.value) and not (tmp_path / "ran").exists()
    r = cli("export", "pixel", "--arch", "ladeda", "--weights", evil, "--out", tmp_path / "b", "--precisions", "fp32",
            check=False)
    assert r.returncode == 1 and "ExportError" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "ran").exists()


# -- 14. the SDK writes nowhere but its cache -----------------------------------------------------------------
def test_detecting_writes_nothing_outside_the_sdk_cache(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("XDG_CACHE_HOME", "ALIGNGEMINI_CACHE", "ORT_DISABLE_TELEMETRY")}
    env["HOME"] = str(home)
    r = subprocess.run([sys.executable, "-m", "aligngemini_sdk.cli", "detect", str(real_images(1)[0]), "--json"],
                       capture_output=True, text=True, env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    written = sorted(p.relative_to(home).as_posix() for p in home.rglob("*"))
    assert all(p == ".cache" or p.startswith(".cache/aligngemini") for p in written), written
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home"]



def test_fuzzed_images_of_every_format_get_a_verdict_or_a_typed_error(tmp_path):
    """A sample of benchmarks/fuzz_images.py (2 mutated files per seed format: JPEG variants, C2PA, PNG, WebP, BMP,
    TIFF, GIF, AVIF, HEIC, grid HEIC, HEIC with EXIF, XMP and C2PA, AVI and MP4 videos), each judged in a child
    process so that a crash or a hang is seen, not suffered."""
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "fuzz_images.py"), "--cases", "34", "--workers", "1", "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=600)
    report = json.loads((tmp_path / "fuzz.json").read_text())
    assert run.returncode == 0 and report["n_defects"] == 0, report["defects"]
    assert sum(sum(c.values()) for c in report["by_seed"].values()) == 34
    assert {"jpeg-camera-exif", "jpeg-progressive", "png-text", "webp", "tiff", "gif", "video-mjpg-avi"} \
        <= set(report["seeds"])
    assert min(sum(c.values()) for c in report["by_seed"].values()) >= 2, report["by_seed"]  # every seed format
