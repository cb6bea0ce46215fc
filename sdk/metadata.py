"""Metadata read from an image file's bytes, without decoding pixels: EXIF text tags, the XMP packet, PNG text
chunks, and whether a C2PA manifest (JUMBF) is embedded, in JPEG, PNG, WebP and HEIF (HEIC, AVIF) files. The
provenance branch's low level.

Hostile files are the normal case here: every length is bounds-checked against the data, every loop has a
count limit, compressed text is inflated with a size cap, and XMP is searched with regular expressions over a
capped packet (never parsed as XML, so nesting depth costs nothing). A malformed structure ends the read of
that structure and is reported in ``problems``; it never raises.
"""

from __future__ import annotations

import re
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field

from aligngemini_sdk import heic

MAX_SEGMENTS = 4096
MAX_TEXT = 256 * 1024  # per text value (PNG tEXt/zTXt/iTXt, EXIF string) and per XMP packet
MAX_IFD_ENTRIES = 512
#: the most bytes of one HEIF metadata item (EXIF) read, and the most extents it may be split into
MAX_ITEM = 1 << 20
MAX_EXTENTS = 64

#: EXIF/TIFF tags whose text the marker table may match.
EXIF_TEXT_TAGS = {0x010E: "ImageDescription", 0x010F: "Make", 0x0110: "Model", 0x0131: "Software",
                  0x013B: "Artist", 0x8298: "Copyright", 0x9286: "UserComment"}
_EXIF_IFD_POINTER = 0x8769
_XMP_ID = b"http://ns.adobe.com/xap/1.0/\x00"
#: the ISOBMFF ``uuid`` box that holds a C2PA manifest store (C2PA 2.x, "Embedding manifests into BMFF")
C2PA_UUID = bytes.fromhex("d8fec3d61b0e483c92975828877ec481")


@dataclass
class Metadata:
    format: str = "unknown"
    exif: dict[str, str] = field(default_factory=dict)
    xmp: str = ""
    png_text: dict[str, str] = field(default_factory=dict)
    has_c2pa: bool = False
    problems: list[str] = field(default_factory=list)

    def xmp_property(self, name: str) -> str | None:
        """The value of an XMP property written as an attribute or an element (any namespace prefix)."""
        m = re.search(rf"[:\s]{re.escape(name)}\s*=\s*\"([^\"]{{0,2048}})\"", self.xmp) or \
            re.search(rf"<[\w.-]*:?{re.escape(name)}>\s*([^<]{{0,2048}}?)\s*</", self.xmp)
        return m.group(1).strip() if m else None


def read_metadata(data: bytes) -> Metadata:
    """Metadata of JPEG, PNG, WebP or HEIF data (other formats: none found)."""
    md = Metadata()
    try:
        if (heif := heic.kind(data)) is not None:
            md.format = heif
            _heif(data, md)
        elif data[:2] == b"\xff\xd8":
            md.format = "jpeg"
            _jpeg(data, md)
        elif data[:8] == b"\x89PNG\r\n\x1a\n":
            md.format = "png"
            _png(data, md)
        elif data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            md.format = "webp"
            _webp(data, md)
    except (struct.error, IndexError, ValueError) as exc:  # belt and braces: the readers bound-check already
        md.problems.append(f"{md.format} structure unreadable: {type(exc).__name__}")
    return md


def _jpeg(data: bytes, md: Metadata) -> None:
    i, n = 2, len(data)
    for _ in range(MAX_SEGMENTS):
        if i + 4 > n or data[i] != 0xFF:
            return
        marker = data[i + 1]
        if marker == 0xFF:
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        if marker in (0xDA, 0xD9):  # metadata precedes the scan
            return
        size = int.from_bytes(data[i + 2:i + 4], "big")
        body = data[i + 4:i + 2 + size]
        if size < 2 or len(body) != size - 2:
            md.problems.append(f"JPEG segment 0x{marker:02X} at {i} declares {size} bytes past the end")
            return
        if marker == 0xE1 and body[:6] == b"Exif\x00\x00":
            _exif(body[6:], md)
        elif marker == 0xE1 and body.startswith(_XMP_ID):
            md.xmp = body[len(_XMP_ID):][:MAX_TEXT].decode("utf-8", errors="replace")
        elif marker == 0xEB and b"jumb" in body[:64] and b"c2pa" in body[:256]:
            md.has_c2pa = True
        i += 2 + size
    md.problems.append(f"more than {MAX_SEGMENTS} JPEG segments")


