"""Image loading: resolve under the image root, size limits from the header, decode, EXIF
orientation, 8-bit RGB, size check, box clipping."""
from __future__ import annotations

import io
import posixpath
import struct
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from groundcot.schemas import boxes as B
from groundcot.schemas.record import Record

STAGE = "image"
ORIENTATION = 0x0112  # EXIF tag


def dataset_root(image_root: str, dataset: str) -> str | None:
    """``image_root`` with ``{dataset}`` replaced by the record's sub-dataset; None unless that is a plain name.

    >>> dataset_root("/data/cot/{dataset}", "../outside") is None
    True
    """
    if "{dataset}" not in image_root:
        return image_root
    if dataset in (".", "..") or any(c in dataset for c in "/\\\0"):
        return None
    return image_root.replace("{dataset}", dataset)


def resolve(image_root: str, image_path: str) -> str | None:
    """Join ``image_path`` under ``image_root``; None if it escapes the root."""
    rel = posixpath.normpath(image_path.replace("\\", "/"))
    if rel.startswith("../") or rel == ".." or posixpath.isabs(rel):
        return None
    return image_root.rstrip("/") + "/" + rel


def read_bytes(path: str) -> bytes:
    from apache_beam.io.filesystems import FileSystems  # local paths and buckets alike

    with FileSystems.open(path) as handle:
        return handle.read()


def open_header(data: bytes) -> Image.Image:
    """The image with only its header read (size, mode); its pixels are decoded on ``load()``."""
    with warnings.catch_warnings():  # images.max_pixels is checked next, with a clear reason
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        return Image.open(io.BytesIO(data))


def size_problem(width: int, height: int, min_side: int, max_aspect: float, max_pixels: int) -> tuple[str, str] | None:
    """(reason, detail) if an image of this size is refused, else None.

    >>> size_problem(5000, 2, 28, 50.0, 10**8)
    ('image_too_small', '5000x2: a side under images.min_side 28')
    """
    if width * height > max_pixels:
        return "image_too_large", f"{width}x{height}: {width * height} pixels, over images.max_pixels {max_pixels}"
    if min(width, height) < min_side:
        return "image_too_small", f"{width}x{height}: a side under images.min_side {min_side}"
    if max(width, height) / min(width, height) > max_aspect:
        return "image_extreme_aspect", f"{width}x{height}: aspect over images.max_aspect {max_aspect:g}"
    return None


def _range(values: np.ndarray, mode: str) -> tuple[float, float]:
    """The range mapped to 0..255: 16-bit's own; 0..1 or 0..255 when the values fit one (float or 8-bit data
    in a wider container); else the values' own: 0..max, or min..max when some are negative."""
    if mode.startswith("I;16"):
        return 0.0, 65535.0
    finite = values[np.isfinite(values)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
    for top in ((1.0,) if mode == "F" else ()) + (255.0,):
        if lo >= 0 and hi <= top:
            return 0.0, top
    lo = min(lo, 0.0)
    return lo, max(hi, lo + 1e-9)


def to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB. 16-bit, 32-bit and float images are scaled by their range, not clipped to white.

    >>> to_rgb(Image.new("I;16", (2, 2), 65535)).getpixel((0, 0)), to_rgb(Image.new("F", (2, 2), 0.5)).getpixel((0, 0))
    ((255, 255, 255), (128, 128, 128))
    """
    if not (image.mode.startswith("I") or image.mode == "F"):
        return image.convert("RGB")
    values = np.asarray(image, dtype=np.float64)
    lo, hi = _range(values, image.mode)
    scaled = np.nan_to_num((values - lo) / (hi - lo) * 255, nan=0.0, posinf=255.0, neginf=0.0)
    return Image.fromarray(np.rint(np.clip(scaled, 0, 255)).astype(np.uint8), "L").convert("RGB")


def decode(data: bytes, image: Image.Image | None = None) -> tuple[bytes, Image.Image]:
    """Decode and normalise to upright 8-bit RGB; bytes pass through unless pixels change."""
    image = image or open_header(data)
    image.load()
    rotated = image.getexif().get(ORIENTATION, 1) not in (1, None)
    if not rotated and image.mode == "RGB":
        return data, image
    rgb = to_rgb(ImageOps.exif_transpose(image) if rotated else image)
    buffer = io.BytesIO()
    rgb.save(buffer, format="PNG")  # lossless re-encode only where needed
    return buffer.getvalue(), rgb


def clip_boxes(record: Record) -> Record:
    """Clip GT boxes to the image; drop empty ones; reject if none is left."""
    kept, labels = [], []
    for i, box in enumerate(record.gt_boxes):
        if B.is_degenerate(box):
            continue
        clipped = B.clip(box, record.width, record.height)
        if not B.is_degenerate(clipped):
            kept.append(clipped)
            labels.extend(record.labels[i:i + 1])
    if not kept:
        given = record.gt_boxes
        reason = "empty_box" if all(B.is_degenerate(b) for b in given) else "box_outside_image"
        return record.reject(STAGE, reason, f"boxes {given} in a {record.width}x{record.height} image")
    record.gt_boxes, record.labels = kept, labels if len(labels) == len(kept) else []
    return record


def load_image(record: Record, image_root: str, min_side: int = 28, max_aspect: float = 50.0,
               max_pixels: int = 89_478_485) -> Record:
    """Attach the image bytes to the record, or reject it with the reason.

    ``{dataset}`` in ``image_root`` becomes the record's sub-dataset (VisCoT's metadata
    paths are relative to ``cot_image_data/<dataset>/``). The size limits are checked
    from the file's header, before its pixels are decoded.
    """
    root = dataset_root(image_root, record.dataset)
    path = resolve(root, record.image_path) if root is not None else None
    if record.image is not None:  # the source held the bytes
        data, path = record.image, record.image_path or record.source_id
    elif path is None:
        return record.reject(STAGE, "path_escapes_root", f"dataset {record.dataset!r}, image {record.image_path!r}")
    else:
        try:
            data = read_bytes(path)
        except (OSError, ValueError) as err:  # ValueError: a path no file system takes (a NUL byte)
            return record.reject(STAGE, "missing_image", f"{path}: {type(err).__name__}"[:300])
    try:
        image = open_header(data)
        if problem := size_problem(image.width, image.height, min_side, max_aspect, max_pixels):
            return record.reject(STAGE, *problem)
        data, image = decode(data, image)
    except Image.DecompressionBombError as err:
        return record.reject(STAGE, "image_too_large", f"{path}: {err}"[:300])
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError, struct.error) as err:
        return record.reject(STAGE, "corrupt_image", f"{path}: {err}"[:300])
    if not record.width and not record.height:  # the source gives no size: trust the file
        record.width, record.height = image.width, image.height
    elif (image.width, image.height) != (record.width, record.height):
        return record.reject(STAGE, "size_mismatch", f"{path}: declared {record.width}x{record.height}, "
                                                     f"file is {image.width}x{image.height} (upright)")
    record.image = data
    if record.square_boxes:
        record.gt_boxes = [B.from_padded_square(b, record.width, record.height) for b in record.square_boxes]
        record.square_boxes = None
    if record.norm_boxes:
        record.gt_boxes = [B.to_pixel(b, record.width, record.height) for b in record.norm_boxes]
        record.norm_boxes = None
    return clip_boxes(record)
