"""The multi-turn rollouts' rewards on the completions TRL hands them (messages with parsed tool
calls), on rollout()'s (raw text turns) and on verl's (one decoded string)."""
import json

import pytest

from groundcot.trainer.rewards.registry import get_reward, style_parts

GT = [[0.1, 0.2, 0.5, 0.7]]


def assistant(text="", *calls):
    message = {"role": "assistant", "content": text}
    if calls:
        message["tool_calls"] = [{"type": "function", "function": {"name": n, "arguments": a}} for n, a in calls]
    return message


def tool(text="crop"):
    return {"role": "tool", "name": "t", "content": [{"type": "image"}, {"type": "text", "text": text}]}


def raw(name, **arguments):
    return f'<tool_call>\n{json.dumps({"name": name, "arguments": arguments})}\n</tool_call>'


def score(part, completions, **columns):
    return get_reward(part)(completions, **columns)


def test_the_styles_choose_their_multiturn_parts():
    assert style_parts("mgpo", multiturn=True) == ("boxed_answer", "mgpo_format")
    assert style_parts("aperture", multiturn=True) == ("agrpo",)
    with pytest.raises(ValueError, match="style 'sif' has no multi-turn reward"):
        style_parts("sif", multiturn=True)


def test_mgpo_answer_format_and_grounding():
    good = [assistant("", ("crop", {"bbox_2d": [15, 20, 75, 70], "label": "cat"})), tool(),
            assistant("The crop shows a cat. \\boxed{cat}")]
    no_crop = [assistant("\\boxed{cat}")]
    bad_box = [assistant("", ("crop", {"bbox_2d": [15, 20, 30, 70]})), tool("whole image \\boxed{answer}"),
               assistant("\\boxed{dog}")]
    two_crops = good[:2] + [assistant("", ("crop", {"bbox_2d": [0, 0, 150, 100]})), tool(), good[2]]
    completions, n = [good, no_crop, bad_box, two_crops], 4
    columns = {"answer": ["cat"] * n, "frame": [[150, 100]] * n, "gt_boxes": [GT] * n}
    assert score("boxed_answer", completions, **columns) == [1.0, 1.0, 0.0, 1.0]
    assert score("mgpo_format", completions, **columns) == [1.0, 0.0, 0.0, 0.0]
    iou = score("grounding_iou", completions, **columns)
    assert iou[0] == pytest.approx(1.0) and iou[1:3] == [0.0, 0.0]


def test_mgpo_rewards_read_rollout_text_and_verl_strings_alike():
    turns = [raw("crop", bbox_2d=[15, 20, 75, 70]), "It is \\boxed{cat}"]
    as_rollout = [{"role": "assistant", "content": [{"type": "text", "text": turns[0]}]}, tool(),
                  {"role": "assistant", "content": [{"type": "text", "text": turns[1]}]}]
    as_verl = (f"{turns[0]}\nuser\n<tool_response>\nHere is the region. \\boxed{{answer}}\n</tool_response>\n"
               f"assistant\n{turns[1]}")
    columns = {"answer": ["cat"] * 2, "frame": [[150, 100]] * 2, "gt_boxes": [GT] * 2}
    for part in ("boxed_answer", "mgpo_format"):
        assert score(part, [as_rollout, as_verl], **columns) == [1.0, 1.0], part


def test_agrpo_rewards_success_and_purposeful_observed_apertures():
    e = GT[0]
    exact = [assistant("<think>a</think>", ("zoom", {"box": e})), tool(),
             assistant("<observe>A cat.</observe><answer>cat</answer>")]
    unobserved = [assistant("", ("zoom", {"box": e})), tool(), assistant("<answer>cat</answer>")]
    wasted = [assistant("", ("segment", {"box": [0.8, 0.8, 0.9, 0.9]})), tool(),
              assistant("<observe>Grass.</observe>", ("zoom", {"box": e})), tool(),
              assistant("<observe>A cat.</observe><answer>cat</answer>")]
    no_look = [assistant("<answer>cat</answer>")]
    wrong = [assistant("", ("zoom", {"box": e})), tool(), assistant("<observe>x</observe><answer>dog</answer>")]
    got = score("agrpo", [exact, unobserved, wasted, no_look, wrong], answer=["cat"] * 5, gt_boxes=[GT] * 5)
    assert got == pytest.approx([1.0, 0.5, 0.75, 0.5, 0.0])
