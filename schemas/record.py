"""The record that flows through every stage, and its rejection."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field


@dataclass
class Rejection:
    """Why a record left the pipeline: the stage, a snake_case reason, and details."""

    stage: str
    reason: str
    detail: str = ""


@dataclass
class ChainStep:
    """One step of the coarse-to-fine chain: normalised boxes and their depths."""

    kind: str  # full | distractor | union | expansion | gt
    boxes: list[list[float]]
    depths: list[float] | None = None

    def areas(self):
        """The step as CoT areas (box + depth, depth None when depth is off)."""
        from groundcot.schemas.cot import Area

        return tuple(Area(tuple(b), d) for b, d in zip(self.boxes, self.depths or [None] * len(self.boxes)))


@dataclass(kw_only=True)
class Record:
    """One grounded question. Boxes are pixel ``[x1, y1, x2, y2]`` of the upright image.

    Built with keyword arguments; only the ids are required, so a reader can make a
    record for input it could not parse and reject it with its reason.
    ``width``/``height`` are 0 when the source does not give them (the image stage reads
    them from the file). ``square_boxes`` holds boxes normalised to the image padded to a
    square, when a source gives only those, ``norm_boxes`` boxes normalised to the image
    itself; the image stage turns both into pixels. A source that holds the image's bytes
    sets ``image``; the image stage then reads no file.
    """

    id: str
    source: str  # reader kind, e.g. "viscot"
    source_id: str  # the record's id (or position) in its source
    dataset: str = ""
    split: str = ""
    question: str = ""
    answer: str = ""
    image_path: str = ""
    width: int = 0
    height: int = 0
    gt_boxes: list[list[float]] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    square_boxes: list[list[float]] | None = None
    norm_boxes: list[list[float]] | None = None
    image: bytes | None = None
    depth_map: bytes | None = None  # 16-bit PNG, 0 = nearest
    depth_image: bytes | None = None  # sif: the depth map rendered as the model's second input image (PNG)
    masks: list[dict] | None = None  # per GT box: COCO RLE {size, counts}, box, area, score
    chain: list[ChainStep] = field(default_factory=list)
    cot: str | None = None  # the assistant text (multi-turn styles: the turns, blank-line separated)
    turns: list[str] = field(default_factory=list)  # assistant turns
    teacher: str | None = None
    style: str = "sif"
    frame: list[int] | None = None  # (w, h) of the image as the model sees it, where boxes are in pixels
    actions: list[dict] = field(default_factory=list)  # planned regions / apertures of the style
    crops: list[bytes] = field(default_factory=list)  # crop images shown in later turns (PNG)
    hiou: float | None = None
    image_group: str = ""  # the perceptual identity of its group of near-identical images (transforms/dedup.py)
    mix_styles: list[str] | None = None  # the styles the mix keeps for it, when it dropped some (transforms/mix.py)
    critic_score: float | None = None  # the critic's grade of the trace, in [0, 1] (transforms/critic.py)
    critic_reason: str | None = None  # the critic's one-line reason
    answer_judged: bool = False  # an LLM judge accepted an answer that differs in wording
    rejection: Rejection | None = None

    @property
    def filtered(self) -> bool:
        """Left out on purpose by a source filter: counted, not written, not rejected."""
        return self.rejection is not None and self.rejection.stage == "filter"

    def reject(self, stage: str, reason: str, detail: str = "") -> "Record":
        """Mark the record rejected and drop its heavy payloads."""
        self.rejection = Rejection(stage, reason, detail)
        self.image = self.depth_map = self.depth_image = None
        return self


def stable_id(source: str, *parts: object) -> str:
    """An id that depends only on the record's content, never on run order."""
    digest = hashlib.sha1("\x1f".join(map(str, parts)).encode("utf-8")).hexdigest()
    return f"{source}-{digest[:16]}"
