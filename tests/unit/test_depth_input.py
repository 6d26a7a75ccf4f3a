"""sif.depth_input: the rendering, the record's depth image, the labelled conversation, the config."""
import io

import numpy as np
import pytest
from PIL import Image

from groundcot.pipeline.config import ConfigError, load_config
from groundcot.schemas.codecs import decode_png16
from groundcot.schemas.depth import render_depth, with_depth_input, without_depth_input
from groundcot.schemas.record import ChainStep, Record
from groundcot.transforms.depth_image import attach_depth_image
from groundcot.transforms.styles import STYLES

from support import REPO


def png16(depth: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray((depth * 65535).round().astype(np.uint16)).save(buf, format="PNG")
    return buf.getvalue()


def pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)))


DEPTH = np.array([[0.0, 0.5, 1.0]])


def test_rendering_follows_depth_anythings_run_py():
    # levels uint8((1 - depth) * 255) = 255, 127, 0; grey repeats the level, nearest white
    assert pixels(render_depth(DEPTH, "grey")).tolist() == [[[255] * 3, [127] * 3, [0] * 3]]
    import matplotlib

    lut = (matplotlib.colormaps["Spectral_r"](np.arange(256))[:, :3] * 255).astype(np.uint8)
    assert pixels(render_depth(DEPTH)).tolist() == [[lut[255].tolist(), lut[127].tolist(), lut[0].tolist()]]
    assert pixels(render_depth(DEPTH, "viridis")).shape == (1, 3, 3)


def sif_record(style="sif", depth=True) -> Record:
    return Record(id="r", source="viscot", source_id="0", question="Where?", answer="left", style=style,
                  width=3, height=1, depth_map=png16(DEPTH) if depth else None, cot="<think></think>",
                  chain=[ChainStep("full", [[0, 0, 1, 1]], [0.5])])


def test_only_sif_records_with_a_depth_map_get_a_depth_image():
    r = attach_depth_image(sif_record(), depth_colormap="grey")
    assert pixels(r.depth_image).tolist() == pixels(render_depth(decode_png16(r.depth_map), "grey")).tolist()
    assert attach_depth_image(sif_record(), depth_input=False).depth_image is None
    assert attach_depth_image(sif_record(depth=False)).depth_image is None
    assert attach_depth_image(sif_record(style="textual")).depth_image is None
    assert sif_record().reject("teach", "x").depth_image is None


def test_sif_conversation_labels_the_two_images_as_sif_50k():
    plain = STYLES["sif"].conversation(sif_record())
    assert [p["type"] for p in plain[0]["content"]] == ["image", "text"]
    labelled = STYLES["sif"].conversation(attach_depth_image(sif_record()))
    content = labelled[0]["content"]
    flat = "".join("<image>" if p["type"] == "image" else p["text"] for p in content)
    assert flat == "Original image: <image>\nDepth image: <image>\n" + plain[0]["content"][1]["text"]
    assert flat.endswith("Then output the final answer in <answer> </answer> tags.")
    assert content == with_depth_input(plain[0]["content"][1]["text"])
    assert without_depth_input(content) == plain[0]["content"]  # the GRPO prompt stays RGB-only
    assert labelled[1:] == plain[1:]


def test_depth_settings_in_the_job_config():
    cfg = load_config(str(REPO / "jobs" / "demo.yaml"))
    assert cfg.sif.depth_input is True and cfg.sif.depth_colormap == "Spectral_r"
    assert load_config(str(REPO / "jobs" / "demo.yaml"), ["sif.depth_colormap=grey"]).sif.depth_colormap == "grey"
    with pytest.raises(ConfigError) as err:
        load_config(str(REPO / "jobs" / "demo.yaml"), ["sif.depth_colormap=rainbowish"])
    assert "sif" in str(err.value) and "rainbowish" in str(err.value) and "\n" not in str(err.value)


def test_training_config_checks_the_colour_map():
    from pydantic import ValidationError

    from groundcot.trainer.config import Data

    assert Data(runs=["out/demo"], depth_colormap="grey").depth_colormap == "grey"
    with pytest.raises(ValidationError, match="unknown colour map 'nope'"):
        Data(runs=["out/demo"], depth_colormap="nope")
