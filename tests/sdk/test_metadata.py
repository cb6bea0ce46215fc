"""sdk/metadata.py: the containers' metadata read from the bytes, never raising, never reading past a structure or
beyond its caps -- JPEG segments, PNG chunks, WebP chunks and HEIF boxes (EXIF and XMP items, the C2PA uuid box).
The verdicts drawn from it are tests/sdk/test_provenance.py's."""

from __future__ import annotations

import io
import random
import struct

import numpy as np
import pytest
from PIL import Image, features

from aligngemini_sdk.metadata import C2PA_UUID, MAX_ITEM, MAX_TEXT, boxes, read_metadata

XMP = '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF><rdf:Description tool:CreatorTool="Test Tool"/></rdf:RDF></x:xmpmeta>'


def _exif(**tags: str) -> bytes:
    names = {"Make": 0x010F, "Model": 0x0110, "Software": 0x0131}
    e = Image.Exif()
    for name, value in tags.items():
        e[names[name]] = value
    return e.tobytes()


def _photo() -> Image.Image:
    rgb = np.random.default_rng(0).integers(0, 256, (96, 128, 3), dtype=np.uint8)
    return Image.fromarray(rgb)


def _saved(fmt: str, exif: bytes, xmp: str) -> bytes:
    """The photo in ``fmt`` with an EXIF block and an XMP packet, as Pillow (pillow-heif for HEIF) writes them."""
    kw: dict[str, object] = {"exif": exif, "xmp": xmp.encode()}
    if fmt == "HEIF":
        pytest.importorskip("pillow_heif", reason="needs the [heic] extra (pillow-heif)").register_heif_opener()
    if fmt == "AVIF" and not features.check("avif"):
        pytest.skip("this Pillow has no AVIF encoder")
    if fmt == "PNG":  # Pillow writes a PNG's XMP as the iTXt chunk XMP's spec names
        from PIL import PngImagePlugin

        info = PngImagePlugin.PngInfo()
        info.add_itxt("XML:com.adobe.xmp", xmp)
        kw = {"exif": exif, "pnginfo": info}
    out = io.BytesIO()
    _photo().save(out, fmt, **kw)
    return out.getvalue()


@pytest.mark.parametrize("fmt,name", [("JPEG", "jpeg"), ("PNG", "png"), ("WEBP", "webp"), ("HEIF", "heic"),
                                      ("AVIF", "avif")])
def test_exif_and_xmp_are_read_from_every_container(fmt, name):
    md = read_metadata(_saved(fmt, _exif(Make="Maker", Model="Phone 1", Software="Firmware 2"), XMP))
    assert md.format == name and not md.problems and not md.has_c2pa
    assert md.exif == {"Make": "Maker", "Model": "Phone 1", "Software": "Firmware 2"}
    assert md.xmp_property("CreatorTool") == "Test Tool"


def test_other_bytes_have_no_metadata():
    for data in (b"", b"GIF89a" + bytes(20), b"\x00\x00\x00\x08ftypzzzz", bytes(100)):
        md = read_metadata(data)
        assert (md.format, md.exif, md.xmp, md.has_c2pa) == ("unknown", {}, "", False), data[:12]


# -- HEIF boxes built by hand: the layouts a phone may write that pillow-heif does not ------------------------------

def box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", 8 + len(payload)) + kind + payload


def full(kind: bytes, version: int, payload: bytes) -> bytes:
    return box(kind, bytes([version, 0, 0, 0]) + payload)


def infe(item: int, item_type: bytes, content_type: bytes = b"", version: int = 2) -> bytes:
    ident = struct.pack(">H" if version == 2 else ">I", item)
    return full(b"infe", version, ident + b"\x00\x00" + item_type + b"name\x00" + content_type
                + (b"\x00" if content_type else b""))


def iloc(entries: list[tuple[int, int, list[tuple[int, int]]]], version: int) -> bytes:
    """``entries``: (item, construction method, [(offset, length)]), offsets and lengths 4 bytes, no base offset."""
    body = bytes([0x44, 0x00]) + struct.pack(">H" if version < 2 else ">I", len(entries))
    for item, method, extents in entries:
        body += struct.pack(">H" if version < 2 else ">I", item)
        body += struct.pack(">H", method) if version in (1, 2) else b""
        body += struct.pack(">HH", 0, len(extents)) + b"".join(struct.pack(">II", o, n) for o, n in extents)
    return full(b"iloc", version, body)


def heif(meta_children: bytes, tail: bytes = b"") -> bytes:
    return box(b"ftyp", b"heic" + bytes(4) + b"mif1heic") + full(b"meta", 0, meta_children) + tail


EXIF_ITEM = struct.pack(">I", 6) + _exif(Make="Hand Built", Software="idat")  # tobytes() starts "Exif\0\0"


