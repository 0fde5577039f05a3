"""Decoding survives real catalogues: orientation, colour modes, depth, transparency, bad files."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from embeddings.errors import ImageError
from embeddings.images import decode_image, read_image_bytes, resolve_ref


def encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def test_exif_orientation_is_applied() -> None:
    # A 40x20 picture, left half red; EXIF orientation 6 means "rotate 90 degrees clockwise to view".
    array = np.zeros((20, 40, 3), np.uint8)
    array[:, :20] = (255, 0, 0)
    exif = Image.Exif()
    exif[0x0112] = 6
    data = encode(Image.fromarray(array), "JPEG", exif=exif, quality=95)
    image = decode_image(data)
    assert image.size == (20, 40)  # upright: portrait now
    top = np.asarray(image)[:5].mean(axis=(0, 1))
    assert top[0] > 200 and top[2] < 60  # the red half is on top after a clockwise turn


def test_cmyk_jpeg_becomes_rgb() -> None:
    cmyk = Image.new("CMYK", (16, 16), (0, 255, 255, 0))  # pure red in CMYK
    image = decode_image(encode(cmyk, "JPEG", quality=95))
    assert image.mode == "RGB"
    r, g, b = np.asarray(image).reshape(-1, 3).mean(axis=0)
    assert r > 200 and g < 60 and b < 60


def test_palette_with_transparency_goes_over_white() -> None:
    palette = Image.new("P", (8, 8), 0)
    palette.putpalette([0, 0, 0, 0, 255, 0] + [0] * 762)
    palette.paste(1, (0, 0, 4, 8))
    data = encode(palette, "PNG", transparency=0)
    array = np.asarray(decode_image(data))
    assert array.shape == (8, 8, 3)
    assert tuple(array[0, 0]) == (0, 255, 0)
    assert tuple(array[0, 7]) == (255, 255, 255)  # the transparent index is white, not black


def test_rgba_alpha_composited_over_white() -> None:
    rgba = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    assert tuple(np.asarray(decode_image(encode(rgba, "PNG")))[0, 0]) == (255, 255, 255)
    half = Image.new("RGBA", (4, 4), (0, 0, 0, 128))
    value = np.asarray(decode_image(encode(half, "PNG")))[0, 0]
    assert 120 <= value[0] <= 135


def test_grayscale_and_16_bit() -> None:
    gray = decode_image(encode(Image.new("L", (5, 5), 100), "PNG"))
    assert gray.mode == "RGB" and tuple(np.asarray(gray)[0, 0]) == (100, 100, 100)
    deep = Image.fromarray(np.full((6, 6), 65535, np.uint16))
    assert deep.mode.startswith("I;16")
    image = decode_image(encode(deep, "PNG"))
    assert image.mode == "RGB" and tuple(np.asarray(image)[0, 0]) == (255, 255, 255)


def test_truncated_and_garbage_files_fail_with_a_type() -> None:
    good = encode(Image.new("RGB", (64, 64), (10, 20, 30)), "JPEG")
    for data, kind in [(b"not an image at all", "decode_error"), (good[: len(good) // 3], "decode_error"),
                       (b"", "decode_error")]:
        with pytest.raises(ImageError) as info:
            decode_image(data)
        assert info.value.error_type == kind


def test_pixel_cap_stops_decompression_bombs() -> None:
    data = encode(Image.new("L", (4000, 4000)), "PNG")  # tiny file, 16 megapixels
    with pytest.raises(ImageError) as info:
        decode_image(data, max_pixels=1_000_000)
    assert info.value.error_type == "too_many_pixels"


def test_read_bytes_from_paths_and_file_urls(tmp_path) -> None:
    path = tmp_path / "a b.png"
    path.write_bytes(b"xyz")
    assert read_image_bytes(str(path)) == b"xyz"
    assert read_image_bytes(path.as_uri()) == b"xyz"
    assert resolve_ref("a b.png", tmp_path) == str(path)
    with pytest.raises(ImageError) as info:
        read_image_bytes(str(tmp_path / "missing.jpg"))
    assert info.value.error_type == "not_found"
    with pytest.raises(ImageError) as info:
        read_image_bytes(str(path), max_bytes=2)
    assert info.value.error_type == "too_large"


def test_jpeg_draft_decodes_at_reduced_scale_but_not_below_target() -> None:
    data = encode(Image.new("RGB", (2000, 1600), (50, 100, 150)), "JPEG")
    image = decode_image(data, draft_size=(256, 256))
    assert 256 <= min(image.size) < 1600