def _png(data: bytes, md: Metadata) -> None:
    i, n = 8, len(data)
    for _ in range(MAX_SEGMENTS):
        if i + 8 > n:
            return
        size, kind = int.from_bytes(data[i:i + 4], "big"), data[i + 4:i + 8]
        body = data[i + 8:i + 8 + size]
        if len(body) != size:
            md.problems.append(f"PNG chunk {kind!r} declares {size} bytes past the end")
            return
        if kind in (b"tEXt", b"zTXt", b"iTXt"):
            key, value = _png_text(kind, body, md)
            if key is not None:
                md.png_text[key] = value
                if key == "XML:com.adobe.xmp":
                    md.xmp = value
        elif kind == b"eXIf":
            _exif(body, md)
        elif kind == b"caBX":
            md.has_c2pa = True
        elif kind == b"IEND":
            return
        i += 12 + size
    md.problems.append(f"more than {MAX_SEGMENTS} PNG chunks")


def _png_text(kind: bytes, body: bytes, md: Metadata) -> tuple[str | None, str]:
    key, sep, rest = body.partition(b"\x00")
    if not sep or not 0 < len(key) <= 79:
        md.problems.append(f"PNG {kind.decode()} chunk without a keyword")
        return None, ""
    name = key.decode("latin-1")
    if kind == b"tEXt":
        return name, rest[:MAX_TEXT].decode("latin-1")
    if kind == b"zTXt":
        return name, _inflate(rest[1:], md, name).decode("latin-1")
    compressed, text = rest[:1] == b"\x01", rest[2:]
    for _ in range(2):  # language tag, translated keyword
        text = text.partition(b"\x00")[2]
    return name, (_inflate(text, md, name) if compressed else text[:MAX_TEXT]).decode("utf-8", errors="replace")


def _inflate(blob: bytes, md: Metadata, name: str) -> bytes:
    """zlib-inflate at most :data:`MAX_TEXT` bytes (a compression bomb stops there)."""
    try:
        d = zlib.decompressobj()
        out = d.decompress(blob, MAX_TEXT)
        if d.unconsumed_tail:
            md.problems.append(f"PNG text {name!r} inflates beyond {MAX_TEXT} bytes; truncated")
        return out
    except zlib.error:
        md.problems.append(f"PNG text {name!r}: corrupt compressed data")
        return b""


def _webp(data: bytes, md: Metadata) -> None:
    i, n = 12, min(len(data), 8 + int.from_bytes(data[4:8], "little"))
    for _ in range(MAX_SEGMENTS):
        if i + 8 > n:
            return
        kind, size = data[i:i + 4], int.from_bytes(data[i + 4:i + 8], "little")
        body = data[i + 8:i + 8 + size]
        if len(body) != size:
            md.problems.append(f"WebP chunk {kind!r} declares {size} bytes past the end")
            return
        if kind == b"EXIF":
            _exif(body[6:] if body[:6] == b"Exif\x00\x00" else body, md)
        elif kind == b"XMP ":
            md.xmp = body[:MAX_TEXT].decode("utf-8", errors="replace")
        elif kind == b"C2PA":
            md.has_c2pa = True
        i += 8 + size + (size & 1)
    md.problems.append(f"more than {MAX_SEGMENTS} WebP chunks")


