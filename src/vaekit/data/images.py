"""Image files read on purpose: which files a folder holds, each Pillow mode to pixels, and
the folder as one array of levels.

* ``list_images``: PNG/JPEG files directly in a folder (no labels) or in class sub-folders;
* ``open_image``: one file decoded and turned upright (EXIF orientation), a decompression
  bomb (more pixels than Pillow's ``MAX_IMAGE_PIXELS``) refused;
* ``image_values``: every mode Pillow opens read deliberately: 8-bit grey and colour as they
  are; 16-bit grey as levels 0..65535; colour models Pillow converts exactly or by its device
  formula (palette, YCbCr, HSV, CMYK without a profile) to RGB; an alpha channel only when
  every pixel is opaque (a transparent pixel's colour is undefined, so it is refused rather
  than guessed). The rest (LAB, floating point, other bit depths) is refused by name;
* ``read_images``: a folder as ``[N, C, H, W]`` levels, resized as asked.

Bad input is a one-line :class:`DataError` naming the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np

from vaekit.data.errors import DataError
from vaekit.support.spelling import spell

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}
GREY_MODES = ("1", "L")
SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")
ALPHA_MODES = ("LA", "La", "PA", "RGBA", "RGBa")
TO_RGB_MODES = ("P", "RGBX", "CMYK", "YCbCr", "HSV")


def list_images(folder: Path) -> tuple[list[Path], list[int] | None, list[str]]:
    """Image files and labels: files directly in ``folder`` (no labels) or in class
    sub-folders (label = index of the sub-folder name in sorted order)."""
    is_image = lambda p: p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES  # noqa: E731
    top = sorted(p for p in folder.iterdir() if is_image(p))
    classes = sorted(
        d.name for d in folder.iterdir() if d.is_dir() and any(map(is_image, d.iterdir()))
    )
    if top and classes:
        raise DataError(
            f"{folder}: holds images both at the top level and in class sub-folders "
            f"({', '.join(classes[:3])}); use one layout"
        )
    if top:
        return top, None, []
    files, labels = [], []
    for label, name in enumerate(classes):
        members = sorted(p for p in (folder / name).iterdir() if is_image(p))
        files += members
        labels += [label] * len(members)
    if not files:
        raise DataError(f"{folder}: no PNG or JPEG images found (empty image folder)")
    return files, labels, classes


def fit_image(image, size: list[int] | None):
    """Scale so the image covers ``size`` (H, W) keeping its aspect, then centre-crop."""
    from PIL import Image

    if size is None:
        return image
    h, w = size
    scale = max(h / image.height, w / image.width)
    resized = image.resize(
        (max(w, round(image.width * scale)), max(h, round(image.height * scale))),
        Image.Resampling.BILINEAR,
    )
    left, top = (resized.width - w) // 2, (resized.height - h) // 2
    return resized.crop((left, top, left + w, top + h))


def image_values(file: Path, image) -> np.ndarray:
    """An opened image's pixels: uint8 ``[H, W]`` (grey) or ``[H, W, 3]`` (RGB), or uint16
    ``[H, W]`` for 16-bit grey (levels 0..65535). Refused: a DataError naming the file."""
    mode = shown = image.mode
    if mode == "PA" or (mode == "P" and "transparency" in image.info):
        image, mode = image.convert("RGBA"), "RGBA"  # palette colours looked up, alpha kept
    if mode in ALPHA_MODES:
        if np.asarray(image.getchannel(image.getbands()[-1])).min() < 255:
            raise DataError(
                f"{file}: image has transparent pixels (mode {shown}), whose colour is "
                "undefined; flatten it onto a background first"
            )
        # every pixel opaque: premultiplied or not, the colour bands are the colours
        bands = [np.asarray(image.getchannel(b), dtype=np.uint8) for b in image.getbands()[:-1]]
        return bands[0] if len(bands) == 1 else np.stack(bands, axis=-1)
    if mode in GREY_MODES:
        return np.asarray(image.convert("L"), dtype=np.uint8)
    if mode == "RGB":
        return np.asarray(image, dtype=np.uint8)
    if mode in TO_RGB_MODES:
        return np.asarray(image.convert("RGB"), dtype=np.uint8)
    if mode in SIXTEEN_BIT_MODES:
        values = np.asarray(image)
        values = values.astype(values.dtype.newbyteorder("="))
        lo, hi = int(values.min()), int(values.max())
        if lo < 0 or hi > 65535:
            raise DataError(
                f"{file}: {mode} pixel values span {lo}..{hi}, outside the 16-bit levels 0..65535"
            )
        return values.astype(np.uint16)
    reason = {
        "F": "floating-point pixels have no fixed range; save them as a .npy array",
        "LAB": "Lab colours need a colour profile to become RGB; convert the image to RGB",
    }.get(mode, "convert the image to RGB or L")
    raise DataError(
        f"{file}: image mode {mode} is not supported (vaekit reads 1-, 8- and 16-bit grey, "
        f"palette, RGB, CMYK, YCbCr and HSV images): {reason}"
    )


def open_image(file: Path):
    """Open and decode one image file, turned upright as its EXIF orientation tag says (as
    every viewer shows it); a DataError naming it when Pillow cannot, or when the image
    claims more pixels than Pillow's decompression-bomb limit (``MAX_IMAGE_PIXELS``)."""
    import warnings

    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(file) as image:
                image.load()
                return ImageOps.exif_transpose(image)  # a copy, upright
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise DataError(
            f"{file}: image claims more pixels than the safety limit of "
            f"{Image.MAX_IMAGE_PIXELS} (a decompression bomb?): {exc}"
        ) from None
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as exc:
        raise DataError(f"{file}: unreadable or truncated image ({exc})") from None


