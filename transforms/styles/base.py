"""What every trajectory style provides, with the defaults most styles share.

A style turns a record (its chain, and for multi-turn styles its planned actions and
crops) into a trajectory: the offline teacher's turns, what a VLM teacher is sent and
how its reply becomes turns, the checks a written trajectory must pass, and the
conversation a model is trained on.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from PIL import Image

from groundcot import prompts
from groundcot.schemas import boxes as B
from groundcot.schemas.answers import answers_match
from groundcot.schemas.cot import extract_cot
from groundcot.schemas.record import Record

if TYPE_CHECKING:
    from groundcot.transforms.styles.prefix import Request

Problem = tuple[str, str] | None  # (reason, detail) of the first rule broken, or None
IMAGE = {"type": "image", "text": None}


def text_part(text: str) -> dict:
    return {"type": "text", "text": text}


@dataclass(frozen=True)
class Checks:
    """Validation thresholds (the ``validate`` config section)."""

    min_hiou: float = 0.5
    box_tol: float = 0.01
    depth_tol: float = 0.1


@dataclass(frozen=True)
class CropSettings:
    """How crops and frames are made (the ``crops`` config section)."""

    frame: str = "original"
    min_pixels: int = 3136
    max_pixels: int = 12845056
    min_side: int = 28
    max_aspect: float = 4.0


class Style:
    """A trajectory style: everything it is, in one class. Subclasses set the attributes below and
    write ``template``, ``request``, ``check`` and ``answer``; the rest has defaults for single-turn
    styles. Register one with the entry-point group ``groundcot.styles`` (see the package docstring)."""

    name: str = ""
    reward_parts: tuple[str, ...] = ()  # the trainer's reward families for this style (its reward registry's names)
    columns: tuple[str, ...] = ()  # own output columns beyond schemas.columns.COMMON (names in TRAIN_COLUMNS)
    crops_per_record: int = 0  # images a teacher request adds besides the record's own (at most)
    single_turn: bool = True  # one assistant turn (a single-turn rollout can produce it)
    twin: str | None = None  # the style whose row of the same ``id`` this one pairs with
    card_text: str = ""  # what a row holds, for the dataset card
    citation: tuple[str, str] | None = None  # (cite key, bibtex) of the work the style follows
    teacher_prompt: str = ""  # the instruction a VLM teacher gets (a prompt name)
    train_prompt: str = ""  # the training conversation's first user text (a prompt name; $question)
    prompt_texts: ClassVar[dict[str, str]] = {}  # prompt name -> text, for prompts groundcot does not ship
    plans_crops = False  # True: ``plan`` needs the decoded image

    def prompt(self, name: str, **values: object) -> str:
        """Fill prompt ``name`` (the job's replacement, else the default: groundcot's, or the text this
        style's ``prompt_texts`` registered when the style was)."""
        return prompts.render(name, **values)

    def plan(self, record: Record, image: Image.Image | None, crops: CropSettings) -> None:
        """Attach the style's frame, actions and crops (single-turn styles have none)."""

    def template(self, record: Record) -> list[str]:
        """The offline teacher's assistant turns, from what the record knows."""
        raise NotImplementedError

    def request(self, record: Record, prefix: Request) -> Request:
        """What a VLM teacher is sent: ``prefix`` (``prefix.shared``: the same for every style of
        the record) followed by this style's instruction and the crops it needs."""
        raise NotImplementedError

    def reply(self, record: Record, text: str) -> list[str]:
        """A teacher's reply -> the assistant turns (default: the one CoT in it)."""
        return [extract_cot(text)]

    def check(self, record: Record, checks: Checks) -> Problem:
        """Agreement with the chain or plan, and the answer; sets ``record.hiou``.
        Grammar violations raise ``CotError``."""
        raise NotImplementedError

    def answer(self, record: Record) -> str:
        """The answer the record's trajectory states (raises ``CotError`` if unreadable)."""
        raise NotImplementedError

    def follow_up(self, record: Record) -> list[dict]:
        """The user turn before each later assistant turn: the next crop."""
        return [IMAGE]

    def conversation(self, record: Record) -> list[dict]:
        """The training conversation; image placeholders in order: the image, then each crop."""
        turns = record.turns or [record.cot]
        question = self.prompt(self.train_prompt, question=record.question)
        out = [{"role": "user", "content": [IMAGE, text_part(question)]}]
        for i, turn in enumerate(turns):
            if i:
                out.append({"role": "user", "content": self.follow_up(record)})
            out.append({"role": "assistant", "content": [text_part(turn)]})
        return out


def gt_norm(record: Record) -> list[list[float]]:
    """The record's GT boxes, normalised."""
    return [B.to_norm(b, record.width, record.height) for b in record.gt_boxes]


def answer_problem(record: Record, answer: str) -> Problem:
    """``answer_mismatch`` unless the stated answer matches the GT (or a judge accepted it)."""
    if record.answer_judged or answers_match(answer, record.answer):
        return None
    return "answer_mismatch", f"{answer!r} vs GT {record.answer!r}"


def label_of(record: Record) -> str:
    """What the evidence is called: its labels joined, or 'evidence'."""
    return " and ".join(dict.fromkeys(record.labels)) or "evidence"
