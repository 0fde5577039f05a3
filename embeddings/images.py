"""Image bytes from a reference, and bytes to a clean RGB picture.

Real catalogues hold rotated phone photos, CMYK JPEGs from print studios, palette PNGs, 16-bit
greyscale scans and transparent cut-outs. Each becomes an upright 8-bit RGB image; transparency is
composited over white, the background shops use. Whatever cannot be read raises `ImageError` for
that item alone.
"""

from __future__ import annotations

import io
import time
import urllib.error
import urllib.request
import warnings
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from embeddings.errors import ImageError

# Pixel cap against decompression bombs: 64 megapixels is above any product photo.
MAX_PIXELS = 64_000_000
# Byte cap for one image file.
MAX_BYTES = 50 * 1024 * 1024
HTTP_TIMEOUT_S = 10.0
HTTP_ATTEMPTS = 3  # one try plus two retries, for timeouts, dropped connections, 429 and 5xx
HTTP_BACKOFF_S = 0.5  # doubled after each failed attempt
RETRYABLE_HTTP = {408, 429, 500, 502, 503, 504}
JPEG_MAGIC = b"\xff\xd8\xff"


def is_jpeg(data: bytes) -> bool:
    return data[:3] == JPEG_MAGIC


def is_remote(ref: str) -> bool:
    return urlparse(ref).scheme.lower() in ("http", "https") or is_object_url(ref)


def is_object_url(ref: str) -> bool:
    """An object-storage reference (`s3://bucket/key`, any fsspec URL but http(s) and file), read
    through fsspec with the backend's standard credentials (AWS_* environment variables for S3)."""
    scheme = urlparse(ref).scheme.lower()
    return "://" in ref and len(scheme) > 1 and scheme not in ("http", "https", "file")


def resolve_ref(ref: str, base_dir: Path | None) -> str:
    """An image reference as a catalogue gives it, made absolute (paths) or left as a URL."""
    ref = str(ref).strip()
    scheme = urlparse(ref).scheme.lower()
    if scheme in ("http", "https", "file") or is_object_url(ref):
        return ref
    path = Path(ref)
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    return str(path)


def read_image_bytes(
    ref: str,
    *,
    max_bytes: int = MAX_BYTES,
    timeout: float = HTTP_TIMEOUT_S,
    attempts: int = HTTP_ATTEMPTS,
    backoff: float = HTTP_BACKOFF_S,
) -> bytes:
    """The raw bytes behind a resolved reference: a local path, `file://`, `http(s)://` or an
    object-storage URL (`s3://...`).

    HTTP reads have connection and read timeouts, a size cap, and bounded retries with
    exponential backoff for failures that may pass (timeouts, resets, 408/429/5xx); object-storage
    reads have the cap and the same retries.
    """
    parsed = urlparse(ref)
    scheme = parsed.scheme.lower()
    if scheme in ("http", "https") or is_object_url(ref):
        read = _read_http if scheme in ("http", "https") else _read_object
        for attempt in range(attempts):
            try:
                return read(ref, max_bytes=max_bytes, timeout=timeout)
            except ImageError as exc:
                if not exc.retryable or attempt == attempts - 1:
                    raise
                time.sleep(backoff * 2**attempt)
    path = Path(unquote(parsed.path)) if scheme == "file" else Path(ref)
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise ImageError("too_large", f"{path}: {size} bytes is over the {max_bytes} byte cap")
        return path.read_bytes()
    except FileNotFoundError:
        raise ImageError("not_found", f"{path}: no such file") from None
    except IsADirectoryError:
        raise ImageError("not_found", f"{path}: is a directory") from None
    except PermissionError:
        raise ImageError("unreadable", f"{path}: permission denied") from None