def _exif(tiff: bytes, md: Metadata) -> None:
    """Text tags of IFD0 and the EXIF sub-IFD of a TIFF-structured EXIF block."""
    if tiff[:2] not in (b"II", b"MM") or len(tiff) < 8:
        md.problems.append("EXIF block without a TIFF header")
        return
    end = "<" if tiff[:2] == b"II" else ">"
    ifds, seen = [struct.unpack(end + "I", tiff[4:8])[0]], set[int]()
    while ifds and len(seen) < 4:
        off = ifds.pop()
        if off in seen or off + 2 > len(tiff):
            if off not in seen:
                md.problems.append(f"EXIF IFD offset {off} past the end")
            continue
        seen.add(off)
        count = struct.unpack(end + "H", tiff[off:off + 2])[0]
        for e in range(min(count, MAX_IFD_ENTRIES)):
            p = off + 2 + 12 * e
            if p + 12 > len(tiff):
                md.problems.append("EXIF IFD entries past the end")
                break
            tag, typ, n = struct.unpack(end + "HHI", tiff[p:p + 8])
            if tag == _EXIF_IFD_POINTER:
                ifds.append(struct.unpack(end + "I", tiff[p + 8:p + 12])[0])
            elif tag in EXIF_TEXT_TAGS and typ in (2, 7) and 0 < n <= MAX_TEXT:
                start = p + 8 if n <= 4 else struct.unpack(end + "I", tiff[p + 8:p + 12])[0]
                raw = tiff[start:start + n]
                if len(raw) != n:
                    md.problems.append(f"EXIF {EXIF_TEXT_TAGS[tag]} value past the end")
                    continue
                if tag == 0x9286:  # UserComment: 8-byte character-code prefix
                    raw = raw[8:].replace(b"\x00", b"") if raw[:8] == b"UNICODE\x00" else raw[8:]
                md.exif[EXIF_TEXT_TAGS[tag]] = raw.rstrip(b"\x00").decode("utf-8", errors="replace")


def _heif(data: bytes, md: Metadata) -> None:
    """HEIF (ISOBMFF): a C2PA ``uuid`` box at the top level; the EXIF item and the XMP item (``mime`` item of type
    ``application/rdf+xml``) that the ``meta`` box lists (``iinf``) and locates (``iloc``)."""
    meta = None
    for kind, start, end in boxes(data, 0, len(data), md):
        if kind == b"uuid" and data[start:start + 16] == C2PA_UUID:
            md.has_c2pa = True
        elif kind == b"meta" and meta is None:
            meta = (start + 4, end)  # a FullBox: version and flags first
    if meta is None:
        return
    children = {k: (s, e) for k, s, e in reversed(list(boxes(data, *meta, md)))}  # the first of each kind
    items = _item_kinds(data, *children[b"iinf"], md) if b"iinf" in children else {}
    places = _item_places(data, *children[b"iloc"], set(items), md) if b"iloc" in children and items else {}
    for item, what in items.items():
        payload = _item_bytes(data, places.get(item), children.get(b"idat"), MAX_ITEM if what == "exif" else MAX_TEXT)
        if payload is None:
            md.problems.append(f"HEIF {what} item {item} has no readable location")
        elif what == "exif":  # a 4-byte offset to the TIFF header, then the block
            _exif(payload[4 + int.from_bytes(payload[:4], "big"):], md)
        else:
            md.xmp = payload.decode("utf-8", errors="replace")


def boxes(data: bytes, start: int, end: int, md: Metadata) -> Iterator[tuple[bytes, int, int]]:
    """(type, body start, body end) of each box in ``data[start:end]`` (a ``uuid`` box's body begins with its
    16-byte user type); a box that runs past ``end`` ends the walk with a problem."""
    i, end = start, min(end, len(data))
    for _ in range(MAX_SEGMENTS):
        if i + 8 > end:
            return
        size, kind, head = int.from_bytes(data[i:i + 4], "big"), data[i + 4:i + 8], 8
        if size == 1:
            size, head = int.from_bytes(data[i + 8:i + 16], "big"), 16
        elif size == 0:
            size = end - i
        if size < head or i + size > end:
            md.problems.append(f"HEIF box {kind!r} at {i} declares {size} bytes past its end")
            return
        yield kind, i + head, i + size
        i += size
    md.problems.append(f"more than {MAX_SEGMENTS} HEIF boxes")


