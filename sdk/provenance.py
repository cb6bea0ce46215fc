"""The provenance branch: what a file says about where it came from, read from its bytes before any pixel is
decoded, and how that evidence is fused with detection.

Evidence, strongest first:

- a **C2PA** manifest (Content Credentials), validated by ``c2pa-python`` (the ``[c2pa]`` extra): signed by a
  certificate chaining to a configured trust anchor or not, hard binding (content hash) intact or broken, the
  claim generator, the signer, and the ``digitalSourceType`` of its ``c2pa.actions``;
- unsigned **metadata**: IPTC ``DigitalSourceType`` in XMP, and generator markers in EXIF, XMP and PNG text
  chunks, from a data table shipped with the package (``provenance_markers.json``: marker -> generator).

:func:`read_provenance` returns a :class:`Provenance`; :func:`apply_policy` folds it into a detection verdict
under the bundle's :class:`ProvenancePolicy`. Without the extra, C2PA manifests are reported as present but
unverified (``validation="unavailable"``) and never trusted.
"""

from __future__ import annotations

import functools
import io
import json
import os
import time
from dataclasses import asdict, dataclass, field
from importlib import resources
from typing import Any, Literal

from aligngemini_sdk.metadata import Metadata, read_metadata

Says = Literal["ai", "capture", "edited"]
Validation = Literal["trusted", "valid-untrusted", "invalid", "absent", "unavailable", "unreadable"]
#: C2PA validation codes that mean the content no longer matches what was signed (the hard binding broke).
BINDING_CODES = ("assertion.dataHash.mismatch", "assertion.bmffHash.mismatch", "assertion.boxesHash.mismatch",
                 "assertion.collectionHash.mismatch")
MIME = {"jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp", "heic": "image/heic", "avif": "image/avif"}


@dataclass
class Provenance:
    """What the file's own metadata says. ``says``: ai / capture / edited / None (nothing declared).
    ``strength``: "signed" (a C2PA signature that validated) or "unsigned" (metadata anyone can write or strip)."""

    kind: Literal["c2pa", "metadata", "none"] = "none"
    says: Says | None = None
    strength: Literal["signed", "unsigned"] | None = None
    validation: Validation = "absent"
    trusted: bool = False
    binding_intact: bool | None = None
    generator: str | None = None
    device: str | None = None
    signer: str | None = None
    digital_source_type: str | None = None
    fields: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    ms: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ProvenancePolicy:
    """How provenance changes the detectors' verdict (stored in the manifest as ``fusion.provenance``).

    Defaults: a valid signature declaring generative AI -> fake; unsigned generator markers -> fake (metadata is
    stripped far more often than forged to say "AI"); a trusted capture signature with an intact binding and no
    generative action -> real unless the pixel branch is above ``capture_pixel_override``; an invalid or
    tampered manifest is never trusted (detection decides); nothing present -> detection as it is."""

    signed_ai_is_fake: bool = True
    unsigned_ai_is_fake: bool = True
    trusted_capture_is_real: bool = True
    capture_pixel_override: float = 0.95

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> ProvenancePolicy:
        d = d or {}
        return cls(**{k: type(getattr(cls(), k))(v) for k, v in d.items() if k in cls.__dataclass_fields__})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@functools.lru_cache(maxsize=1)
def marker_table() -> dict[str, Any]:
    """The shipped marker table (``provenance_markers.json``)."""
    text = resources.files("aligngemini_sdk").joinpath("provenance_markers.json").read_text(encoding="utf-8")
    return json.loads(text)


def source_type_code(value: str) -> str:
    """``http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia`` -> ``trainedAlgorithmicMedia``."""
    return value.rstrip("/").rsplit("/", 1)[-1].strip()


def read_provenance(data: bytes, *, trust_anchors: str | None = None, use_c2pa: bool = True) -> Provenance:
    """Provenance evidence in encoded image bytes. Never raises on hostile metadata: problems are reported."""
    t0 = time.perf_counter()
    md = read_metadata(data)
    prov = _from_metadata(md)
    if md.has_c2pa:
        signed = _from_c2pa(data, md, trust_anchors) if use_c2pa else \
            Provenance(kind="c2pa", validation="unavailable", problems=["C2PA verification switched off"])
        signed.problems = md.problems + signed.problems
        if signed.validation in ("trusted", "valid-untrusted") or prov.kind == "none":
            prov = _merge(signed, prov)
        else:  # an invalid / unverifiable manifest is reported, and unsigned markers still count as unsigned
            prov.validation, prov.problems = signed.validation, signed.problems
            prov.binding_intact, prov.signer = signed.binding_intact, signed.signer
            prov.fields.update({f"c2pa.{k}": v for k, v in signed.fields.items()})
    else:
        prov.problems = md.problems
    prov.ms = (time.perf_counter() - t0) * 1e3
    return prov


def _merge(signed: Provenance, unsigned: Provenance) -> Provenance:
    signed.fields = {**unsigned.fields, **signed.fields}
    return signed


