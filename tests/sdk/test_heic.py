"""HEIC/HEIF photos decode as displayed (rotation applied), through every entry point, with the same guards as every
other format: a size from the header before decoding, typed errors for damaged files, a named extra when missing.
Files are encoded in the test with libheif's own x265 encoder (pillow-heif), from a real shared photo."""

import io
import sys

import cv2
import numpy as np
import pytest
from PIL import Image as PILImage

from aligngemini_sdk import Detector, heic
from aligngemini_sdk.dataset import list_images
from aligngemini_sdk.decode_plan import DecodePlan, decode_for_branches
from aligngemini_sdk.errors import ImageDecodeError, ImageTooLargeError, MissingExtraError
from aligngemini_sdk.image import decode_bytes, load_image, sniff_dimensions, sniff_format
from aligngemini_sdk.jpeg import Rect
from aligngemini_sdk.manifest import InputSpec
from tests.conftest import KODAK

pillow_heif = pytest.importorskip("pillow_heif", reason="needs the [heic] extra (pillow-heif)")
pytestmark = pytest.mark.shared_data  # reads ../shared/data (skipped, with the reason, without it)

PHOTO = KODAK / "testsets__Kodak24__kodim01.png"


def photo() -> np.ndarray:
    return cv2.imread(str(PHOTO), cv2.IMREAD_COLOR_RGB)


def encode_heic(rgb: np.ndarray, orientation: int | None = None, quality: int = 95, tile: int = 0) -> bytes:
    """A HEIC file; ``tile`` > 0 writes a grid of tile x tile HEVC images, as phones do (iPhones: 512)."""
    pillow_heif.register_heif_opener()
    extra: dict = {"tile_size": tile} if tile else {}
    if orientation is not None:
        exif = PILImage.Exif()
        exif[0x0112] = orientation
        extra["exif"] = exif.tobytes()
    buf = io.BytesIO()
    PILImage.fromarray(rgb).save(buf, format="HEIF", quality=quality, **extra)
    return buf.getvalue()


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * np.log10(255.0 ** 2 / max(mse, 1e-12))


def test_a_heic_photo_decodes_to_its_pixels_from_a_path_and_from_bytes(tmp_path):
    rgb = photo()
    data = encode_heic(rgb)
    assert sniff_format(data) == "heic" and sniff_dimensions(data) == (rgb.shape[1], rgb.shape[0])
    (tmp_path / "IMG_0001.HEIC").write_bytes(data)
    from_path, from_bytes = load_image(tmp_path / "IMG_0001.HEIC").rgb, decode_bytes(data)
    np.testing.assert_array_equal(from_path, from_bytes)
    assert from_path.shape == rgb.shape and from_path.dtype == np.uint8
    assert psnr(from_path, rgb) > 35  # lossy HEVC at quality 95: the photo, not another image


def test_rotation_is_applied_as_displayed():
    """pillow-heif turns EXIF orientation 6 into HEIF's irot transform; the decoded image is the displayed one,
    rotated 90 degrees clockwise, and is not rotated a second time by the EXIF tag."""
    rgb = photo()
    got = decode_bytes(encode_heic(rgb, orientation=6))
    assert got.shape == (rgb.shape[1], rgb.shape[0], 3)
    assert psnr(got, np.ascontiguousarray(np.rot90(rgb, k=-1))) > 35


def test_grey_and_alpha_images_become_rgb():
    rgb = photo()
    grey = decode_bytes(encode_heic(np.ascontiguousarray(rgb[..., 1])))
    assert grey.shape == rgb.shape and np.array_equal(grey[..., 0], grey[..., 2])
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 200, np.uint8)])
    assert decode_bytes(encode_heic(rgba)).shape == rgb.shape


def test_the_detector_and_directory_runs_take_heic(tmp_path):
    data = encode_heic(photo())
    (tmp_path / "a.heic").write_bytes(data)
    (tmp_path / "b.HIF").write_bytes(data)
    assert [p.name for p in list_images(tmp_path)] == ["a.heic", "b.HIF"]
    with Detector() as det:  # the default's whole-image branch reads everything: a full decode
        r = det.detect(tmp_path / "a.heic")
    assert r.pixel.probability is not None and r.extra["decode"] == "full"