def test_items_in_idat_with_32_bit_ids_and_several_extents_are_read():
    """iloc version 2 (32-bit item IDs), construction method 1 (offsets into idat), the EXIF item split in two
    extents; an XMP item (mime, application/rdf+xml) located in the file (method 0) after the meta box."""
    x = XMP.encode()
    head = 5 + len(EXIF_ITEM)  # idat: 5 bytes of something else, then the EXIF item
    idat = box(b"idat", b"other" + EXIF_ITEM)
    iinf = full(b"iinf", 1, struct.pack(">I", 2) + infe(70000, b"Exif", version=3)
                + infe(70001, b"mime", b"application/rdf+xml", version=3))

    def build(xmp_at: int) -> bytes:
        loc = iloc([(70000, 1, [(5, 20), (25, head - 25)]), (70001, 0, [(xmp_at, len(x))])], version=2)
        return heif(iinf + loc + idat, box(b"mdat", x))

    first = build(0)
    data = build(len(first) - len(x))
    md = read_metadata(data)
    assert md.format == "heic" and not md.problems, md.problems
    assert md.exif == {"Make": "Hand Built", "Software": "idat"} and md.xmp == XMP


def test_a_c2pa_uuid_box_is_found_and_other_uuid_boxes_are_not():
    assert read_metadata(heif(b"", box(b"uuid", C2PA_UUID + b"jumbf..."))).has_c2pa
    assert not read_metadata(heif(b"", box(b"uuid", bytes(16) + b"other"))).has_c2pa


@pytest.mark.parametrize("case,problem", [
    ("box past the end", "past its end"),
    ("extent past the file", "no readable location"),
    ("idat missing", "no readable location"),
    ("iloc cut short", "field past the end of its box"),
    ("odd field sizes", "each 0, 4 or 8"),
    ("zero-byte extents, 65,535 of them", "at most 64 are read"),
])
def test_broken_heif_structures_are_problems_not_errors(case, problem):
    iinf = full(b"iinf", 0, struct.pack(">H", 1) + infe(1, b"Exif"))
    if case == "box past the end":  # the meta box (after the 24-byte ftyp) claims 10,000 bytes
        data = heif(iinf)
        data = data[:24] + struct.pack(">I", 10_000) + data[28:]
    elif case == "extent past the file":
        data = heif(iinf + iloc([(1, 0, [(1 << 30, 100)])], version=0))
    elif case == "idat missing":
        data = heif(iinf + iloc([(1, 1, [(0, 10)])], version=1))
    elif case == "iloc cut short":  # an iloc box whose own size is right but whose last extent is missing its length
        loc = iloc([(1, 0, [(0, 10)])], version=0)
        data = heif(iinf + box(b"iloc", loc[8:-4]))
    elif case == "odd field sizes":
        loc = bytearray(iloc([(1, 0, [(0, 10)])], version=0))
        loc[12] = 0x35  # offset size 3, length size 5
        data = heif(iinf + bytes(loc))
    else:  # every field size 0: each extent takes no bytes, so only the count bounds the walk (4,096 items x 65,535)
        entries = b"".join(struct.pack(">HHH", 1, 0, 0xFFFF) for _ in range(4096))
        data = heif(iinf + full(b"iloc", 0, b"\x00\x00" + struct.pack(">H", 4096) + entries))
    md = read_metadata(data)
    assert any(problem in p for p in md.problems), md.problems
    assert md.exif == {} and md.xmp == ""


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "HEIF", "AVIF"])
def test_two_thousand_mutations_of_the_metadata_never_raise_or_pass_the_caps(fmt):
    """Bytes changed where the structures live (the first 2 KB: segments, chunks, boxes and the items they point
    to), 1-6 at a time, to boundary and random values."""
    data = _saved(fmt, _exif(Make="Maker", Software="x" * 300), XMP)
    rng = random.Random(1)
    for _ in range(2000):
        b = bytearray(data)
        for _ in range(rng.randint(1, 6)):
            b[rng.randrange(min(2048, len(b)))] = rng.choice((0x00, 0x01, 0x7F, 0x80, 0xFF, rng.randrange(256)))
        md = read_metadata(bytes(b))
        assert len(md.xmp) <= MAX_TEXT and sum(map(len, md.exif.values())) <= MAX_ITEM


def test_the_box_walk_stops_at_its_parent_and_counts():
    data = heif(box(b"free", bytes(4)) * 3)
    top = [k for k, _, _ in boxes(data, 0, len(data), read_metadata(b""))]
    assert top == [b"ftyp", b"meta"]
    meta = next((s, e) for k, s, e in boxes(data, 0, len(data), read_metadata(b"")) if k == b"meta")
    assert [k for k, _, _ in boxes(data, meta[0] + 4, meta[1], read_metadata(b""))] == [b"free"] * 3


def test_only_the_first_exif_and_xmp_items_are_read():
    """A file listing 4,000 EXIF items, each located over the whole file, costs one read, not 4,000."""
    first = struct.pack(">I", 6) + _exif(Make="First")
    second = struct.pack(">I", 6) + _exif(Make="Second")
    iinf = full(b"iinf", 0, struct.pack(">H", 4000) + b"".join(infe(i, b"Exif") for i in range(1, 4001)))
    idat = box(b"idat", first + second)
    entries = [(1, 1, [(0, len(first))])] + [(i, 1, [(len(first), len(second))]) for i in range(2, 4001)]
    md = read_metadata(heif(iinf + iloc(entries, version=1) + idat))
    assert md.exif == {"Make": "First"} and not md.problems
