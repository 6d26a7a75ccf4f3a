"""The multi-turn environments driven by scripted completions through ``rollout`` (the path
``groundcot eval`` uses) and directly as TRL calls them: the images they return and the counts."""
import io

import numpy as np
import pytest
from PIL import Image

from groundcot.trainer.envs import ENVIRONMENTS, environment, rollout, tools_of
from groundcot.transforms.crops import NEUTRAL


def call(name: str, **arguments) -> str:
    import json

    return f'<think>Look.</think>\n<tool_call>\n{json.dumps({"name": name, "arguments": arguments})}\n</tool_call>'


@pytest.fixture(scope="module")
def image():
    return Image.fromarray((np.random.RandomState(0).rand(200, 300, 3) * 255).astype("uint8"))


def row(image, **extra):
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return {"id": "r1", "image": {"bytes": buffer.getvalue()}, "question": "What animal is it?", "answer": "cat",
            "width": 300, "height": 200, "gt_boxes": [[30, 40, 130, 140]], **extra}


def scripted(*turns):
    seen = []

    def generate(messages):
        seen.append(list(messages))
        return turns[len(seen) - 1]
    return generate, seen


def pixels(im):
    return np.asarray(im.convert("RGB"))


def test_mgpo_crop_comes_from_the_full_resolution_image_in_the_frame_the_model_saw(image):
    # the model sees a 150x100 frame (half size): its box [15, 20, 65, 70] is [30, 40, 130, 140] here
    generate, seen = scripted(call("crop", bbox_2d=[15, 20, 65, 70], label="cat"), "It is a cat. \\boxed{cat}")
    out = rollout("mgpo", row(image, frame=[150, 100]), generate, max_turns=1)
    assert (out["tool_calls"], out["failed_tool_calls"], out["images_added"]) == (1, 0, 1)
    first = seen[0][0]["content"]
    assert first[0]["image"].size == (300, 200) and "150x100" in first[1]["text"] and "What animal" in first[1]["text"]
    tool = out["messages"][2]
    assert tool["role"] == "tool" and tool["name"] == "crop"
    crop = tool["content"][0]["image"]
    assert crop.size == (100, 100) and np.array_equal(pixels(crop), pixels(image.crop((30, 40, 130, 140))))
    assert "What animal" in tool["content"][1]["text"] and "\\boxed" in tool["content"][1]["text"]
    assert out["completion"].endswith("\\boxed{cat}") and len(seen) == 2 and seen[1][-1] is tool


@pytest.mark.parametrize("box", [[15, 20, 30, 70], [100, 20, 200, 70], [20, 20, 10, 70], [15.5, 20, 65, 70]])
def test_mgpo_unusable_box_gets_the_whole_image_back_as_mgpo_does(image, box):
    """Too small (not > 28 px a side), outside the frame, inverted, or not integers."""
    generate, _ = scripted(call("crop", bbox_2d=box, label="x"), "\\boxed{dog}")
    out = rollout("mgpo", row(image, frame=[150, 100]), generate, max_turns=1)
    assert (out["tool_calls"], out["failed_tool_calls"], out["images_added"]) == (1, 1, 1)
    back = out["messages"][2]["content"]
    assert np.array_equal(pixels(back[0]["image"]), pixels(image)) and "whole image" in back[1]["text"]


def test_mgpo_calls_past_the_budget_fail_and_the_episode_stops_at_max_turns(image):
    both = call("crop", bbox_2d=[15, 20, 65, 70]) + "\n" + call("crop", bbox_2d=[0, 0, 150, 100])
    generate, seen = scripted(both, call("crop", bbox_2d=[15, 20, 65, 70]))
    out = rollout("mgpo", row(image, frame=[150, 100]), generate, max_turns=1)
    # turn 1 calls twice with a budget of one: the first crops, the second is an error without an image;
    # turn 2's call is not run (max_turns reached), and the episode ends there
    assert (out["tool_calls"], out["failed_tool_calls"], out["images_added"]) == (2, 1, 1)
    assert [m["role"] for m in out["messages"]] == ["user", "assistant", "tool", "tool", "assistant"]
    assert out["messages"][3]["content"] == "{'error': 'turn budget spent: 1 tool call(s) per rollout'}"
    assert len(seen) == 2