def test_a_header_declaring_a_bomb_is_refused_before_decoding():
    data = bytearray(encode_heic(photo()))
    at = data.find(b"ispe")
    data[at + 8:at + 16] = (60000).to_bytes(4, "big") * 2
    with pytest.raises(ImageTooLargeError, match="60000x60000"):
        decode_bytes(bytes(data))


def test_libheifs_own_size_is_checked_before_pixels_are_decoded():
    """A header that understates nothing (the real size) but exceeds the caller's limit: refused by the ispe check;
    and the second check (libheif's parse) is what the decoder itself enforces."""
    data = encode_heic(photo())
    with pytest.raises(ImageTooLargeError):
        decode_bytes(data, max_pixels=1000)
    with pytest.raises(ImageTooLargeError):
        heic.decode(data, "<x>", max_pixels=1000)


@pytest.mark.parametrize("damage", ["truncated", "garbage", "no_meta", "no_decoder_config"])
def test_damaged_heic_files_raise_a_typed_error(damage):
    """"no_decoder_config": the primary image's first property (its hvcC) renamed, so libheif lists no image at all
    (found by benchmarks/fuzz_images.py: pillow-heif then raised an IndexError from ``.size``)."""
    data = encode_heic(photo())
    if damage == "no_decoder_config":
        at = data.index(b"ipco") + 8  # the type of ipco's first child box
        bad = data[:at] + b"xxxx" + data[at + 4:]
    elif damage == "truncated":
        bad = data[: len(data) // 2]
    elif damage == "garbage":
        at = data.find(b"mdat") + 4
        bad = data[:at] + bytes(np.random.default_rng(0).integers(0, 256, len(data) - at, dtype=np.uint8))
    else:
        bad = data[:32]
    with pytest.raises((ImageDecodeError, ImageTooLargeError)) as err:
        decode_bytes(bad, name="bad.heic")
    assert "bad.heic" in str(err.value)


@pytest.mark.parametrize("cut", [0.5, 0.99])
def test_a_grid_heic_missing_tiles_is_refused_not_filled_in(cut):
    """libheif's full decode (as pillow-heif calls it) fills the tiles a truncated grid lacks and returns an image;
    the SDK refuses the file as it refuses a truncated JPEG, before any tile is decoded, on every decode path (found
    by benchmarks/fuzz_images.py: half a 4 x 4 grid decoded, 56 % of its pixels filled in)."""
    data = encode_heic(camera_sized(1024, 1024), quality=90, tile=256)
    short = data[:int(len(data) * cut)]
    assert heic.unreadable_tile(data) is None
    assert heic.unreadable_tile(short) is not None
    with pytest.raises(ImageDecodeError, match="truncated or damaged HEIC"):
        decode_bytes(short, name="short.heic")
    with pytest.raises(ImageDecodeError, match=r"short\.heic"):
        decode_for_branches(short, DecodePlan({"pixel": InputSpec(height=224, width=224, crop="center")}),
                            name="short.heic", max_pixels=10 ** 9)
    with pytest.raises(ImageDecodeError):
        Detector().detect(short)


def test_brands_tell_heic_from_avif():
    def ftyp(major: bytes, *compatible: bytes) -> bytes:
        body = major + b"\0\0\0\0" + b"".join(compatible)
        return (8 + len(body)).to_bytes(4, "big") + b"ftyp" + body
    assert heic.kind(ftyp(b"heic", b"mif1", b"heic")) == "heic"
    assert heic.kind(ftyp(b"mif1", b"heic")) == "heic"  # generic major brand, HEVC compatible brand
    assert heic.kind(ftyp(b"avif", b"mif1")) == "avif"
    assert heic.kind(ftyp(b"mif1", b"avif", b"heic")) == "avif"
    assert heic.kind(ftyp(b"mif1")) == "avif"  # codec unsaid: OpenCV's AVIF path, as before
    assert heic.kind(ftyp(b"isom", b"mp41")) is None  # an MP4 video is not an image


def test_without_the_extra_a_heic_file_names_the_extra(monkeypatch):
    data = encode_heic(photo())
    monkeypatch.setitem(sys.modules, "pillow_heif", None)  # what an install without [heic] sees: ImportError
    with pytest.raises(MissingExtraError, match=r"aligngemini-sdk\[heic\]"):
        decode_bytes(data)


def camera_sized(width: int, height: int) -> np.ndarray:
    return cv2.resize(photo(), (width, height), interpolation=cv2.INTER_CUBIC)


@pytest.mark.parametrize("size", [(1500, 1100), (1024, 1024), (1537, 1029)])
def test_grid_tiles_under_a_crop_give_the_full_decodes_pixels_byte_for_byte(size):
    """Partial edge tiles and odd sizes included: centre crops, corners, a strip across tile seams, the whole image."""
    data = encode_heic(camera_sized(*size), quality=90, tile=512)
    full = decode_bytes(data)
    h, w = full.shape[:2]
    tiled = heic.grid(data, 10 ** 9)
    assert tiled is not None and tiled.size == (w, h)
    for rect in (Rect((h - 224) // 2, (w - 224) // 2, 224, 224), Rect((h - 336) // 2, (w - 336) // 2, 336, 336),
                 Rect(0, 0, 224, 224), Rect(h - 224, w - 224, 224, 224), Rect(500, 480, 70, 90), Rect(0, 0, h, w)):
        got = tiled.decode(rect)
        assert got is not None, rect
        np.testing.assert_array_equal(got, full[rect.top:rect.bottom, rect.left:rect.right], err_msg=str(rect))
    assert tiled.decode(Rect(h - 100, 0, 224, 224)) is None  # outside the image
    assert heic.grid(data, max_pixels=w * h - 1) is None  # over the caller's limit: the full path refuses it


def test_the_detector_reads_only_the_tiles_under_its_crop_with_the_same_verdict():
    data = encode_heic(camera_sized(1500, 1100), quality=90, tile=512)
    spec = InputSpec(height=224, width=224)
    inputs = decode_for_branches(data, DecodePlan({"pixel": spec}))
    assert inputs.decode == "tiles" and inputs.size == (1500, 1100)
    with Detector(load_semantic=False) as det:
        tiled, whole = det.detect(data), det.detect(decode_bytes(data), color_order="RGB")
    assert tiled.extra["decode"] == "tiles" and tiled.pixel.probability == whole.pixel.probability


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_rotated_or_mirrored_grids_and_single_images_decode_in_full(orientation):
    """Tiles of a transformed grid do not land where the full decode puts them (measured): those decode whole."""
    spec = InputSpec(height=224, width=224)
    rotated = encode_heic(camera_sized(1500, 1100), orientation=orientation, quality=90, tile=512)
    assert heic.grid(rotated, 10 ** 9) is None
    assert decode_for_branches(rotated, DecodePlan({"pixel": spec})).decode == "full"
    assert decode_for_branches(encode_heic(camera_sized(1500, 1100)), DecodePlan({"pixel": spec})).decode == "full"


def _tiles_in_child(data: bytes) -> bool:
    tiled = heic.grid(data, 10 ** 9)
    got = None if tiled is None else tiled.decode(Rect(400, 600, 224, 224))
    return got is not None and got.shape == (224, 224, 3)


def test_a_forked_worker_decodes_tiles_after_its_parent_did():
    """The tile workers are per process: a child forked after the parent decoded tiles (eval workers) gets its own
    threads instead of waiting forever on threads that fork did not copy."""
    import multiprocessing

    data = encode_heic(camera_sized(1500, 1100), quality=90, tile=512)
    assert _tiles_in_child(data)  # the parent decodes tiles first: its workers exist before the fork
    with multiprocessing.get_context("fork").Pool(1) as pool:
        assert pool.apply_async(_tiles_in_child, (data,)).get(timeout=120)
