"""INT8 that no CPU kernel can overflow: the pair-sum bound, proved per node from the model's own weights, and
the x86 AVX2 kernel's arithmetic emulated in numpy.

Why it matters: ONNX Runtime's MLAS runs a u8 x s8 matrix product (QLinearConv, QLinearMatMul, MatMulInteger,
DynamicQuantizeMatMul) with different instructions on different CPUs.

- AVX-512 VNNI / AVX-VNNI (``VPDPBUSD``), AMX, ARM dot-product (``SDOT``/``UDOT``): every product is added
  into a 32-bit accumulator. Exact.
- AVX2 and AVX-512BW without VNNI (many AMD CPUs, older Intel): ``VPMADDUBSW`` multiplies *pairs* of
  adjacent u8 x s8 values and adds each pair into a **16-bit** lane with saturation, before ``VPMADDWD``
  widens to 32 bits. A pair whose sum leaves [-32768, 32767] is clipped: 255 * 127 + 255 * 127 = 64770.
  Measured on an AMD EPYC (Zen 2, AVX2, no VNNI) with the previous default bundle (8-bit weights): its
  optimized kernels against the QDQ graph's own arithmetic flipped 16 of 148 held-aside decisions
  (mean |dp| 0.061, max 0.80); the same weights rounded to 7 bits flipped none (mean |dp| 0.0012).
- ARM NEON without dot-product: ``SMULL``/``SMLAL`` add two s8 x s8 products into 16 bits: safe while the
  pair stays within 2 * 128 * 128.

So a bundle is CPU-independent when, for every quantized product, any two weights that can meet in one pair,
times the largest raw activation (255: uint8, and int8 activations that x86 MLAS shifts to uint8), stay within
int16. The bound below does not assume which two weights a kernel pairs (packing differs per kernel and per
layout): it takes the two largest same-sign weights of each output channel. ONNX Runtime's "reduced range"
int8 weights ([-64, 64], 7 bits) meet it for every layer: 255 * (64 + 64) = 32640 <= 32767. uint8 weights
are safe by kernel: x86 and ARM widen u8 x u8 products to 16-bit operands before adding (``VPMADDWD``,
``UMULL``/``UADALP``, ``UDOT``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

INT16_MIN, INT16_MAX = -32768, 32767
#: Largest raw 8-bit activation a kernel multiplies: uint8 activations, and int8 ones x86 MLAS shifts to uint8.
ACTIVATION_MAX = 255
#: int8 weights in ONNX Runtime's reduced range, [-64, 64]: 2 * 255 * 64 = 32640, inside int16 for any pairing.
SAFE_WEIGHT_MAX = 64
#: Weight formats the exporter can write. "s7" and "u8" are exact on every kernel path; "s8" only where products
#: are accumulated in 32 bits (VNNI, AMX, ARM dot product), so the exporter repairs it to "s7".
WEIGHT_FORMATS: dict[str, str] = {
    "s7": "int8 in [-64, 64] (7 bits), per channel: u8 x s8 kernels, pair sums within int16 by the bound",
    "u8": "uint8, zero point 128 (8 bits), per channel: u8 x u8 kernels widen to 16-bit operands first",
    "s8": "int8 in [-127, 127] (8 bits): exact only on VNNI / AMX / ARM dot-product kernels",
}
SAFE_WEIGHT_FORMATS = ("s7", "u8")
#: What the manifest says this scheme is, and why it is exact on every kernel path.
CLAIM = ("every quantized product's worst pair sum (two largest same-sign weights of an output channel x 255) "
         "fits int16, so x86 VPMADDUBSW (AVX2, AVX-512BW) cannot saturate; VNNI, AMX and ARM dot-product kernels "
         "accumulate in int32; uint8 weights are widened before multiplying")


# -- the AVX2 kernel's arithmetic, for one product ------------------------------------------------------------
def exact_u8s8(a: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``a @ w`` in exact integer arithmetic (what VNNI, AMX and dot-product kernels compute)."""
    return a.astype(np.int64) @ w.astype(np.int64)


