"""Video paths get what image paths get: only regular files are opened, every refusal is typed, frame sizes are
bounded before any frame is decoded, and the file FFmpeg reads is the file that was checked."""

import os
import signal

import cv2
import numpy as np
import pytest

from aligngemini_sdk import video
from aligngemini_sdk.errors import ImageDecodeError, ImageTooLargeError


def write_clip(path, n=5, size=(96, 64)):
    w, h = size
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 5, (w, h))
    rng = np.random.default_rng(0)
    for _ in range(n):
        vw.write(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    vw.release()
    return path


@pytest.fixture
def no_blocking():
    """A refusal must come at once: a FIFO opened for reading would wait for a writer forever."""
    signal.signal(signal.SIGALRM, lambda *_: pytest.fail("blocked"))
    signal.alarm(20)
    yield
    signal.alarm(0)


def test_a_video_file_gives_its_frames(tmp_path):
    got = list(video.frames(write_clip(tmp_path / "clip.avi"), max_pixels=10**6))
    assert len(got) == 5 and all(f.shape == (64, 96, 3) and f.dtype == np.uint8 for f in got)


def test_frames_over_max_pixels_are_refused_before_decoding(tmp_path):
    with pytest.raises(ImageTooLargeError, match="96x64"):
        next(video.frames(write_clip(tmp_path / "clip.avi"), max_pixels=96 * 64 - 1))


@pytest.mark.parametrize("kind", ["fifo", "device", "directory", "missing", "url", "nul"])
def test_paths_that_are_not_video_files_are_refused_without_opening_them(tmp_path, kind, no_blocking):
    path = {"fifo": tmp_path / "pipe.mp4", "device": "/dev/zero", "directory": tmp_path,
            "missing": tmp_path / "missing.mp4", "url": "http://127.0.0.1:9/stream.mp4", "nul": "clip\0.mp4"}[kind]
    if kind == "fifo":
        os.mkfifo(path)
    with pytest.raises(ImageDecodeError):
        next(video.frames(path, max_pixels=10**6))


def test_a_file_that_is_not_a_video_is_a_typed_error(tmp_path):
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(bytes(range(256)) * 64)
    with pytest.raises(ImageDecodeError, match="cannot open video"):
        next(video.frames(junk, max_pixels=10**6))


def test_the_descriptor_is_closed_after_the_last_frame(tmp_path):
    before = len(os.listdir("/proc/self/fd"))
    list(video.frames(write_clip(tmp_path / "clip.avi"), max_pixels=10**6))
    assert len(os.listdir("/proc/self/fd")) == before


def test_a_video_without_a_decodable_frame_is_an_error_not_an_empty_run(tmp_path):
    clip = write_clip(tmp_path / "clip.avi")
    data = clip.read_bytes()
    at = data.index(b"movi") + 4  # the AVI's frame data: overwritten, the headers kept
    clip.write_bytes(data[:at] + bytes(len(data) - at))
    with pytest.raises(ImageDecodeError, match="no frame"):
        list(video.frames(clip, max_pixels=10**6))
