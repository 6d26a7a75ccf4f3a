"""The leading messages every style of a record sends a VLM teacher, and the request type.

All styles of one record start with the same system text (the question, the answer and a
legend of the chain's steps) and the same image, byte for byte, so vLLM's prefix caching and
hosted prompt caching reuse them; each style's own instruction (and the crops it needs)
comes after. By default the image is sent once, every step's boxes drawn in its own colour
and tagged with its number (``numbered``); ``per_step`` sends one image per step instead,
its boxes in red (SIFThinker's ``produce.py`` shape).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from groundcot import prompts
from groundcot.schemas.cot import render_area
from groundcot.schemas.record import Record
from groundcot.transforms.styles.pictures import colour, data_url, downscale, numbered, picture, with_boxes

ROLES = {"full": "the whole image", "distractor": "a distractor: a nearby region without the answer",
         "union": "the region spanning all the evidence", "expansion": "closer to the evidence",
         "gt": "the evidence"}


@dataclass(frozen=True)
class Pictures:
    """How images are sent (the teacher config's ``image_max_side``, ``image_format``, ``images``)."""

    max_side: int = 1024
    fmt: str = "jpeg"
    per_step: bool = False
    min_zoom: float = 1.5  # a rectangle crop is sent only when it shows its region this much larger


@dataclass
class Request:
    """Chat messages (OpenAI format, images inline) and the (width, height) of every image in them."""

    messages: list[dict]
    sizes: list[tuple[int, int]] = field(default_factory=list)
    fmt: str = "jpeg"  # encoding of the images (crops a style adds use it too)
    max_side: int = 1024  # longest side of the images (crops a style adds too)
    zoom: float = 1.0  # how much larger than in the shared image a full-resolution crop shows its region
    min_zoom: float = 1.5

    def then(self, content: list[dict], sizes=()) -> Request:
        """This request with one more user message (the style's part) after it; shares the prefix."""
        return Request([*self.messages, {"role": "user", "content": content}], [*self.sizes, *sizes], self.fmt,
                       self.max_side, self.zoom, self.min_zoom)

    def crop_adds_detail(self) -> bool:
        """A rectangle crop of the full-resolution image shows more than the shared image does: the
        image was downscaled by at least ``min_zoom``. Otherwise its pixels are already in the prefix."""
        return self.zoom >= self.min_zoom


def legend(record: Record, per_step: bool = False) -> str:
    """One line per chain step (prompt ``teacher_step``): its role, how it is marked, its regions."""
    lines = []
    for i, step in enumerate(record.chain):
        mark = "outlined in red in its own image" if per_step else f"outlined in {colour(i)[0]}, tagged {i + 1}"
        lines.append(prompts.render("teacher_step", index=i + 1, role=ROLES.get(step.kind, step.kind), mark=mark,
                                    area=render_area(step.areas())))
    return "\n".join(lines)


def shared(record: Record, pictures: Pictures) -> Request:
    """The system text and image(s) every style of ``record`` starts with (decoded, resized and
    encoded once: build it once per record)."""
    image = downscale(record.image, pictures.max_side)
    n = len(record.chain)
    shown = (f"{n} images, one per step" if pictures.per_step
             else "the image once, with every step's regions outlined in its colour and tagged with its number")
    system = prompts.render("teacher_system", question=record.question, answer=record.answer, n_steps=n,
                            shown=shown, legend=legend(record, pictures.per_step))
    if pictures.per_step:
        content: list[dict] = []
        for i, step in enumerate(record.chain, 1):
            content += [{"type": "text", "text": f"Step {i}:"}, picture(with_boxes(image, step.boxes, pictures.fmt))]
        sizes = [image.size] * n
    else:
        content = [picture(data_url(numbered(image, [s.boxes for s in record.chain]), pictures.fmt))]
        sizes = [image.size]
    zoom = record.width / image.width if image.width else 1.0
    return Request([{"role": "system", "content": system}, {"role": "user", "content": content}], sizes,
                   pictures.fmt, pictures.max_side, zoom, pictures.min_zoom)
