"""Video files for ``Detector.detect_video``: frames decoded by OpenCV's FFmpeg backend, behind the same checks an
image path gets.

The path must be a regular file (a FIFO would block, ``/dev/zero`` would never end, a directory or a URL is not a
video file): it is checked, opened read-only, checked again on the descriptor, and handed to FFmpeg as that
descriptor (``/proc/self/fd/N`` where the system has it), so the file judged is the file checked. A stream whose
declared frame size exceeds ``max_pixels`` is refused before any frame is decoded. Live sources (cameras, network
streams) are not opened by path: pass their frames as an iterable.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np

from aligngemini_sdk.errors import ImageDecodeError, ImageTooLargeError
from aligngemini_sdk.image import open_regular

#: no size limit on the file itself (videos are long); frames are bounded by ``max_pixels``
MAX_VIDEO_BYTES = 1 << 62


def frames(path: str | os.PathLike[str], max_pixels: int) -> Iterator[np.ndarray]:
    """The video's frames, BGR uint8, in order; :class:`ImageDecodeError` when the path is not a readable regular
    file, FFmpeg cannot open it or decodes no frame of it, :class:`ImageTooLargeError` when its frames would exceed
    ``max_pixels``."""
    import cv2

    label = os.fspath(path)
    fd, _ = open_regular(path, label, MAX_VIDEO_BYTES)
    try:
        source = f"/proc/self/fd/{fd}" if os.path.exists(f"/proc/self/fd/{fd}") else label
        cap = cv2.VideoCapture(source, cv2.CAP_FFMPEG)
        try:
            if not cap.isOpened():
                raise ImageDecodeError(label, "cannot open video (not a video file, or a format FFmpeg cannot read)")
            w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
            if w * h > max_pixels:
                raise ImageTooLargeError(label, f"frames of {w}x{h} = {w * h} pixels exceed the limit of {max_pixels}")
            n = 0
            while True:
                ok, frame = cap.read()
                if not ok:
                    break
                n += 1
                yield frame
            if n == 0:
                raise ImageDecodeError(label, "no frame could be decoded (an empty or damaged video)")
        finally:
            cap.release()
    finally:
        os.close(fd)