def _item_kinds(data: bytes, start: int, end: int, md: Metadata) -> dict[int, str]:
    """item ID -> "exif" or "xmp", from the ``infe`` entries (versions 2 and 3) of an ``iinf`` box: the first item of
    each kind (a file that lists thousands cannot make the reader copy each one)."""
    out: dict[int, str] = {}
    if start >= end:
        return out
    first = start + (6 if data[start] == 0 else 8)  # version, flags, then a 16- or 32-bit entry count
    for kind, s, e in boxes(data, first, end, md):
        version = data[s] if kind == b"infe" and e - s >= 12 else 0
        if version not in (2, 3):
            continue
        at = s + 4 + (2 if version == 2 else 4)
        item = int.from_bytes(data[s + 4:at], "big")
        item_type, name_end = data[at + 2:at + 6], data.find(b"\x00", at + 6, e)
        content = data[name_end + 1:e].partition(b"\x00")[0] if name_end >= 0 else b""
        what = "exif" if item_type == b"Exif" else "xmp" if item_type == b"mime" and content == b"application/rdf+xml" \
            else None
        if what is not None and what not in out.values():
            out[item] = what
        if len(out) == 2:
            break
    return out


def _item_places(data: bytes, start: int, end: int, wanted: set[int],
                 md: Metadata) -> dict[int, tuple[int, int, list[tuple[int, int]]]]:
    """item ID -> (construction method, base offset, [(extent offset, extent length)]) for the ``wanted`` items
    of an ``iloc`` box (versions 0-2); a field past the box's end, a field size other than 0, 4 or 8, or an item in
    more than MAX_EXTENTS extents stops the read with a problem."""
    r, out = _Fields(data, start, end), {}
    try:
        version = r.take(4) >> 24
        sizes, more = r.take(1), r.take(1)
        off_size, len_size, base_size = sizes >> 4, sizes & 15, more >> 4
        index_size = more & 15 if version in (1, 2) else 0
        if not {off_size, len_size, base_size, index_size} <= {0, 4, 8}:
            raise ValueError(f"field sizes {off_size}/{len_size}/{base_size}/{index_size} (each 0, 4 or 8)")
        for _ in range(min(r.take(2 if version < 2 else 4), MAX_SEGMENTS)):
            item = r.take(2 if version < 2 else 4)
            method = r.take(2) & 15 if version in (1, 2) else 0
            r.take(2)  # data reference index
            base, count = r.take(base_size), r.take(2)
            if count > MAX_EXTENTS:  # zero-byte fields could otherwise spin through 65,535 extents per item
                raise ValueError(f"an item in {count} extents (at most {MAX_EXTENTS} are read)")
            extents = []
            for _ in range(count):
                r.take(index_size)  # an extent index: items by reference are not followed
                extents.append((r.take(off_size), r.take(len_size)))
            if item in wanted:
                out[item] = (method, base, extents)
    except ValueError as exc:
        md.problems.append(f"HEIF iloc box unreadable: {exc}")
    return out


def _item_bytes(data: bytes, place: tuple[int, int, list[tuple[int, int]]] | None, idat: tuple[int, int] | None,
                cap: int) -> bytes | None:
    """An item's bytes (at most ``cap``) from its extents: in the file (method 0) or in ``idat`` (method 1)."""
    if place is None or place[0] not in (0, 1):
        return None
    method, base, extents = place
    region = (0, len(data)) if method == 0 else idat
    if region is None:
        return None
    origin, limit = region
    out = bytearray()
    for offset, length in extents:
        a = origin + base + offset
        b = limit if length == 0 else min(limit, a + length)
        if not origin <= a < b <= limit:
            return None
        out += data[a:min(b, a + cap - len(out))]
        if len(out) >= cap:
            break
    return bytes(out)


class _Fields:
    """Big-endian unsigned fields of 0-8 bytes read in turn from ``data[start:end]``; ValueError past ``end``."""

    def __init__(self, data: bytes, start: int, end: int) -> None:
        self.data, self.at, self.end = data, start, end

    def take(self, n: int) -> int:
        if self.at + n > self.end:
            raise ValueError("field past the end of its box")
        value = int.from_bytes(self.data[self.at:self.at + n], "big")
        self.at += n
        return value