def _read_http(url: str, *, max_bytes: int, timeout: float) -> bytes:
    request = urllib.request.Request(url, headers={"User-Agent": "recsys-embed/0.1"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            data = response.read(max_bytes + 1)
    except urllib.error.HTTPError as exc:
        retryable = exc.code in RETRYABLE_HTTP
        raise ImageError("http_error", f"{url}: HTTP {exc.code}", retryable=retryable) from None
    except (TimeoutError, urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        kind = "timeout" if "timed out" in str(reason) else "connection_error"
        raise ImageError(kind, f"{url}: {reason}", retryable=True) from None
    if len(data) > max_bytes:
        raise ImageError("too_large", f"{url}: over the {max_bytes} byte cap")
    return data


def signed_url(url: str, expires_s: int = 3600) -> str:
    """A time-limited HTTPS link to an object-storage image (an S3 presigned URL), for a browser."""
    from fsspec.core import url_to_fs

    fs, path = url_to_fs(url)
    return fs.sign(path, expiration=expires_s)


def _read_object(url: str, *, max_bytes: int, timeout: float) -> bytes:
    import fsspec  # only catalogues with object-storage references need it

    try:
        with fsspec.open(url, "rb") as handle:
            data = handle.read(max_bytes + 1)
    except FileNotFoundError:
        raise ImageError("not_found", f"{url}: no such object") from None
    except PermissionError as exc:
        raise ImageError("unreadable", f"{url}: permission denied ({exc})") from None
    except ImportError as exc:  # the scheme's fsspec backend (s3fs for s3://) is not installed
        raise ImageError("unreadable", f"{url}: {exc}") from None
    except (OSError, ValueError) as exc:
        raise ImageError("connection_error", f"{url}: {exc}", retryable=True) from None
    if len(data) > max_bytes:
        raise ImageError("too_large", f"{url}: over the {max_bytes} byte cap")
    return data


def check_pixels(data: bytes, max_pixels: int = MAX_PIXELS) -> None:
    """Refuse an image whose header declares more than `max_pixels`, without decoding it."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            width, height = Image.open(io.BytesIO(data)).size
    except Image.DecompressionBombError as exc:
        raise ImageError("too_many_pixels", str(exc)) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageError("decode_error", f"not a readable image: {exc}") from None
    if width * height > max_pixels:
        raise ImageError("too_many_pixels", f"{width}x{height} is over the {max_pixels} pixel cap")


def decode_image(
    data: bytes,
    *,
    max_pixels: int = MAX_PIXELS,
    draft_size: tuple[int, int] | None = None,
) -> Image.Image:
    """Decode bytes into an upright 8-bit RGB image.

    `draft_size` lets JPEG decoding run at a reduced DCT scale when the file is much larger than
    what the model needs (the result is still at least that size).
    """
    try:
        with warnings.catch_warnings():
            # PIL warns before it raises for bombs; the cap below is ours, so silence its own.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > max_pixels:
                raise ImageError(
                    "too_many_pixels", f"{width}x{height} is over the {max_pixels} pixel cap"
                )
            if draft_size is not None and image.format == "JPEG":
                image.draft("RGB", draft_size)
            image.load()
    except ImageError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageError("too_many_pixels", str(exc)) from None
    except UnidentifiedImageError as exc:
        raise ImageError("decode_error", f"not a readable image: {exc}") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError("decode_error", f"truncated or corrupt image: {exc}") from None
    try:
        image = ImageOps.exif_transpose(image)
    except Exception:  # noqa: BLE001 - a broken EXIF block should not cost the picture
        pass
    return to_rgb(image)


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode to 8-bit RGB; alpha is composited over white."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        array = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or array.max() > 255 else 255.0
        image = Image.fromarray(np.clip(array / top * 255.0, 0, 255).astype(np.uint8), "L")
    elif image.mode == "F":
        array = np.asarray(image, dtype=np.float64)
        span = max(float(array.max() - array.min()), 1e-12)
        image = Image.fromarray(((array - array.min()) / span * 255.0).astype(np.uint8), "L")
    if image.mode == "P":
        has_alpha = "transparency" in image.info
        image = image.convert("RGBA" if has_alpha else "RGB")
    if image.mode in ("LA", "La", "PA"):
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "RGBa"):
        background = Image.new("RGB", image.size, (255, 255, 255))
        background.paste(image, mask=image.getchannel("A"))
        return background
    if image.mode != "RGB":
        image = image.convert("RGB")  # L, 1, CMYK, YCbCr, LAB, HSV
    return image
