"""Image loading: resolve under the image root, decode, EXIF orientation, RGB, size check, box clipping."""
from __future__ import annotations

import io
import posixpath

from PIL import Image, ImageOps, UnidentifiedImageError

from groundcot.schemas import boxes as B
from groundcot.schemas.record import Record

STAGE = "image"
ORIENTATION = 0x0112  # EXIF tag


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


def decode(data: bytes) -> tuple[bytes, Image.Image]:
    """Decode and normalise to upright RGB; bytes pass through unless pixels change."""
    image = Image.open(io.BytesIO(data))
    image.load()
    rotated = image.getexif().get(ORIENTATION, 1) not in (1, None)
    if not rotated and image.mode == "RGB":
        return data, image
    rgb = (ImageOps.exif_transpose(image) if rotated else image).convert("RGB")
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


def load_image(record: Record, image_root: str) -> Record:
    """Attach the image bytes to the record, or reject it with the reason.

    ``{dataset}`` in ``image_root`` becomes the record's sub-dataset (VisCoT's metadata
    paths are relative to ``cot_image_data/<dataset>/``).
    """
    path = resolve(image_root.replace("{dataset}", record.dataset), record.image_path)
    if path is None:
        return record.reject(STAGE, "path_escapes_root", record.image_path)
    try:
        data = read_bytes(path)
    except (OSError, IOError) as err:
        return record.reject(STAGE, "missing_image", f"{path}: {type(err).__name__}")
    try:
        data, image = decode(data)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
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
    return clip_boxes(record)
