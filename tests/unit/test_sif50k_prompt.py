"""The sif rows' prompt is SIF-50K's byte for byte (the template quoted from SIFThinker's produce.py),
and both RL paths build their prompt with one switch for the depth image."""
import ast
import io

import numpy as np
from PIL import Image

from groundcot.runs.export import VerlWriter, flat_messages
from groundcot.schemas.record import ChainStep, Record
from groundcot.trainer.config import Data
from groundcot.trainer.data import RL_DEPTH_IMAGE, grpo_row, rl_prompt
from groundcot.transforms.depth_image import attach_depth_image
from groundcot.transforms.styles import STYLES

from support import REPO

QUOTED = REPO / "tests" / "fixtures" / "sifthinker" / "produce_prompt.txt"


def sif50k(question: str) -> str:
    """produce.py's f-string, filled with ``question`` (its ``prompt``)."""
    line = next(x for x in QUOTED.read_text().splitlines() if not x.startswith("#"))
    joined = ast.parse(line).body[0].value
    assert isinstance(joined, ast.JoinedStr)
    return "".join(question if isinstance(v, ast.FormattedValue) and v.value.id == "prompt" else v.value
                   for v in joined.values)


def png16(depth: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray((depth * 65535).round().astype(np.uint16)).save(buf, format="PNG")
    return buf.getvalue()


def png(size=(4, 2)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (200, 10, 10)).save(buf, format="PNG")
    return buf.getvalue()


def sif_record(question="What colour is the car?") -> Record:
    return attach_depth_image(Record(
        id="r", source="viscot", source_id="0", question=question, answer="red", style="sif", width=4, height=2,
        image=png(), depth_map=png16(np.array([[0.0, 0.5, 1.0, 1.0], [0.2, 0.2, 0.2, 0.2]])), gt_boxes=[[0, 0, 2, 2]],
        cot="<think></think><answer>red</answer>", chain=[ChainStep("full", [[0, 0, 1, 1]], [0.5])]))


def test_sif_prompt_is_sif_50k_byte_for_byte():
    for question in ("What colour is the car?", "Is the {cup} left of the plate? $5"):
        messages = STYLES["sif"].conversation(sif_record(question))
        assert flat_messages(messages[:1])[0]["content"] == sif50k(question)


def row_of(record: Record) -> dict:
    """The record as a run's row holds it (images as {"bytes", "path"})."""
    return {"id": record.id, "style": "sif", "source": "viscot", "dataset": "toy", "split": "train",
            "question": record.question, "answer": record.answer, "width": 4, "height": 2, "frame": None,
            "gt_boxes": record.gt_boxes, "cot": record.cot, "image": {"bytes": record.image, "path": None},
            "depth_image": {"bytes": record.depth_image, "path": None},
            "depth_map": {"bytes": record.depth_map, "path": None},
            "messages": STYLES["sif"].conversation(record)}


def test_one_switch_for_the_rl_prompts_depth_image():
    row = row_of(sif_record())
    assert RL_DEPTH_IMAGE is False and Data(runs=["x"]).rl_depth_image is RL_DEPTH_IMAGE
    prompt, images = rl_prompt(row)  # GRPO-SIF: RGB only
    assert [p["type"] for p in prompt[0]["content"]] == ["image", "text"] and images == [row["image"]]
    assert prompt[0]["content"][1]["text"] == sif50k("What colour is the car?").split("\n", 2)[2]
    prompt, images = rl_prompt(row, depth_image=True)
    assert prompt == row["messages"][:1] and images == [row["image"], row["depth_image"]]
    for depth in (False, True):  # verl and `train grpo` show the same turn and images
        verl = VerlWriter.row(row, 0, depth)
        trl = grpo_row(row, depth_image=depth, decode=False)
        assert verl["prompt"] == flat_messages(trl["prompt"]) and verl["images"] == trl["images"]
        assert verl["prompt"][0]["content"].count("<image>") == len(verl["images"]) == 1 + depth
    decoded = grpo_row(row, depth_image=True)["images"]
    assert all(isinstance(i, Image.Image) for i in decoded)