def test_unknown_tool_and_unreadable_call_fail_without_an_image(image):
    generate, _ = scripted("<tool_call>\n{not json}\n</tool_call>", call("rotate", angle=3), "\\boxed{cat}")
    out = rollout("mgpo", row(image), generate, max_turns=3)
    assert (out["tool_calls"], out["failed_tool_calls"], out["images_added"]) == (2, 2, 0)
    assert "error" in out["messages"][2]["content"] and "rotate not found" in out["messages"][4]["content"]


def test_aperture_zoom_then_segment_then_answer(image, tmp_path):
    from groundcot.transforms.masks import build_tiny_random

    sam = build_tiny_random(str(tmp_path / "sam2"))
    generate, _ = scripted(call("zoom", box=[0.1, 0.2, 0.5, 0.7]), "<observe>A cat.</observe>" + call("segment", box=[0.1, 0.2, 0.5, 0.7]),
                           "<observe>Its fur.</observe><answer>cat</answer>")
    out = rollout("aperture", row(image), generate, max_turns=3, segment_model=sam, segment_device="cpu")
    zoom, segment = out["messages"][2]["content"][0]["image"], out["messages"][4]["content"][0]["image"]
    assert np.array_equal(pixels(zoom), pixels(image.crop((30, 40, 150, 140))))
    # the segment crop: each pixel is the original's or the neutral grey outside the mask
    assert out["images_added"] == 2 and out["failed_tool_calls"] == 0 and out["tool_calls"] == 2
    assert min(segment.size) >= 28


def test_aperture_segment_as_trl_calls_it_keeps_the_masked_pixels_and_greys_the_rest(image, tmp_path):
    from groundcot.transforms.masks import build_tiny_random

    env = environment("aperture", 2, segment_model=build_tiny_random(str(tmp_path / "sam2")), segment_device="cpu")()
    env.reset(images=[image], question="What?", answer="cat")
    parts = env.segment(box=[0.1, 0.2, 0.5, 0.7])
    assert [p["type"] for p in parts] == ["image", "text"] and "segment crop" in parts[1]["text"]
    (_, _, rect), got = env.actions[0], pixels(parts[0]["image"])
    original = pixels(image.crop(rect))
    kept = (got == original).all(axis=2)
    assert kept.any() and ((got[~kept] == NEUTRAL).all(axis=1)).all()
    assert (env.calls, env.failed, env.images_added) == (1, 0, 1)


def test_aperture_bad_box_and_too_many_calls_fail(image):
    generate, _ = scripted(call("zoom", box=[0.5, 0.2, 0.1, 0.7]), call("zoom", box=[0, 0, 2, 1]),
                           call("zoom", box=[0.1, 0.1, 0.6, 0.6]), "<answer>cat</answer>")
    out = rollout("aperture", row(image), generate, max_turns=2)
    assert (out["tool_calls"], out["failed_tool_calls"], out["images_added"]) == (2, 2, 0)
    assert "not x1 < x2" in out["messages"][2]["content"]


def test_trl_sees_the_tools_with_their_argument_schemas():
    from transformers.utils import get_json_schema

    assert sorted(tools_of(ENVIRONMENTS["mgpo"]())) == ["crop"]
    assert sorted(tools_of(ENVIRONMENTS["aperture"]())) == ["segment", "zoom"]
    schema = get_json_schema(ENVIRONMENTS["mgpo"]().crop)["function"]
    assert schema["parameters"]["properties"]["bbox_2d"]["type"] == "array"
    with pytest.raises(ValueError, match="style 'sif' has no multi-turn environment"):
        environment("sif", 2)