def fit_values(values: np.ndarray, size: list[int] | None) -> np.ndarray:
    """Pixels resized by :func:`fit_image`; 16-bit levels through a float image."""
    from PIL import Image

    if size is None:
        return values
    if values.dtype == np.uint16:
        fitted = np.asarray(fit_image(Image.fromarray(values.astype(np.float32)), size))
        return np.clip(np.rint(fitted), 0, 65535).astype(np.uint16)
    return np.asarray(fit_image(Image.fromarray(values), size), dtype=np.uint8)


class Images(NamedTuple):
    """A folder's images: ``x [N, C, H, W]`` (uint8, or int32 for 16-bit levels),
    ``labels`` (index of the class sub-folder, or None), ``classes`` (sub-folder names),
    ``mode`` ("L" or "RGB") and ``levels`` (256 or 65536)."""

    x: np.ndarray
    labels: list[int] | None
    classes: list[str]
    mode: str
    levels: int


def read_images(path: Path, image_size: list[int] | None = None) -> Images:
    """The folder's images: C = 1 if every image is greyscale, else 3 (RGB); uint8 levels
    0..255, or, when an image is 16-bit grey and all are grey, levels 0..65535 (8-bit
    images among them scaled by 257: v / 255 = 257 v / 65535 exactly)."""
    files, labels, classes = list_images(path)
    pixels = [image_values(file, open_image(file)) for file in files]
    colour = [f for f, p in zip(files, pixels, strict=True) if p.ndim == 3]
    deep = [f for f, p in zip(files, pixels, strict=True) if p.dtype == np.uint16]
    if colour and deep:
        raise DataError(
            f"{deep[0]}: a 16-bit grey image in a folder with colour images ({colour[0].name}); "
            "use one kind per folder"
        )
    arrays = []
    first = None
    for file, values in zip(files, pixels, strict=True):
        if colour and values.ndim == 2:
            values = np.repeat(values[:, :, None], 3, axis=2)
        if deep and values.dtype == np.uint8:
            values = values.astype(np.uint16) * np.uint16(257)
        values = fit_values(values, image_size)
        size = values.shape[:2]
        if first is None:
            first = (file, size)
        elif size != first[1]:
            raise DataError(
                f"{file}: image is {size[0]}x{size[1]} but {first[0].name} is "
                f"{first[1][0]}x{first[1][1]}: mixed sizes; pass "
                + spell("--image-size HxW", "image_size=[H, W]")
                + " to resize"
            )
        arrays.append(values[None] if values.ndim == 2 else values.transpose(2, 0, 1))
    x = np.stack(arrays)  # [N, C, H, W]
    return Images(
        x.astype(np.int32) if deep else x,
        labels,
        classes,
        "RGB" if colour else "L",
        65536 if deep else 256,
    )
