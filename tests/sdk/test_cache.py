"""The SDK's cache: every use is recorded, pruning removes only stale derived entries and never follows a link."""

import json
import os
import subprocess
import sys
import time

import pytest

from aligngemini_sdk import Bundle, Detector
from aligngemini_sdk.cache import STALE_TEMP_S, default_cache_dir, entries, prune
from aligngemini_sdk.export.bundle_writer import pack_tar
from tests.conftest import real_images

DAY = 86400.0


def make(path, nbytes=10, age_s=0.0):
    """A cache entry folder holding one file of ``nbytes``, last used ``age_s`` ago."""
    path.mkdir(parents=True)
    (path / "f.bin").write_bytes(b"x" * nbytes)
    stamp = time.time() - age_s
    os.utime(path, (stamp, stamp))
    return path


@pytest.fixture
def cache(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    monkeypatch.setenv("ALIGNGEMINI_CACHE", str(root))
    assert default_cache_dir() == root
    return root


def test_entries_list_each_item_with_its_size_oldest_first(cache):
    make(cache / "bundles" / "new", 5)
    make(cache / "sealed" / "ag-1-pixel-fp32", 7, age_s=3 * DAY)
    make(cache / "wheels" / "portable", 11, age_s=DAY)
    got = entries()
    assert [(e.kind, e.path.name, e.bytes) for e in got] == [
        ("sealed", "ag-1-pixel-fp32", 7), ("wheels", "portable", 11), ("bundles", "new", 5)]


def test_prune_removes_stale_derived_entries_and_keeps_tools_and_recent_ones(cache):
    old = make(cache / "bundles" / "old", age_s=10 * DAY)
    recent = make(cache / "bundles" / "recent", age_s=DAY)
    wheel = make(cache / "wheels" / "portable", age_s=100 * DAY)
    removed = prune(older_than_s=7 * DAY)
    assert [e.path for e in removed] == [old]
    assert not old.exists() and recent.is_dir() and wheel.is_dir()
    assert [e.path for e in prune(kinds=("wheels",))] == [wheel]


def test_prune_leaves_an_unpack_in_progress_and_removes_a_crashed_one(cache):
    writing = make(cache / "bundles" / ".unpack-live", age_s=60)
    crashed = make(cache / "bundles" / ".unpack-dead", age_s=STALE_TEMP_S + 60)
    prune()
    assert writing.is_dir() and not crashed.exists()


def test_prune_never_follows_a_link_out_of_the_cache(cache, tmp_path):
    precious = make(tmp_path / "precious", age_s=100 * DAY)
    (cache / "bundles").mkdir(parents=True)
    (cache / "bundles" / "link").symlink_to(precious)
    (cache / "sealed").symlink_to(precious)
    assert entries() == []
    prune()
    assert (precious / "f.bin").is_file()


def test_unknown_kinds_are_refused(cache):
    with pytest.raises(ValueError, match="unknown cache kinds"):
        prune(kinds=("bundles", "home"))


@pytest.mark.shared_data
def test_reopening_a_tar_records_the_use_and_a_pruned_copy_is_unpacked_again(cache, tmp_path, ladeda_bundle):
    tar = pack_tar(ladeda_bundle, tmp_path / "b.tar")
    first = Bundle.open(tar)
    (entry,) = entries()
    assert entry.kind == "bundles" and entry.path == first.root
    os.utime(first.root, (time.time() - 30 * DAY,) * 2)
    Bundle.open(tar)
    assert time.time() - entries()[0].last_used < DAY  # the reuse was recorded: not stale
    assert prune(older_than_s=7 * DAY) == []
    os.utime(first.root, (time.time() - 30 * DAY,) * 2)
    assert [e.path for e in prune(older_than_s=7 * DAY)] == [first.root]
    image = real_images(1)[0]
    assert Detector(Bundle.open(tar)).detect(image).score == Detector(ladeda_bundle).detect(image).score


def test_the_cli_lists_and_prunes(cache):
    make(cache / "bundles" / "old", 1000, age_s=10 * DAY)
    make(cache / "sdist" / "llama.tar.gz", 2000, age_s=10 * DAY)
    env = {**os.environ, "ALIGNGEMINI_CACHE": str(cache)}

    def cli(*args):
        r = subprocess.run([sys.executable, "-m", "aligngemini_sdk.cli", "cache", *args, "--json"],
                           capture_output=True, text=True, env=env)
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)

    assert {e["kind"]: e["bytes"] for e in cli()["entries"]} == {"bundles": 1000, "sdist": 2000}
    assert [e["kind"] for e in cli("prune", "--older-than-days", "7")["entries"]] == ["bundles"]
    assert [e["kind"] for e in cli("list")["entries"]] == ["sdist"]
