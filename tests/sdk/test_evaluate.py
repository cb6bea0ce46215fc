"""``aligngemini eval``: metrics per source, bad files counted not fatal, workers give the same report."""

import json
import subprocess
import sys

import pytest

from aligngemini_sdk.dataset import load_collection, split_by_hash
from aligngemini_sdk.evaluate import EvalReport, evaluate, to_markdown

pytestmark = pytest.mark.shared_data  # reads ../shared/data (skipped, with the reason, without it)


def test_eval_report_and_parallel_workers_agree(ladeda_bundle, collection, tmp_path):
    serial = evaluate(str(ladeda_bundle), str(collection), out=str(tmp_path / "a"))
    parallel = evaluate(str(ladeda_bundle), str(collection), workers=2)
    assert serial.overall == parallel.overall and serial.ci == parallel.ci and serial.by_source == parallel.by_source
    n = len(load_collection(collection))
    assert serial.overall["n"] == n and serial.n_errors == 0
    assert set(serial.by_source) == {"cnndetection", "kodak24", "sd_family"}
    assert EvalReport.from_dict(json.loads((tmp_path / "a" / "eval.json").read_text())) == serial
    assert (tmp_path / "a" / "eval.md").read_text().startswith("## Evaluation")
    preds = (tmp_path / "a" / "predictions.jsonl").read_text().splitlines()
    assert len(preds) == n


def test_ray_backend_gives_the_same_rows_as_one_process(ladeda_bundle, collection):
    """The cluster path (Ray actors, one Detector each) must reproduce the local report row for row."""
    pytest.importorskip("ray", reason="the Ray backend needs aligngemini-sdk[cluster] (ray)")
    from aligngemini_sdk.evaluate import report, run_rows

    samples = load_collection(collection)
    local = run_rows(str(ladeda_bundle), samples, progress=False)
    ray_rows = run_rows(str(ladeda_bundle), samples, workers=2, backend="ray", chunk=5, progress=False)
    assert [r.path for r in ray_rows] == [r.path for r in local]  # input order restored
    assert [r.score for r in ray_rows] == pytest.approx([r.score for r in local], abs=1e-6)
    a, b = report(ray_rows), report(local)
    assert a.overall == b.overall and a.ci == b.ci and a.by_source == b.by_source and a.n_errors == 0
    import ray

    assert not ray.is_initialized()  # a cluster we started ourselves is shut down afterwards


def test_an_unknown_backend_is_refused_before_any_work(ladeda_bundle, collection):
    """A misspelt backend is an error naming the ones there are, not a silent run on this machine."""
    from aligngemini_sdk.evaluate import run_rows

    with pytest.raises(ValueError, match=r"'dask'.*\['local', 'ray'\]"):
        run_rows(str(ladeda_bundle), load_collection(collection), backend="dask", progress=False)


def test_unreadable_files_are_counted(ladeda_bundle, collection, tmp_path):
    import shutil

    c = tmp_path / "c"
    shutil.copytree(collection, c, symlinks=True)
    (c / "fake" / "sd_family" / "zz_broken.jpg").write_bytes(b"\xff\xd8broken")
    rep = evaluate(str(ladeda_bundle), str(c))
    assert rep.n_errors == 1 and "zz_broken.jpg" in rep.errors[0]["path"]
    assert "1 unreadable" in to_markdown(rep)


def test_csv_collections_and_cli(ladeda_bundle, collection, tmp_path):
    samples = load_collection(collection)
    csv = tmp_path / "set.csv"
    csv.write_text("path,label,source\n" + "".join(f"{s.path},{'fake' if s.label else 'real'},src{s.label}\n"
                                                   for s in samples))
    r = subprocess.run([sys.executable, "-m", "aligngemini_sdk.cli", "eval", str(ladeda_bundle), str(csv), "--json"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert set(json.loads(r.stdout)["by_source"]) == {"src0", "src1"}


def test_hash_split_is_deterministic_and_order_free(collection):
    s = load_collection(collection)
    a = split_by_hash(s, 0.3)
    b = split_by_hash(list(reversed(s)), 0.3)
    assert {x.path for x in a[0]} == {x.path for x in b[0]}


def test_symlinked_source_folders_are_followed(tmp_path, collection):
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "linked").symlink_to(collection / "real" / "kodak24", target_is_directory=True)
    assert len(load_collection(tmp_path)) == len(list((collection / "real" / "kodak24").iterdir()))
