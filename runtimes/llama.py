"""Semantic (VLM) branch on llama.cpp: a GGUF text model + an mmproj vision projector.

One forward pass per image. P(fake) is the softmax, restricted to the label words' candidate tokens,
of the logits for the *next* token after the prompt. We never generate or parse text and never ask
llama.cpp for all-position logits (``logits_all``), so the answer costs one prompt evaluation.

The prompt is ``prefix <image> suffix``. The prefix (chat header, system text) is identical for every
image: its KV cache is kept and only the image and suffix are evaluated per call. llama.cpp contexts are
not thread-safe, so calls are serialised with a lock; use several Detectors for parallel VLM work.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import threading
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from aligngemini_sdk.device import cpu_info
from aligngemini_sdk.errors import RuntimeUnavailableError
from aligngemini_sdk.extras import require
from aligngemini_sdk.manifest import SemanticBranchSpec
from aligngemini_sdk.resize import area

_log_lock = threading.Lock()
_llama_log = logging.getLogger("aligngemini.llama_cpp")
_log_callback: Any = None  # keep the ctypes callback alive for the process lifetime
_verbose_any = False


#: Set to 1 to run a llama.cpp build with ggml's AMX kernels on an AMX CPU anyway (see :func:`ggml_amx_hazard`).
ALLOW_GGML_AMX_ENV = "ALIGNGEMINI_ALLOW_GGML_AMX"


def ggml_amx_hazard(system_info: str, cpu_features: Sequence[str]) -> str | None:
    """Why this llama.cpp build must not run here, or None. A build compiled with ggml's AMX kernels (a native build
    on a Sapphire Rapids-class CPU) repacks weights for AMX on a CPU that has AMX-INT8, and llama-cpp-python
    0.3.36's ggml segfaults there in ``ggml_backend_amx_mul_mat`` on Q4_K_M models (measured on a 2-core Xeon with
    AMX: the process died in the first image; llama.cpp#20824). A segfault takes the caller's whole process down, so
    the branch refuses to load instead, with the fix."""
    if "AMX_INT8 = 1" not in system_info or "amx_int8" not in cpu_features:
        return None
    return ("this llama.cpp build uses ggml's AMX kernels, which crash (segfault in ggml_backend_amx_mul_mat, "
            "llama.cpp#20824) on this AMX CPU; reinstall llama-cpp-python without them: CMAKE_ARGS=\"-DGGML_NATIVE=OFF "
            "-DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON\" pip install --force-reinstall --no-cache-dir "
            f"llama-cpp-python (setup.sh does), or set {ALLOW_GGML_AMX_ENV}=1 to try anyway")


def quiet_llama_logs(verbose: bool = False) -> None:
    """Install the quiet log callback for code that calls llama.cpp outside a runtime (quantization)."""
    import llama_cpp
    import llama_cpp.mtmd_cpp as mtmd

    _install_quiet_logging(llama_cpp, mtmd, verbose)


def _install_quiet_logging(llama_cpp: Any, mtmd: Any, verbose: bool) -> None:
    """Route llama.cpp/mtmd logs through one callback that drops them unless some Detector is verbose.

    Without this, llama.cpp prints model-loading chatter to the user's stderr on every load.
    """
    global _log_callback, _verbose_any
    with _log_lock:
        _verbose_any = _verbose_any or verbose
        if _log_callback is not None:
            return

        @llama_cpp.llama_log_callback
        def _cb(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
            # llama.cpp logs even notices at ERROR level; real failures reach the user as typed exceptions
            # from return codes, so its log goes to stderr only when verbose, else to logging at DEBUG.
            msg = text.decode("utf-8", "replace")
            if _verbose_any:
                import sys

                sys.stderr.write(msg)
            else:
                _llama_log.debug(msg.rstrip())

        _log_callback = _cb
        llama_cpp.llama_log_set(_cb, ctypes.c_void_p(0))
        mtmd.mtmd_log_set(_cb, ctypes.c_void_p(0))
        mtmd.mtmd_helper_log_set(_cb, ctypes.c_void_p(0))


def label_token_ids(tokenize: Any, words: Sequence[str], piece: Any = None) -> list[int]:
    """Candidate next-token ids for a list of label words.

    Each word is tried as-is, with a leading space, and capitalised; a word that tokenizes into several
    pieces contributes its first piece (the decision is made at the first token). A first piece that is
    only whitespace (SentencePiece's bare "▁") is not a decision, so that variant is skipped.
    """
    ids: list[int] = []
    for w in words:
        for variant in sorted({w, w.lower(), w.capitalize(), " " + w, " " + w.lower(), " " + w.capitalize()}):
            toks = tokenize(variant)
            if not toks:
                continue
            if piece is not None and not piece(toks[0]).replace("\u2581", " ").strip():
                continue
            if toks[0] not in ids:
                ids.append(int(toks[0]))
    return ids


def split_label_ids(fake: list[int], real: list[int]) -> tuple[list[int], list[int], list[int]]:
    """Drop ids both label lists share (they cannot tell the labels apart); fail if a side ends empty."""
    shared = sorted(set(fake) & set(real))
    f = [i for i in fake if i not in shared]
    r = [i for i in real if i not in shared]
    if not f or not r:
        raise RuntimeUnavailableError(f"label words share all their first tokens {shared}; choose distinct labels")
    return f, r, shared


def restricted_softmax_fake(logits: np.ndarray, fake_ids: Sequence[int], real_ids: Sequence[int]) -> float:
    """P(fake) = sum softmax over fake candidates / sum over all candidates (numerically stable)."""
    lf = np.asarray([logits[i] for i in fake_ids], dtype=np.float64)
    lr = np.asarray([logits[i] for i in real_ids], dtype=np.float64)
    m = max(lf.max(), lr.max())
    ef, er = np.exp(lf - m).sum(), np.exp(lr - m).sum()
    return float(ef / (ef + er))


def _null_callback(mtmd: Any) -> Any:
    """A NULL post-decode callback for mtmd_helper_decode_image_chunk (ctypes refuses None for it)."""
    return mtmd.mtmd_helper_decode_image_chunk.argtypes[8](0)


class LlamaSemantic:
    """The semantic branch: loads the model once, answers P(fake) per image."""

    backend = "llama.cpp"

    def __init__(self, model_path: str | os.PathLike[str], mmproj_path: str | os.PathLike[str],
                 spec: SemanticBranchSpec, *, artifact: str = "", n_gpu_layers: int = 0,
                 threads: int | None = None, verbose: bool = False) -> None:
        llama_cpp = require("llama_cpp")
        mtmd = require("llama_cpp.mtmd_cpp", "The semantic (VLM) branch on llama.cpp (mtmd)")
        self._lc, self._mtmd = llama_cpp, mtmd
        _install_quiet_logging(llama_cpp, mtmd, verbose)
        self.spec, self.artifact, self.verbose = spec, artifact, verbose
        self.threads = threads or max(1, (os.cpu_count() or 2))
        hazard = ggml_amx_hazard(llama_cpp.llama_print_system_info().decode(errors="replace"),
                                 cpu_info()["features"])
        if hazard and n_gpu_layers == 0 and os.environ.get(ALLOW_GGML_AMX_ENV) != "1":
            raise RuntimeUnavailableError(hazard)
        try:
            self.llm = llama_cpp.Llama(model_path=os.fspath(model_path), n_ctx=spec.n_ctx, n_batch=spec.n_ctx,
                                       n_ubatch=spec.n_ctx, n_threads=self.threads,
                                       n_threads_batch=self.threads, n_gpu_layers=n_gpu_layers,
                                       logits_all=False, verbose=verbose)
        except Exception as exc:
            raise RuntimeUnavailableError(f"llama.cpp could not load {model_path}: {exc}") from exc
        params = mtmd.mtmd_context_params_default()
        params.use_gpu = n_gpu_layers != 0
        params.print_timings = verbose
        params.n_threads = self.threads
        self.mctx = mtmd.mtmd_init_from_file(os.fspath(mmproj_path).encode(), self.llm.model, params)
        if not self.mctx:
            raise RuntimeUnavailableError(f"llama.cpp could not load the vision projector {mmproj_path}")
        if not mtmd.mtmd_support_vision(self.mctx):
            raise RuntimeUnavailableError(f"{mmproj_path} has no vision encoder")
        marker = mtmd.mtmd_default_marker().decode()
        text = str(spec.prompt["text"])
        if "{image}" in text:
            text = text.replace("{image}", marker)
        elif marker not in text:
            text = marker + text
        self.prompt_text = text
        fake = label_token_ids(self._tokenize, spec.labels["fake"], self._piece)
        real = label_token_ids(self._tokenize, spec.labels["real"], self._piece)
        self.fake_ids, self.real_ids, self.shared_ids = split_label_ids(fake, real)
        self._lock = threading.Lock()
        self._cached_prefix: list[int] | None = None  # tokens whose KV is valid at positions [0, n)
        self.last_timing: dict[str, float] = {}

    def _tokenize(self, text: str) -> list[int]:
        return list(self.llm.tokenize(text.encode(), add_bos=False, special=False))

    def _piece(self, token: int) -> str:
        return self.llm.detokenize([token]).decode("utf-8", "replace")

    # -- inference ---------------------------------------------------------------------------------
    def prompt_layout(self, rgb: np.ndarray) -> list[tuple[str, Any]]:
        """The exact sequence llama.cpp evaluates: [("text", token ids) | ("image", n_tokens), ...].

        Used by the export parity gate to feed the transformers model identical tokens."""
        mtmd = self._mtmd
        rgb = self.fit(rgb)
        with self._lock:
            bitmap = mtmd.mtmd_bitmap_init(rgb.shape[1], rgb.shape[0], rgb.ctypes.data_as(ctypes.POINTER(ctypes.c_uint8)))
            chunks = mtmd.mtmd_input_chunks_init()
            try:
                layout: list[tuple[str, Any]] = []
                for i in range(self._chunk_prompt(bitmap, chunks)):
                    chunk = mtmd.mtmd_input_chunks_get(chunks, i)
                    if mtmd.mtmd_input_chunk_get_type(chunk) == mtmd.MTMD_INPUT_CHUNK_TYPE_TEXT:
                        layout.append(("text", self._text_tokens(chunk)))
                    else:
                        layout.append(("image", int(mtmd.mtmd_input_chunk_get_n_tokens(chunk))))
                return layout
            finally:
                mtmd.mtmd_input_chunks_free(chunks)
                mtmd.mtmd_bitmap_free(bitmap)

    def probability(self, rgb: np.ndarray) -> float:
        """P(fake) for one RGB uint8 image. Thread-safe (serialised)."""
        with self._lock:
            return self._probability_locked(rgb)

    def fit(self, rgb: np.ndarray) -> np.ndarray:
        """Downsize (exact area, the same bytes on every CPU) so the longer side is at most ``image_max_side``: the
        VLM judges semantics, and a full-resolution photo would cost thousands of vision tokens."""
        h, w = rgb.shape[:2]
        side = self.spec.image_max_side
        if side and max(h, w) > side:
            s = side / max(h, w)
            rgb = area(rgb, max(1, round(h * s)), max(1, round(w * s)))
        return np.ascontiguousarray(rgb, dtype=np.uint8)

    def _probability_locked(self, rgb: np.ndarray) -> float:
        mtmd, lc = self._mtmd, self._lc
        t0 = time.perf_counter()
        rgb = self.fit(rgb)
        h, w = rgb.shape[:2]
        bitmap = mtmd.mtmd_bitmap_init(w, h, rgb.ctypes.data_as(ctypes.POINTER(ctypes.c_uint8)))
        if not bitmap:
            raise RuntimeUnavailableError("mtmd could not create a bitmap")
        chunks = mtmd.mtmd_input_chunks_init()
        timing = {"image_ms": 0.0, "vision_ms": 0.0, "prompt_ms": 0.0, "prefix_reused": 0.0}
        try:
            n_chunks = self._chunk_prompt(bitmap, chunks)
            ctx = self.llm.ctx
            n_past = self._reusable_prefix(chunks, n_chunks)
            start = 1 if n_past else 0
            timing["prefix_reused"] = float(start)
            lc.llama_memory_seq_rm(lc.llama_get_memory(ctx), -1, n_past, -1)
            if start == 0:
                self._cached_prefix = None
            for i in range(start, n_chunks):
                chunk = mtmd.mtmd_input_chunks_get(chunks, i)
                is_text = mtmd.mtmd_input_chunk_get_type(chunk) == mtmd.MTMD_INPUT_CHUNK_TYPE_TEXT
                need = n_past + mtmd.mtmd_input_chunk_get_n_tokens(chunk)
                if need > self.spec.n_ctx:
                    raise RuntimeUnavailableError(f"prompt needs {need} tokens > n_ctx {self.spec.n_ctx}; lower "
                                                  "semantic.image_max_side or raise n_ctx in the manifest")
                t = time.perf_counter()
                n_past = self._eval_chunk(ctx, chunk, i, n_past, is_text, i == n_chunks - 1, timing)
                timing["prompt_ms" if is_text else "image_ms"] += (time.perf_counter() - t) * 1e3
                if i == 0 and is_text:
                    self._cached_prefix = self._text_tokens(chunk)
            logits = np.ctypeslib.as_array(lc.llama_get_logits_ith(ctx, -1), shape=(self.llm.n_vocab(),))
            p = restricted_softmax_fake(logits, self.fake_ids, self.real_ids)
        except BaseException:
            self._cached_prefix = None
            raise
        finally:
            mtmd.mtmd_input_chunks_free(chunks)
            mtmd.mtmd_bitmap_free(bitmap)
        timing["total_ms"] = (time.perf_counter() - t0) * 1e3
        self.last_timing = timing
        return p

    def _chunk_prompt(self, bitmap: Any, chunks: Any) -> int:
        """Split the prompt with the image into ``chunks``; returns how many there are."""
        mtmd = self._mtmd
        itext = mtmd.mtmd_input_text()
        raw = self.prompt_text.encode()
        itext.text, itext.text_len, itext.add_special, itext.parse_special = raw, len(raw), True, True
        arr = (mtmd.mtmd_bitmap_p_ctypes * 1)(bitmap)
        rc = mtmd.mtmd_tokenize(self.mctx, chunks, ctypes.byref(itext), arr, 1)
        if rc != 0:
            raise RuntimeUnavailableError(f"mtmd_tokenize failed with code {rc}")
        return int(mtmd.mtmd_input_chunks_size(chunks))

    def _reusable_prefix(self, chunks: Any, n_chunks: int) -> int:
        """How many tokens of the KV cache can stay: the text before the image when it equals the last call's."""
        mtmd = self._mtmd
        first = mtmd.mtmd_input_chunks_get(chunks, 0)
        if mtmd.mtmd_input_chunk_get_type(first) != mtmd.MTMD_INPUT_CHUNK_TYPE_TEXT or n_chunks <= 1:
            return 0
        prefix = self._text_tokens(first)
        return len(prefix) if prefix == self._cached_prefix else 0

    def _text_tokens(self, chunk: Any) -> list[int]:
        n_tok = ctypes.c_size_t()
        ptr = self._mtmd.mtmd_input_chunk_get_tokens_text(chunk, ctypes.byref(n_tok))
        return [int(ptr[j]) for j in range(n_tok.value)]

    def _eval_chunk(self, ctx: Any, chunk: Any, i: int, n_past: int, is_text: bool, last: bool,
                    timing: dict[str, float]) -> int:
        """Evaluate one prompt chunk at position ``n_past``; returns the next position. An image chunk is encoded
        (the vision tower: ``timing["vision_ms"]``) and its embeddings decoded by the LLM, as llama.cpp's own helper
        does, split so the two costs can be told apart."""
        mtmd, lc = self._mtmd, self._lc
        new_n_past = lc.llama_pos(n_past)  # the helpers add a text chunk's tokens to it (and set it for images)
        if is_text:
            rc = mtmd.mtmd_helper_eval_chunk_single(self.mctx, ctx, chunk, lc.llama_pos(n_past), lc.llama_seq_id(0),
                                                    self.spec.n_ctx, last, ctypes.byref(new_n_past))
        else:
            t = time.perf_counter()
            rc = mtmd.mtmd_encode_chunk(self.mctx, chunk)
            timing["vision_ms"] = timing.get("vision_ms", 0.0) + (time.perf_counter() - t) * 1e3
            if rc == 0:
                rc = mtmd.mtmd_helper_decode_image_chunk(self.mctx, ctx, chunk, mtmd.mtmd_get_output_embd(self.mctx),
                                                         lc.llama_pos(n_past), lc.llama_seq_id(0), self.spec.n_ctx,
                                                         ctypes.byref(new_n_past), _null_callback(mtmd), None)
        if rc != 0:
            raise RuntimeUnavailableError(f"llama.cpp failed to evaluate prompt chunk {i} (code {rc})")
        return int(new_n_past.value)

    def predict(self, images: Sequence[np.ndarray]) -> np.ndarray:
        return np.asarray([self.probability(img) for img in images], dtype=np.float64)

    def predict_one(self, image: np.ndarray) -> float:
        return float(self.probability(image))

    def describe(self) -> dict[str, Any]:
        return {"backend": self.backend, "artifact": self.artifact, "threads": self.threads,
                "fake_token_ids": self.fake_ids, "real_token_ids": self.real_ids}

    def close(self) -> None:
        with self._lock:
            if getattr(self, "mctx", None):
                self._mtmd.mtmd_free(self.mctx)
                self.mctx = None
            if getattr(self, "llm", None) is not None:
                self.llm.close()
                self.llm = None

    def __del__(self) -> None:  # pragma: no cover - best effort at interpreter exit
        with contextlib.suppress(Exception):
            self.close()
