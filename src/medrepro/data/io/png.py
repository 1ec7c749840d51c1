"""Reading and writing grey PNG and GIF image and mask files, with checks on their format.

Radiographs arrive in several PIL modes: ``L`` (8-bit), ``I;16`` (16-bit),
``I`` (32-bit integers holding 16-bit values), ``P`` (a palette, most Shenzhen
files) and ``RGB`` with equal channels (some Shenzhen files). Everything is
reduced to a single grey channel here, and anything that is not a greyscale
radiograph (real colour, an unknown mode, an unreadable file) raises a
:class:`~medrepro.errors.DataError` naming the file.

Intensity normalisation (:func:`normalise_grey`) divides by the largest value
the stored bit depth can hold: 255 for 8-bit files; for 16-bit files 4095 when
no pixel exceeds 4095 (12-bit content stored in 16-bit containers, as X-ray
detectors write it), otherwise 65535. A genuinely 16-bit image whose darkest
pixels never exceed 4095 would therefore come out brighter; no such file is
known in these datasets, and the choice keeps 12-bit images on the same 0..1
scale as 8-bit ones.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from medrepro.data.atomic import atomic_path
from medrepro.errors import DataError

#: Largest per-pixel difference between R, G and B (in 8-bit grey levels) that
#: is still accepted as a grey image saved in RGB (lossy tools leave +-1 or 2).
RGB_GREY_TOLERANCE = 8

TWELVE_BIT_MAX = 4095

_GREY_PALETTE = [value for level in range(256) for value in (level, level, level)]


def open_image(path: Path) -> Image.Image:
    """Open and fully decode an image, turning every PIL failure into a DataError."""
    try:
        with Image.open(path) as img:
            img.load()
            return img.copy()
    except FileNotFoundError as exc:
        raise DataError(path, "file not found") from exc
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        kind = path.suffix.lstrip(".").upper() or "image"
        raise DataError(path, f"cannot read {kind} file: {exc}") from exc


def _grey_from_channels(rgb: np.ndarray, path: Path) -> np.ndarray:
    """Collapse (H, W, 3) to grey after checking the channels agree."""
    r, g, b = (rgb[..., i].astype(np.int32) for i in range(3))
    spread = int(max(np.abs(r - g).max(initial=0), np.abs(r - b).max(initial=0)))
    if spread == 0:
        return rgb[..., 0].copy()
    if spread > RGB_GREY_TOLERANCE * (1 if rgb.dtype == np.uint8 else 257):
        raise DataError(
            path,
            f"colour image: R, G and B differ by up to {spread} grey levels "
            f"(tolerance {RGB_GREY_TOLERANCE}); expected a greyscale radiograph",
        )
    return np.rint((r + g + b) / 3.0).astype(rgb.dtype)


def _drop_constant_alpha(array: np.ndarray, path: Path) -> np.ndarray:
    alpha = array[..., -1]
    if alpha.min() != alpha.max():
        raise DataError(path, "image has a varying alpha channel; expected an opaque greyscale radiograph")
    return array[..., :-1]


def _palette_to_grey(img: Image.Image, path: Path) -> np.ndarray:
    """Look palette indices up in the palette and keep one channel if it is grey."""
    indices = np.asarray(img)
    raw = img.getpalette() or []
    palette = np.zeros((256, 3), dtype=np.uint8)
    entries = np.asarray(raw[: 256 * 3], dtype=np.uint8).reshape(-1, 3)
    palette[: len(entries)] = entries
    used = palette[np.flatnonzero(np.bincount(indices.ravel(), minlength=256))]
    if np.array_equal(used[:, 0], used[:, 1]) and np.array_equal(used[:, 0], used[:, 2]):
        return palette[indices, 0]
    return _grey_from_channels(palette[indices], path)


def grey_array(img: Image.Image, path: str | Path) -> np.ndarray:
    """One grey channel (uint8 or uint16) from a decoded PIL image of any common mode."""
    path = Path(path)
    mode = img.mode
    if mode == "1":
        return np.asarray(img, dtype=np.uint8) * np.uint8(255)
    if mode == "L":
        return np.asarray(img, dtype=np.uint8)
    if mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        return np.asarray(img).astype(np.uint16)
    if mode == "I":
        values = np.asarray(img)
        if values.size and (values.min() < 0 or values.max() > 65535):
            raise DataError(path, f"32-bit image with values {values.min()}..{values.max()} outside 0..65535")
        return values.astype(np.uint16)
    if mode == "P":
        return _palette_to_grey(img, path)
    if mode == "PA":
        return grey_array(img.convert("RGBA"), path)
    if mode == "LA":
        return _drop_constant_alpha(np.asarray(img), path)[..., 0].copy()
    if mode == "RGB":
        return _grey_from_channels(np.asarray(img), path)
    if mode == "RGBA":
        return _grey_from_channels(_drop_constant_alpha(np.asarray(img), path), path)
    raise DataError(path, f"unsupported image mode {mode!r}; expected a greyscale PNG/GIF")


def read_grey(path: str | Path) -> np.ndarray:
    """Read a PNG or GIF as a 2-D uint8 or uint16 array (one grey channel)."""
    path = Path(path)
    return grey_array(open_image(path), path)


def normalise_grey(array: np.ndarray, path: str | Path | None = None) -> np.ndarray:
    """Scale stored grey values to float32 0..1 by the bit depth's maximum (see module docstring)."""
    if array.dtype == np.bool_:
        return array.astype(np.float32)
    if array.dtype == np.uint8:
        return array.astype(np.float32) / np.float32(255)
    if array.dtype == np.uint16:
        top = TWELVE_BIT_MAX if int(array.max(initial=0)) <= TWELVE_BIT_MAX else 65535
        return array.astype(np.float32) / np.float32(top)
    raise DataError(path, f"cannot normalise pixel type {array.dtype}; expected uint8 or uint16")


