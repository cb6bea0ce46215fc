"""The ``aligngemini`` command line, run as a user runs it (a subprocess)."""

import json
import subprocess
import sys

import pytest

from tests.conftest import KODAK, real_images

pytestmark = pytest.mark.shared_data  # reads ../shared/data (skipped, with the reason, without it)


def cli(*args, check=True):
    r = subprocess.run([sys.executable, "-m", "aligngemini_sdk.cli", *map(str, args)], capture_output=True, text=True)
    if check:
        assert r.returncode == 0, r.stderr
    return r


def test_detect_json_line_on_a_shared_image(ladeda_bundle):
    r = cli("detect", real_images(1)[0], "--bundle", ladeda_bundle, "--json")
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 1
    rec = json.loads(lines[0])
    assert {"path", "is_fake", "score", "branches"} <= set(rec)
    assert rec["branches"]["pixel"]["ran"] and rec["branches"]["semantic"]["skip_reason"] == "unavailable"


def test_detect_directory_reports_bad_files_and_goes_on(ladeda_bundle, tmp_path):
    for p in real_images(3):
        (tmp_path / p.name).symlink_to(p)
    (tmp_path / "zzz_broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    r = cli("detect", tmp_path, "--bundle", ladeda_bundle, "--json", check=False)
    assert r.returncode == 5, r.stderr  # some inputs failed, the others gave verdicts: not 0, not 2
    recs = [json.loads(x) for x in r.stdout.strip().splitlines()]
    assert len(recs) == 4
    assert next(x for x in recs if "error" in x)["path"].endswith("zzz_broken.png")
    assert sum("score" in x for x in recs) == 3


def test_detect_all_bad_exits_nonzero(ladeda_bundle, tmp_path):
    bad = tmp_path / "x.jpg"
    bad.write_bytes(b"")
    assert cli("detect", bad, "--bundle", ladeda_bundle, check=False).returncode == 2


def test_info_verifies_checksums(ladeda_bundle, bundle_copy):
    out = json.loads(cli("info", ladeda_bundle, "--json").stdout)
    assert set(out["files_verified"].values()) == {"ok"} and "pixel" in out["branches"]
    (bundle_copy / "pixel" / "model.fp32.onnx").write_bytes(b"tampered")
    r = cli("info", bundle_copy, check=False)
    assert r.returncode == 1 and "BundleIntegrityError" in r.stderr


def test_sys_lists_runtimes():
    out = json.loads(cli("sys", "--json").stdout)
    assert "CPUExecutionProvider" in out["onnxruntime_providers"] and out["device_key"]
    assert out["cpu"]["usable_cores"] >= 1
    assert out["heic"].startswith(("pillow-heif", "not installed"))  # HEIC support is stated, either way
    assert out["resize"].startswith(("C, integers", "numpy: "))  # so is which resize runs


def test_human_output(ladeda_bundle):
    r = cli("detect", sorted(KODAK.glob("*.png"))[0], "--bundle", ladeda_bundle, "--power", "low")
    assert "pixel" in r.stdout and ("REAL" in r.stdout or "FAKE" in r.stdout)


@pytest.mark.parametrize("args", [["detect"], ["export", "pixel", "--arch", "nope"], ["bench", "compare", "a.json"]])
def test_usage_errors(args):
    assert cli(*args, check=False).returncode != 0


def test_detect_stops_quietly_when_the_reader_goes_away(ladeda_bundle):
    # `aligngemini detect DIR --json | head -1`: the first line arrives, then the pipe closes
    p = subprocess.Popen([sys.executable, "-m", "aligngemini_sdk.cli", "detect", str(KODAK), "--bundle",
                          str(ladeda_bundle), "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert json.loads(p.stdout.readline())["branches"]["pixel"]["ran"]
    p.stdout.close()
    err = p.stderr.read()
    assert p.wait(timeout=120) == 141
    assert "Traceback" not in err


def test_info_says_how_each_artifact_takes_its_input(int8_bundle):
    """Vendors feeding their own tensors need to know an INT8 artifact reads uint8 NHWC bytes, and what each
    branch of the default looks at (a native-resolution crop; the whole image resized)."""
    out = json.loads(cli("info", int8_bundle, "--json").stdout)
    q = out["branches"]["pixel"]["artifacts"]["int8"]["input"]
    assert q["dtype"] == "uint8" and q["layout"] == "NHWC" and 0 <= q["zero_point"] <= 255
    assert "input uint8 NHWC" in cli("info", int8_bundle).stdout
    default = json.loads(cli("info", "--json").stdout)
    assert default["branches"]["pixel"]["input"]["resize"] == "none"
    assert default["branches"]["semantic"]["input"]["resize"] == "exact"
    assert default["default_operating_point"] == "fpr5" and "fpr1" in default["operating_points"]
