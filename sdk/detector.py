"""The Detector: load a bundle, run the pixel branch, let the planner decide on the VLM, fuse.

    >>> from aligngemini_sdk import Detector
    >>> det = Detector()                       # the embedded default bundle
    >>> r = det.detect("photo.jpg")
    >>> r.is_fake, r.score, r.pixel.probability, r.semantic.skip_reason

Thread-safe: one Detector may be shared by many threads. ONNX Runtime sessions run concurrently; the
llama.cpp branch is serialised inside its runtime.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from aligngemini_sdk import video
from aligngemini_sdk.budget import (
    Concurrency,
    LatencyTracker,
    Plan,
    PowerMode,
    check_budget_ms,
    plan_concurrency,
    plan_semantic,
)
from aligngemini_sdk.bundle import Bundle
from aligngemini_sdk.decode_plan import BranchInputs, DecodePlan, decode_for_branches, whole
from aligngemini_sdk.device import Device, cpu_info, device_key
from aligngemini_sdk.errors import AlignGeminiError, DetectorClosedError, InputShapeError, ModelOutputError
from aligngemini_sdk.fusion import Fusion, label_for
from aligngemini_sdk.image import ImageLike, load_image, read_image_file
from aligngemini_sdk.manifest import MANIFEST_NAME, InputSpec
from aligngemini_sdk.options import DetectorOptions
from aligngemini_sdk.provenance import Provenance, ProvenancePolicy, apply_policy, read_provenance
from aligngemini_sdk.result import BranchResult, DetectionResult
from aligngemini_sdk.runtimes.base import BranchRuntime

log = logging.getLogger("aligngemini")
__all__ = ["Detector", "DetectorOptions", "default_bundle_path"]


def default_bundle_path() -> Path:
    """The bundle shipped inside the package (``aligngemini_sdk/default_bundle``). Where its files really are: a
    strict editable install links each file from the source tree, and a bundle never follows links out of itself."""
    return Path(str(resources.files("aligngemini_sdk") / "default_bundle" / MANIFEST_NAME)).resolve().parent


class Detector:
    """Fused two-branch AI-image detector over one bundle."""

    def __init__(self, bundle: str | os.PathLike[str] | Bundle | None = None,
                 options: DetectorOptions | None = None, **kwargs: Any) -> None:
        if options is not None and kwargs:
            raise TypeError("pass either options= or keyword options, not both")
        self.options = options or DetectorOptions(**kwargs)
        self._closed = False
        self.bundle = bundle if isinstance(bundle, Bundle) else Bundle.open(bundle or default_bundle_path())
        if self.options.trusted_keys is not None:
            self.bundle.require_signature(self.options.trusted_keys)
        m = self.bundle.manifest
        o = self.options
        self.device_key = device_key(o.device, o.threads)
        profile = m.device_profiles.get(self.device_key, {})
        self.latency = LatencyTracker({k: v.p90_ms for k, v in profile.items()})

        self.fusion: Fusion = Fusion.of(m, o.operating_point)
        self.pixel: BranchRuntime | None = None
        self.semantic: BranchRuntime | None = None
        self.semantic_error: str | None = None
        self._pixel_alone: BranchRuntime | None = None  # see _pixel_session
        self._alone_lock = threading.Lock()
        self._runtimes = ExitStack()  # closes every runtime opened, in close() -- or at once if construction fails
        self.concurrency = self._plan_concurrency()
        try:
            self._open_branches()
            if self.pixel is None and self.semantic is None:
                raise AlignGeminiError(f"bundle {m.bundle_id} has no runnable branch ({self.semantic_error})")
        except BaseException:
            self._runtimes.close()  # what opened is closed now, not whenever the garbage collector runs
            raise
        self.decode_plan: DecodePlan = self._decode_plan()
        self.provenance_policy: ProvenancePolicy = ProvenancePolicy.from_dict(m.fusion.provenance)
        together = self.concurrency.together and self.pixel is not None and self.semantic is not None
        self._beside: ThreadPoolExecutor | None = ThreadPoolExecutor(
            self.concurrency.workers, thread_name_prefix="aligngemini-semantic") if together else None
        self._pid: int = os.getpid()  # a forked child inherits the workers' executor but not its threads

    @classmethod
    def from_bundle(cls, path: str | os.PathLike[str], device: str | Device = Device.AUTO,
                    budget_ms: float | None = None, power: str | PowerMode = PowerMode.FULL,
                    threads: int | None = None, **kwargs: Any) -> Detector:
        return cls(path, DetectorOptions(device=Device.parse(device), budget_ms=budget_ms,
                                         power=PowerMode.parse(power), threads=threads, **kwargs))

    def _both_onnx(self) -> bool:
        m = self.bundle.manifest
        return m.pixel is not None and m.semantic is not None and m.semantic.input is not None \
            and self.options.load_semantic

    def _plan_concurrency(self) -> Concurrency:
        o = self.options
        return plan_concurrency(semantic_is_classifier=self._both_onnx(),
                                semantic_always_counts=self.fusion.semantic_always_counts, power=o.power,
                                cores=int(cpu_info()["usable_cores"]), threads=o.threads)

    def _open_branches(self) -> None:
        """The branch runtimes, on the threads the concurrency plan gives each. ONNX Runtime's idle workers
        spin-wait for the next call only in the ``full`` power mode with one ONNX session: two sessions on the same
        cores (an ONNX semantic classifier beside the pixel expert) would spin against each other, and
        ``balanced``/``low`` are for devices that pay for every busy core (benchmarks/power_modes.py on a 2-core
        Xeon, pixel-only default, one photo every 30 ms: 41-43 CPU-ms per call spinning, 14-15 without, for 4.8-5.2
        against 5.9-7.0 ms p50). A semantic branch that cannot load is reported, not fatal -- unless its files were
        tampered with. A call that runs the pixel branch alone gets it on every core (:meth:`_pixel_session`)."""
        m, o = self.bundle.manifest, self.options
        if m.pixel is not None:  # first: a tampered pixel file fails before a VLM spends seconds loading
            self.pixel = self._open_pixel(self.concurrency.threads_per_branch)
        self.semantic = self._open_semantic()
        if self.semantic is None and self.concurrency.together:  # nothing to share the cores with
            self.concurrency = Concurrency(False, o.threads, 0, "the semantic branch did not load",
                                           alone_threads=o.threads)
            if self.pixel is not None:  # its half-core session is of no use now
                self.pixel.close()
                self.pixel = self._open_pixel(o.threads)
        if self.concurrency.pixel_alone_session and o.budget_ms is not None:  # calls that drop the semantic
            self._pixel_session(alone=True)  # branch are expected: open their session now, not in one of them

    def _open_semantic(self) -> BranchRuntime | None:
        """The semantic branch's runtime, or None with ``semantic_error`` set (not loaded, or it failed to)."""
        from aligngemini_sdk.errors import BundleIntegrityError
        from aligngemini_sdk.runtimes import open_semantic

        m, o = self.bundle.manifest, self.options
        if m.semantic is None:
            return None
        if not o.load_semantic:
            self.semantic_error = "not loaded (load_semantic=False)"
            return None
        try:
            return self._keep(open_semantic(self.bundle, m.semantic, device=o.device,
                                            threads=self.concurrency.threads_per_branch,
                                            precision=o.semantic_precision, verbose=o.verbose,
                                            spinning=self._spinning()))
        except AlignGeminiError as exc:
            if isinstance(exc, BundleIntegrityError):
                raise
            self.semantic_error = str(exc)
            log.warning("semantic branch unavailable: %s", exc)
            return None

    def _spinning(self) -> bool:
        return self.options.power is PowerMode.FULL and not self._both_onnx()

    def _open_pixel(self, threads: int | None) -> BranchRuntime:
        from aligngemini_sdk.runtimes import open_pixel

        m, o = self.bundle.manifest, self.options
        assert m.pixel is not None
        return self._keep(open_pixel(self.bundle, m.pixel, device=o.device, threads=threads,
                                     precision=o.pixel_precision, spinning=self._spinning()))

    def _keep(self, runtime: BranchRuntime) -> BranchRuntime:
        """Register an opened runtime to be closed with the detector."""
        self._runtimes.callback(runtime.close)
        return runtime

    def _pixel_session(self, alone: bool) -> BranchRuntime | None:
        """The pixel branch's session for a call: the one on its share of the cores, or, in a call that runs it
        alone, one on ``alone_threads`` (every core), opened on first use (at once when the options set a budget;
        :meth:`warmup` opens it too)."""
        if not alone or self.pixel is None or not self.concurrency.pixel_alone_session:
            return self.pixel
        with self._alone_lock:
            if self._pixel_alone is None:
                self._pixel_alone = self._open_pixel(self.concurrency.alone_threads)
            return self._pixel_alone

    def _decode_plan(self) -> DecodePlan:
        """What the loaded branches read of an image: a JPEG decodes only that when every branch reads a crop."""
        m = self.bundle.manifest
        specs: dict[str, InputSpec | None] = {}
        if self.pixel is not None and m.pixel is not None:
            specs["pixel"] = m.pixel.input
        if self.semantic is not None and m.semantic is not None:
            specs["semantic"] = m.semantic.input  # None: a VLM reads the whole image
        return DecodePlan(specs)

    @property
    def pixel_alone(self) -> BranchRuntime | None:
        """The pixel branch's runtime in a call that runs it alone (no semantic branch beside it): ``pixel`` itself,
        or a session of its own on every core when the branches share the cores (opened here if not yet)."""
        return self._pixel_session(alone=True)

    # -- keys for latency tracking -----------------------------------------------------------------
    @property
    def pixel_key(self) -> str:
        return f"pixel/{self.pixel.artifact}" if self.pixel else "pixel/-"

    @property
    def semantic_key(self) -> str:
        return f"semantic/{self.semantic.artifact}" if self.semantic else "semantic/-"

    # -- public API --------------------------------------------------------------------------------
    def detect(self, image: ImageLike, *, color_order: str | None = None, budget_ms: float | None = None,
               power: str | None = None) -> DetectionResult:
        """Detect one image (path, bytes, array with ``color_order``, PIL image or :class:`Image`)."""
        t0 = time.perf_counter()
        self._check_open()
        img, prov = self._load(image, color_order)
        return self._detect_decoded(img, t0, budget_ms, power, prov)

    def detect_batch(self, images: Sequence[ImageLike], *, color_order: str | None = None,
                     budget_ms: float | None = None, power: str | None = None) -> list[DetectionResult]:
        """Detect several images; the pixel branch runs them as one batch where shapes allow.

        ``budget_ms`` applies per image. Decoding errors raise for the first bad input; use
        :meth:`detect` per item to collect errors instead.
        """
        if not images:
            return []
        t0 = time.perf_counter()
        self._check_open()
        call = self._call(budget_ms, power)
        loaded = [self._load(im, color_order) for im in images]
        beside = [self._start_semantic(d, call, (time.perf_counter() - t0) * 1e3) for d, _ in loaded]
        pixels = self._run_pixel_batch([d for d, _ in loaded], alone=not any(beside))
        share = (time.perf_counter() - t0) * 1e3 / len(loaded)
        return [self._finish(d, px, call, share, prov, job.result() if job else None)
                for (d, prov), px, job in zip(loaded, pixels, beside)]

    def _run_pixel_batch(self, imgs: list[BranchInputs], alone: bool) -> list[BranchResult]:
        session = self._pixel_session(alone)
        if session is None:
            return [BranchResult("pixel", ran=False, skip_reason="unavailable") for _ in imgs]
        rgbs = [d.for_branch("pixel") for d in imgs]
        t = time.perf_counter()
        probs = [float(p) for p in session.predict(rgbs)]
        ms = (time.perf_counter() - t) * 1e3 / len(rgbs)  # each image's share of the batch
        self.latency.record(self.pixel_key, ms)
        return [BranchResult("pixel", ran=True, probability=p, ms=ms, artifact=session.artifact) for p in probs]

    def detect_video(self, source: str | os.PathLike[str] | Iterable[Any], *, color_order: str = "BGR",
                     budget_ms: float | None = None, power: str | None = None, stride: int = 1,
                     max_frames: int | None = None) -> Iterator[DetectionResult]:
        """Yield one result per analysed frame under a per-frame budget.

        ``source`` is a video path (decoded with OpenCV) or an iterable of frames (arrays in
        ``color_order``, default OpenCV's BGR). ``stride`` analyses every n-th frame (for live streams
        where the budget is a frame interval). ``result.extra["frame"]`` holds the frame index.
        """
        if stride < 1:
            raise ValueError("stride must be >= 1")
        frames = video.frames(source, self.options.max_pixels) if isinstance(source, (str, os.PathLike)) \
            else iter(source)
        analysed = 0
        for idx, frame in enumerate(frames):
            if idx % stride:
                continue
            if max_frames is not None and analysed >= max_frames:
                return
            t0 = time.perf_counter()
            self._check_open()
            img = load_image(frame, color_order=color_order if isinstance(frame, np.ndarray) else None,
                             max_pixels=self.options.max_pixels, name=f"frame {idx}")
            res = self._detect_decoded(whole(img.rgb, img.name), t0, budget_ms, power)
            res.extra["frame"] = idx
            analysed += 1
            yield res

    def warmup(self, runs: int = 3) -> dict[str, float]:
        """Run each branch on a synthetic image to load kernels and seed the latency estimates.

        With a budget and no device profile, the planner will not run the VLM until it has an estimate;
        this provides one. Returns the measured p90 per branch key.
        """
        rng = np.random.default_rng(0)
        img = rng.integers(0, 256, size=(384, 384, 3), dtype=np.uint8)
        sessions = {id(s): s for s in (self.pixel, self._pixel_session(alone=True)) if s is not None}
        for _ in range(runs):
            for session in sessions.values():
                t = time.perf_counter()
                session.predict([img])
                self.latency.record(self.pixel_key, (time.perf_counter() - t) * 1e3)
            if self.semantic is not None:
                t = time.perf_counter()
                self.semantic.predict([img])
                self.latency.record(self.semantic_key, (time.perf_counter() - t) * 1e3)
        return {k: v for k in (self.pixel_key, self.semantic_key) if (v := self.latency.p90(k)) is not None}

    def info(self) -> dict[str, Any]:
        m, o = self.bundle.manifest, self.options
        return {
            "bundle_id": m.bundle_id, "name": m.name, "placeholder": m.placeholder, "description": m.description,
            "source": str(self.bundle.source), "device_key": self.device_key,
            "fusion": m.fusion.rule, "options": self.options.__dict__,
            "branches_together": self._beside is not None, "concurrency": self.concurrency.reason,
            "operating_point": o.operating_point or m.fusion.default_operating_point,
            "thresholds": {"pixel": self.fusion.t_pixel, "semantic": self.fusion.t_semantic,
                           "fusion": self.fusion.spec.threshold},
            "pixel": self.pixel.describe() if self.pixel else None,
            "pixel_alone": self._pixel_alone.describe() if self._pixel_alone is not None else
            "not opened yet" if self.concurrency.pixel_alone_session and self.pixel else "the pixel session",
            "semantic": self.semantic.describe() if self.semantic else {"unavailable": self.semantic_error},
        }

    def close(self) -> None:
        """Release the runtimes; later calls raise :class:`DetectorClosedError`. Closing twice is harmless."""
        if self._closed:
            return
        self._closed = True
        if self._beside is not None:
            self._beside.shutdown(wait=True)
        with self._alone_lock:
            self._runtimes.close()

    def _check_open(self) -> None:
        if self._closed:
            raise DetectorClosedError("this Detector was closed; create a new one")

    def __enter__(self) -> Detector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals ---------------------------------------------------------------------------------
    def _load(self, image: ImageLike, color_order: str | None) -> tuple[BranchInputs, Provenance | None]:
        """Decode an input for the branches. A file or encoded bytes: provenance first (from the bytes, no pixels),
        then only what the branches read (:mod:`aligngemini_sdk.decode_plan`); anything else is already pixels."""
        if not isinstance(image, (str, os.PathLike, bytes, bytearray, memoryview)):
            img = load_image(image, color_order=color_order, max_pixels=self.options.max_pixels)
            return whole(img.rgb, img.name, tuple(self.decode_plan.specs)), None
        label = os.fsdecode(image) if isinstance(image, (str, os.PathLike)) else "<bytes>"
        data = read_image_file(image, label) if isinstance(image, (str, os.PathLike)) else bytes(image)
        prov = read_provenance(data, trust_anchors=self.options.trust_anchors) if self.options.provenance else None
        return decode_for_branches(data, self.decode_plan, name=label, max_pixels=self.options.max_pixels), prov

    def _call(self, budget_ms: float | None, power: str | PowerMode | None) -> _Call:
        """This call's budget and power mode: the per-call overrides validated, else the options'."""
        o = self.options
        return _Call(budget_ms=o.budget_ms if budget_ms is None else check_budget_ms(budget_ms),
                     power=o.power if power is None else PowerMode.parse(power))

    def _run_pixel(self, img: BranchInputs, alone: bool) -> BranchResult:
        """The pixel branch on one image; ``alone``: no semantic branch runs beside it in this call."""
        session = self._pixel_session(alone)
        if session is None:
            return BranchResult("pixel", ran=False, skip_reason="unavailable")
        rgb = img.for_branch("pixel")
        t = time.perf_counter()
        p = session.predict_one(rgb)
        ms = (time.perf_counter() - t) * 1e3
        self.latency.record(self.pixel_key, ms)
        return BranchResult("pixel", ran=True, probability=p, ms=ms, artifact=session.artifact)

    def _detect_decoded(self, img: BranchInputs, t0: float, budget_ms: float | None,
                        power: str | PowerMode | None, provenance: Provenance | None = None) -> DetectionResult:
        call = self._call(budget_ms, power)
        beside = self._start_semantic(img, call, (time.perf_counter() - t0) * 1e3)
        pixel = self._run_pixel(img, alone=beside is None)
        semantic = beside.result() if beside else None
        return self._finish(img, pixel, call, (time.perf_counter() - t0) * 1e3, provenance, semantic)

    def _plan(self, call: _Call, can_change: bool, elapsed_ms: float) -> Plan:
        return plan_semantic(available=self.semantic is not None, power=call.power, can_change=can_change,
                             budget_ms=call.budget_ms, elapsed_ms=elapsed_ms,
                             predicted_p90_ms=self.latency.p90(self.semantic_key) if self.semantic else None)

    def _start_semantic(self, img: BranchInputs, call: _Call, elapsed_ms: float) -> Future[BranchResult] | None:
        """The semantic branch started beside the pixel branch, when the concurrency plan runs them together and the
        planner would run it whatever the pixel branch says; None: it is planned after the pixel branch, as usual."""
        if self._beside is None or os.getpid() != self._pid or not self._plan(call, True, elapsed_ms).run:
            return None
        return self._beside.submit(self._semantic_now, img, Plan(True))

    def _run_semantic(self, img: BranchInputs, pixel: BranchResult, call: _Call, elapsed_ms: float) -> BranchResult:
        """Ask the planner whether the semantic branch runs for this image; run it when it says so."""
        return self._semantic_now(img, self._plan(call, self.fusion.semantic_can_change(pixel.probability),
                                                  elapsed_ms))

    def _semantic_now(self, img: BranchInputs, plan: Plan) -> BranchResult:
        semantic = BranchResult("semantic", ran=False, skip_reason=plan.skip_reason,
                                detail=plan.detail if self.semantic or not self.semantic_error
                                else self.semantic_error,
                                artifact=self.semantic.artifact if self.semantic else "")
        if plan.run and self.semantic is not None:
            t = time.perf_counter()
            semantic.probability = self.semantic.predict_one(img.for_branch("semantic"))
            semantic.ms = (time.perf_counter() - t) * 1e3
            semantic.ran, semantic.skip_reason = True, None
            self.latency.record(self.semantic_key, semantic.ms)
        return semantic

    def _finish(self, img: BranchInputs, pixel: BranchResult, call: _Call, elapsed_ms: float,
                provenance: Provenance | None, semantic: BranchResult | None = None) -> DetectionResult:
        """The semantic branch (if it did not run beside the pixel branch and the planner runs it now), fusion,
        provenance. ``elapsed_ms``: this image's time spent before (decoding, the branches, or its share of a
        batch)."""
        t_start = time.perf_counter()
        semantic = semantic or self._run_semantic(img, pixel, call, elapsed_ms)
        _check_outputs(img, pixel, semantic)
        det_fake, det_score = self.fusion(pixel.probability, semantic.probability)
        is_fake, score, why = apply_policy(self.provenance_policy, provenance, det_fake, det_score, pixel.probability)
        total = elapsed_ms + (time.perf_counter() - t_start) * 1e3
        return DetectionResult(is_fake=is_fake, score=float(score), label=label_for(is_fake), pixel=pixel,
                               semantic=semantic, total_ms=total, budget_ms=call.budget_ms,
                               bundle_id=self.bundle.manifest.bundle_id, source=img.name,
                               over_budget=call.budget_ms is not None and total > call.budget_ms,
                               provenance=provenance, detector_is_fake=det_fake, detector_score=float(det_score),
                               decided_by_provenance=why, extra={"decode": img.decode})


@dataclass(frozen=True)
class _Call:
    budget_ms: float | None
    power: PowerMode


def _check_outputs(img: BranchInputs, pixel: BranchResult, semantic: BranchResult) -> None:
    if pixel.probability is None and semantic.probability is None:
        raise InputShapeError(img.name, "no branch produced a probability")
    for b in (pixel, semantic):
        if b.probability is not None and not math.isfinite(b.probability):
            raise ModelOutputError(img.name, f"the {b.name} model gave a non-finite output ({b.probability}); "
                                             "no verdict for this input")