def read_binary_mask(path: str | Path, expected_shape: tuple[int, int] | None = None) -> np.ndarray:
    """Read a mask PNG/GIF whose values are 0/255 (or 0/1) and return it as bool.

    Raises DataError naming the file when the size differs from
    ``expected_shape`` (height, width) or when other values occur.
    """
    path = Path(path)
    values = read_grey(path)
    if expected_shape is not None and values.shape != tuple(expected_shape):
        raise DataError(
            path,
            f"image/mask size mismatch: mask is {values.shape[1]} x {values.shape[0]} (w x h), "
            f"image is {expected_shape[1]} x {expected_shape[0]} (w x h)",
        )
    if values.dtype == np.uint8:  # a histogram is much faster than sorting for megapixel masks
        found = np.flatnonzero(np.bincount(values.ravel(), minlength=256))
    else:
        found = np.unique(values)
    top = int(found.max(initial=0))
    allowed = {0, top} if top in (1, 255, 65535) else {0}
    unexpected = sorted(set(found.tolist()) - allowed)
    if unexpected:
        shown = ", ".join(str(v) for v in unexpected[:10]) + (" ..." if len(unexpected) > 10 else "")
        raise DataError(
            path,
            f"mask has unexpected values [{shown}] ({len(unexpected)} distinct); "
            "expected a binary mask with values 0 and 255 (or 0 and 1)",
        )
    return values > 0


def _check_grey_range(array: np.ndarray, path: Path) -> np.ndarray:
    if array.ndim != 2:
        raise DataError(path, f"expected a 2-D grey image, got shape {array.shape}")
    if array.dtype not in (np.uint8, np.uint16):
        raise DataError(path, f"expected uint8 or uint16 pixels, got {array.dtype}")
    return array


def write_grey_png(path: str | Path, array: np.ndarray, mode: str = "L", compress_level: int = 3) -> None:
    """Write a grey image atomically as PNG.

    ``mode`` is how the grey values are stored: ``"L"`` (8-bit) or ``"I;16"``
    (16-bit; picked automatically for uint16 input), ``"P"`` (grey palette)
    or ``"RGB"`` (three equal channels), the variants the NLM sets use.
    """
    path = Path(path)
    array = _check_grey_range(np.asarray(array), path)
    if array.dtype == np.uint16:
        img = Image.fromarray(array)
    elif mode == "L":
        img = Image.fromarray(array)
    elif mode == "P":
        # Palette index = grey level, with the identity grey palette.
        img = Image.frombytes("P", (array.shape[1], array.shape[0]), np.ascontiguousarray(array).tobytes())
        img.putpalette(_GREY_PALETTE)
    elif mode == "RGB":
        img = Image.fromarray(np.repeat(array[..., None], 3, axis=2))
    else:
        raise ValueError(f"unsupported PNG storage mode {mode!r}")
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG", compress_level=compress_level)


def _mask_to_uint8(mask: np.ndarray, path: Path) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise DataError(path, f"expected a 2-D mask, got shape {mask.shape}")
    return np.where(mask > 0, np.uint8(255), np.uint8(0))


def write_mask_png(path: str | Path, mask: np.ndarray) -> None:
    """Write a binary mask atomically as an 8-bit PNG with values 0/255."""
    path = Path(path)
    write_grey_png(path, _mask_to_uint8(mask, path), mode="L")


def write_mask_gif(path: str | Path, mask: np.ndarray) -> None:
    """Write a binary mask atomically as a GIF with values 0/255 (the SCR format)."""
    path = Path(path)
    img = Image.fromarray(_mask_to_uint8(mask, path))
    with atomic_path(path) as tmp:
        img.save(tmp, format="GIF")