def _from_metadata(md: Metadata) -> Provenance:
    """Unsigned evidence: IPTC DigitalSourceType first, then the marker table."""
    table = marker_table()
    prov = Provenance()
    fields: dict[str, str] = {}
    dst = md.xmp_property("DigitalSourceType")
    if dst:
        code = source_type_code(dst)
        fields["xmp.DigitalSourceType"] = dst
        if code in table["digital_source_types"]:
            prov.says, prov.digital_source_type = table["digital_source_types"][code], code
    values = {"exif": md.exif, "png_text": md.png_text,
              "xmp": {k: v for k in ("CreatorTool",) if (v := md.xmp_property(k))}}
    for m in table["markers"]:
        for name, value in values.get(m["where"], {}).items():
            if (m["field"] in ("*", name)) and m["contains"].lower() in value.lower():
                fields[f"{m['where']}.{name}"] = value[:200]
                if prov.says is None or (m["says"] == "ai" and prov.says != "ai"):
                    prov.says, prov.generator = m["says"], m["generator"]
    for k in ("Make", "Model"):
        if k in md.exif:
            fields[f"exif.{k}"] = md.exif[k][:200]
    if prov.says is not None:
        prov.kind, prov.strength = "metadata", "unsigned"
        if prov.says == "capture":
            prov.device = " ".join(md.exif[k] for k in ("Make", "Model") if k in md.exif) or None
    prov.fields = fields
    return prov


def _from_c2pa(data: bytes, md: Metadata, trust_anchors: str | None) -> Provenance:
    prov = Provenance(kind="c2pa", strength=None)
    from aligngemini_sdk.errors import MissingExtraError
    from aligngemini_sdk.extras import require

    try:
        c2pa = require("c2pa")
    except MissingExtraError as exc:
        prov.validation = "unavailable"
        prov.problems.append(f"a C2PA manifest is present but not verified: {exc}")
        return prov
    try:
        ctx = _c2pa_context(trust_anchors)
        reader = c2pa.Reader(MIME.get(md.format, "image/jpeg"), io.BytesIO(data), context=ctx)
        report = json.loads(reader.json())
        state = reader.get_validation_state()
    except Exception as exc:  # c2pa raises its own error types for malformed JUMBF
        prov.validation = "unreadable"
        prov.problems.append(f"C2PA manifest unreadable: {type(exc).__name__}: {str(exc)[:200]}")
        return prov
    return _c2pa_outcome(prov, report, str(state or ""))


@functools.lru_cache(maxsize=8)
def _c2pa_context(trust_anchors: str | None) -> Any:
    """A c2pa Context trusting only ``trust_anchors`` (a PEM file of root certificates); none by default, so every
    signature is reported as untrusted."""
    import c2pa

    if not trust_anchors:
        return None  # c2pa's default: signatures are checked, and reported untrusted (no anchors)
    with open(os.fspath(trust_anchors), encoding="utf-8") as fh:
        pem = fh.read()
    return c2pa.Context(settings=c2pa.Settings.from_dict({"trust": {"trust_anchors": pem}}))


def _c2pa_outcome(prov: Provenance, report: dict[str, Any], state: str) -> Provenance:
    active = report.get("manifests", {}).get(report.get("active_manifest") or "", {})
    codes = [s.get("code", "") for s in report.get("validation_status") or []]
    prov.binding_intact = not any(c in BINDING_CODES for c in codes)
    sig = active.get("signature_info") or {}
    prov.signer = ", ".join(x for x in (sig.get("common_name"), sig.get("issuer")) if x) or None
    gen = (active.get("claim_generator_info") or [{}])[0]
    prov.generator = gen.get("name") or active.get("claim_generator")
    state_l = state.lower()
    prov.validation = "trusted" if state_l == "trusted" else "valid-untrusted" if state_l == "valid" else "invalid"
    if prov.validation == "invalid" or not prov.binding_intact:
        prov.validation = "invalid"
    prov.trusted = prov.validation == "trusted"
    prov.strength = "signed" if prov.validation in ("trusted", "valid-untrusted") else None
    types = [source_type_code(a.get("digitalSourceType", "")) for a in _actions(active)]
    table = marker_table()["digital_source_types"]
    declared = [table[t] for t in types if t in table]
    prov.says = "ai" if "ai" in declared else "capture" if declared and all(d != "edited" for d in declared) \
        else "edited" if declared else None
    prov.digital_source_type = next((t for t in types if table.get(t) == prov.says), None)
    if prov.says == "capture":
        prov.device = prov.generator
    prov.fields = {"validation_state": state, "validation_codes": ",".join(codes)[:500],
                   "actions": ",".join(types)[:500]}
    return prov


def _actions(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for a in manifest.get("assertions") or []:
        if str(a.get("label", "")).startswith("c2pa.actions"):
            out.extend(x for x in (a.get("data") or {}).get("actions") or [] if isinstance(x, dict))
    return out


def apply_policy(policy: ProvenancePolicy, prov: Provenance | None, is_fake: bool, score: float,
                 p_pixel: float | None) -> tuple[bool, float, str | None]:
    """``(is_fake, score, reason)`` after provenance; reason None when provenance did not decide."""
    if prov is None:
        return is_fake, score, None
    signed = prov.strength == "signed"
    if prov.says == "ai" and signed and policy.signed_ai_is_fake:
        return True, max(score, 1.0), "signed C2PA manifest declares generative AI"
    if prov.says == "ai" and prov.strength == "unsigned" and policy.unsigned_ai_is_fake:
        return True, max(score, 1.0), f"unsigned metadata of a generator ({prov.generator or prov.digital_source_type})"
    if (prov.says == "capture" and prov.trusted and prov.binding_intact and policy.trusted_capture_is_real
            and (p_pixel is None or p_pixel <= policy.capture_pixel_override)):
        return False, min(score, 0.0), "trusted C2PA capture signature, binding intact, no generative action"
    return is_fake, score, None
