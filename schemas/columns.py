"""The one definition of every output column.

Types are written as plain Python so this package stays free of pyarrow/datasets:
a string is a scalar dtype (``"string"``, ``"int32"``, ``"float64"``) or ``"image"``
(a Hugging Face ``Image`` column: struct of bytes and path); ``[t]`` is a list of t;
a dict is a struct. ``features()`` turns this into ``datasets.Features`` (imported lazily).
"""
from __future__ import annotations

TEXT_PART = {"type": "string", "text": "string"}

# Every column a written record can fill, in file order. A style's config has COMMON and the
# style's own (``Style.columns`` in groundcot.transforms.styles): ``style_columns(own)``.
TRAIN_COLUMNS: dict[str, tuple[object, str]] = {
    "id": ("string", "Stable id: a hash of the source record's content."),
    "source": ("string", "Reader kind the record came from (e.g. viscot)."),
    "source_id": ("string", "The record's id or position in its source."),
    "dataset": ("string", "Sub-dataset name given by the source (e.g. cub, gqa)."),
    "split": ("string", "Split given by the source."),
    "question": ("string", "The question, without source-specific suffixes."),
    "answer": ("string", "The ground-truth answer."),
    "image": ("image", "The image, original bytes (re-encoded as PNG only if EXIF-rotated or not RGB)."),
    "image_path": ("string", "Image path relative to the source's image root."),
    "width": ("int32", "Image width in pixels."),
    "height": ("int32", "Image height in pixels."),
    "gt_boxes": ([["float64"]], "Ground-truth boxes, pixel [x1, y1, x2, y2], clipped to the image."),
    "labels": (["string"], "A label per GT box where the source names one (may be empty)."),
    "chain": ([{"kind": "string", "boxes": [["float64"]], "depths": ["float64"]}],
              "Coarse-to-fine chain: per step its kind (full, distractor, union, expansion, gt), "
              "normalised boxes and their depths (null when depth is off)."),
    "masks": ([{"size": ["int32"], "counts": "string", "box": ["float64"], "area": "int64", "score": "float64"}],
              "SAM2 mask per GT box: COCO RLE (size [h, w], counts), tight box xyxy, area, predicted IoU "
              "(null when masks are off)."),
    "cot": ("string", "The assistant text (sif: `<think><area>..</area><text>..</text>..</think><answer>..</answer>`; "
                      "multi-turn styles: the assistant turns, blank-line separated)."),
    "messages": ([{"role": "string", "content": [TEXT_PART]}],
                 "Conversation ready for TRL: image placeholders in order `image`, `depth_image` (sif, when set), then each of `crops`."),
    "style": ("string", "Trajectory style (the config's name). A record has one row per style; "
                        "(`id`, `style`) is unique and rows of one record share `id` (iVGR pairs textual with sif)."),
    "frame": (["int32"], "mgpo: (w, h) of the image as the model sees it; its region is in these pixels."),
    "actions": ([{"kind": "string", "label": "string", "bbox_2d": ["float64"]}],
                "mgpo: the region (kind region, frame pixels); aperture: each action (zoom or segment, normalised)."),
    "crops": (["image"], "Crops shown in later turns (mgpo: the region; aperture: one per action), PNG."),
    "teacher": ("string", "Who wrote the CoT, e.g. template (the offline baseline) or a model name."),
    "hiou": ("float64", "HIoU of the CoT's last area against the GT boxes."),
    "critic_score": ("float64", "The critic's grade of the trace in [0, 1]: each step's text true of its region, "
                                "the chain leading to the answer (null when quality.critic is off)."),
    "critic_reason": ("string", "The critic's one-line reason for its score (null when quality.critic is off)."),
    "depth_map": ("image", "Depth map, 16-bit PNG, min-max normalised, 0 = nearest (null when depth is off)."),
    "depth_image": ("image", "sif: the depth map rendered as the second input image (`sif.depth_colormap`, PNG), "
                             "the second image placeholder of `messages` (null when `sif.depth_input` or depth is off)."),
}

# Columns every style's config has (each style adds its own).
COMMON = ("id", "source", "source_id", "dataset", "split", "question", "answer", "image", "image_path", "width",
          "height", "gt_boxes", "labels", "masks", "cot", "messages", "style", "teacher", "hiou",
          "critic_score", "critic_reason")  # every style writes a trace, so every style can be graded


def check_own(own, whose: str) -> None:
    """A style's own columns must be columns a record fills (TRAIN_COLUMNS) and not COMMON ones."""
    bad = [name for name in own if name not in TRAIN_COLUMNS or name in COMMON]
    if bad:
        raise ValueError(f"{whose}: columns {bad} are not own columns; choose from "
                         f"{', '.join(n for n in TRAIN_COLUMNS if n not in COMMON)}")


def style_columns(own) -> dict[str, tuple[object, str]]:
    """The columns of one style's config (its Parquet files), given its own: COMMON + ``own``, in
    TRAIN_COLUMNS order."""
    keep = set(COMMON) | set(own)
    return {name: spec for name, spec in TRAIN_COLUMNS.items() if name in keep}


def empty_value(spec):
    """What a row of a style without this column holds in a table of several styles: [] for lists, else None."""
    return [] if isinstance(spec, list) else None


REJECTED_COLUMNS: dict[str, tuple[object, str]] = {
    "id": ("string", "Stable id of the record (or of the raw line when it could not be parsed)."),
    "source": ("string", "Reader kind."),
    "source_id": ("string", "The record's id or position in its source."),
    "dataset": ("string", "Sub-dataset name, when known."),
    "image_path": ("string", "Image path, when known."),
    "question": ("string", "The question, when known."),
    "answer": ("string", "The answer, when known."),
    "gt_boxes": ([["float64"]], "GT boxes as given, when known."),
    "cot": ("string", "The CoT, if one was written before the rejection."),
    "style": ("string", "The style rejected; empty when rejected before styles were made (all styles)."),
    "stage": ("string", "The stage that rejected the record."),
    "reason": ("string", "Snake_case reason."),
    "detail": ("string", "Human-readable detail."),
}


_SCALARS = {"string", "int32", "int64", "float32", "float64", "bool"}


def to_feature(spec):
    """A column type written here -> a ``datasets`` feature."""
    import datasets

    if spec == "image":
        return datasets.Image()
    if isinstance(spec, str) and spec in _SCALARS:
        return datasets.Value(spec)
    if isinstance(spec, list):
        return datasets.List(to_feature(spec[0]))
    if isinstance(spec, dict):
        return {k: to_feature(v) for k, v in spec.items()}
    raise TypeError(f"unknown column type {spec!r}")


def features(columns=TRAIN_COLUMNS):
    """The ``datasets.Features`` of an output (its Arrow schema: ``features().arrow_schema``)."""
    import datasets

    return datasets.Features({name: to_feature(spec) for name, (spec, _) in columns.items()})
