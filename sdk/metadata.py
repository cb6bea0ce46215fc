"""Metadata read from an image file's bytes, without decoding pixels: EXIF text tags, the XMP packet, PNG text
chunks, and whether a C2PA manifest (JUMBF) is embedded. The provenance branch's low level.

Hostile files are the normal case here: every length is bounds-checked against the data, every loop has a
count limit, compressed text is inflated with a size cap, and XMP is searched with regular expressions over a
capped packet (never parsed as XML, so nesting depth costs nothing). A malformed structure ends the read of
that structure and is reported in ``problems``; it never raises.
"""

from __future__ import annotations

import re
import struct
import zlib
from dataclasses import dataclass, field

MAX_SEGMENTS = 4096
MAX_TEXT = 256 * 1024  # per text value (PNG tEXt/zTXt/iTXt, EXIF string) and per XMP packet
MAX_IFD_ENTRIES = 512

#: EXIF/TIFF tags whose text the marker table may match.
EXIF_TEXT_TAGS = {0x010E: "ImageDescription", 0x010F: "Make", 0x0110: "Model", 0x0131: "Software",
                  0x013B: "Artist", 0x8298: "Copyright", 0x9286: "UserComment"}
_EXIF_IFD_POINTER = 0x8769
_XMP_ID = b"http://ns.adobe.com/xap/1.0/\x00"


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
    """Metadata of JPEG, PNG or WebP data (other formats: none found)."""
    md = Metadata()
    try:
        if data[:2] == b"\xff\xd8":
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