def emulate_u8s8_avx2(a: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``a @ w`` as MLAS's AVX2 u8s8 kernel computes it: adjacent K pairs (k, k+1) of u8 x s8 products are added
    with int16 saturation (``VPMADDUBSW``), then the pair sums are added exactly in int32 (``VPMADDWD``).

    ``a``: (M, K) uint8 activations; ``w``: (K, N) int8 weights. K is padded with a zero to an even length,
    as the kernel's packing does."""
    a = np.asarray(a).astype(np.int32)
    w = np.asarray(w).astype(np.int32)
    if a.shape[1] % 2:
        a = np.pad(a, ((0, 0), (0, 1)))
        w = np.pad(w, ((0, 1), (0, 0)))
    products = a[:, :, None] * w[None, :, :]  # (M, K, N)
    pairs = np.clip(products[:, 0::2] + products[:, 1::2], INT16_MIN, INT16_MAX)
    return pairs.sum(axis=1, dtype=np.int64)


# -- the bound, per output channel of a weight ----------------------------------------------------------------
def worst_pair_sum(weights: np.ndarray, channel_axis: int, activation_max: int = ACTIVATION_MAX) -> int:
    """Largest |pair sum| any kernel pairing can form: per output channel, the two largest same-sign raw weights
    times ``activation_max``, over all channels. ``weights`` holds the raw stored integers."""
    w = np.moveaxis(np.asarray(weights).astype(np.int64), channel_axis, 0).reshape(np.shape(weights)[channel_axis], -1)
    worst = 0
    for part in (np.maximum(w, 0), np.maximum(-w, 0)):
        top2 = -np.sort(-part, axis=1)[:, :2]
        worst = max(worst, int(top2.sum(axis=1).max(initial=0)))
    return worst * activation_max


@dataclass(frozen=True)
class NodeBound:
    """One quantized product: its weight, the weight's type, and its worst pair sum (None: widened by kernel)."""

    node: str
    op_type: str
    weight: str
    weight_type: str
    worst_pair_sum: int | None
    safe: bool
    why: str = ""


@dataclass(frozen=True)
class SaturationProof:
    """The per-node bound for a whole model: ``safe`` when no quantized product can leave int16 in a pair."""

    nodes: tuple[NodeBound, ...]

    @property
    def safe(self) -> bool:
        return all(n.safe for n in self.nodes)

    @property
    def unsafe(self) -> list[NodeBound]:
        return [n for n in self.nodes if not n.safe]

    @property
    def worst(self) -> int:
        return max((n.worst_pair_sum or 0 for n in self.nodes), default=0)

    def reason(self) -> str:
        """One line naming the nodes that can saturate (empty when safe)."""
        bad = self.unsafe
        if not bad:
            return ""
        shown = ", ".join(f"{n.node} ({n.why or n.worst_pair_sum})" for n in bad[:3])
        return (f"{len(bad)} quantized node(s) can saturate int16 pair sums on AVX2/AVX-512BW u8s8 kernels "
                f"(limit {INT16_MAX}): {shown}{' ...' if len(bad) > 3 else ''}")

    def to_dict(self) -> dict[str, Any]:
        weight_types = sorted({n.weight_type for n in self.nodes})
        return {"claim": CLAIM, "safe": self.safe, "nodes_checked": len(self.nodes), "weight_types": weight_types,
                "activation_max": ACTIVATION_MAX, "worst_pair_sum": self.worst, "int16_limit": INT16_MAX,
                "unsafe_nodes": [n.node for n in self.unsafe]}


#: Quantized ops with a weight operand: op type -> (weight input index, weight channel axis from the attributes).
_QOPS: dict[str, int] = {"QLinearConv": 3, "ConvInteger": 1, "QLinearMatMul": 3, "MatMulInteger": 1,
                         "DynamicQuantizeMatMul": 1, "MatMulIntegerToFloat": 1, "QGemm": 3}
#: Float ops that a QDQ graph runs on integer kernels when their weight comes from a DequantizeLinear.
_QDQ_COMPUTE: dict[str, int] = {"Conv": 1, "ConvTranspose": 1, "MatMul": 1, "Gemm": 1}


def _channel_axis(op_type: str, attrs: dict[str, Any]) -> int:
    """Axis of the weight that indexes output channels (the other axes are summed over)."""
    if op_type in ("Conv", "ConvInteger", "QLinearConv"):
        return 0
    if op_type == "ConvTranspose":
        return 1
    if op_type in ("Gemm", "QGemm"):
        return 0 if attrs.get("transB", 0) else 1
    return -1  # MatMul family: B is (..., K, N)


def _weights(graph: Any) -> Iterator[tuple[Any, str, np.ndarray | None, str]]:
    """(node, weight name, raw weight integers or None when not a constant, weight type) per quantized product.
    The type of a non-constant operand (an activation x activation product, such as attention's Q K^T) comes from
    its DynamicQuantizeLinear (always uint8) or its DequantizeLinear's zero point; "unknown" when the graph does not
    say."""
    from onnx import numpy_helper

    inits = {i.name: i for i in graph.initializer}
    producer = {o: n for n in graph.node for o in n.output}

    def const(name: str) -> np.ndarray | None:
        return numpy_helper.to_array(inits[name]) if name in inits else None

    for node in graph.node:
        if node.op_type in _QOPS and len(node.input) > _QOPS[node.op_type]:
            name = node.input[_QOPS[node.op_type]]
            arr = const(name)
            source = producer.get(name)
            # DynamicQuantizeLinear's output is uint8 by the ONNX spec: an attention product quantized per call
            kind = (arr.dtype.name if arr is not None
                    else "uint8" if source is not None and source.op_type == "DynamicQuantizeLinear" else "unknown")
            yield node, name, arr, kind
        elif node.op_type in _QDQ_COMPUTE and len(node.input) > _QDQ_COMPUTE[node.op_type]:
            dq = producer.get(node.input[_QDQ_COMPUTE[node.op_type]])
            if dq is None or dq.op_type != "DequantizeLinear":
                continue  # a float weight: this node runs in float
            arr = const(dq.input[0])
            zp = const(dq.input[2]) if len(dq.input) > 2 and dq.input[2] else None
            kind = arr.dtype.name if arr is not None else zp.dtype.name if zp is not None else "unknown"
            yield node, dq.input[0], arr, kind


def prove(graph: Any) -> SaturationProof:
    """The bound for every quantized product of an ONNX graph (``onnx.GraphProto``)."""
    from onnx import helper

    out = []
    for node, wname, arr, kind in _weights(graph):
        name = node.name or f"{node.op_type}:{node.output[0]}"
        if kind == "uint8":
            why = "u8 x u8: widened before multiplying" + ("" if arr is not None else " (activation operand)")
            out.append(NodeBound(name, node.op_type, wname, kind, None, True, why))
        elif arr is not None and kind == "int8":
            attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
            worst = worst_pair_sum(arr, _channel_axis(node.op_type, attrs))
            out.append(NodeBound(name, node.op_type, wname, kind, worst, worst <= INT16_MAX))
        else:  # an int8 (or unknown) activation operand can take any value: 2 * 255 * 128 in the worst pair
            out.append(NodeBound(name, node.op_type, wname, kind, 2 * ACTIVATION_MAX * 128, False,
                                 f"{kind} operand that is not a constant"))
    return SaturationProof(tuple(out))


def prove_file(path: str | os.PathLike[str]) -> SaturationProof:
    """:func:`prove` for a model file (its external data is not loaded; weights are always inline here)."""
    import onnx

    return prove(onnx.load(os.fspath(path)).graph)
