import io

import numpy as np
import pytest
from PIL import Image

from groundcot.trainer.rewards import (
    ProgressAnswerReward,
    answer_reward,
    box_reward,
    boxed_answer_reward,
    consistency_reward,
    depth_reward,
    format_reward,
    select,
)

GT = [[0.5, 0.5, 1.0, 1.0]]


def depth_png() -> bytes:
    d = np.zeros((100, 100))
    d[:, 50:] = 0.8  # right half far, left half near
    buffer = io.BytesIO()
    Image.fromarray((d * 65535).round().astype(np.uint16)).save(buffer, format="PNG")
    return buffer.getvalue()


def cot(*areas, answer="red"):
    body = "".join(f'<area>[{{"bbox_2d": {box}, "depth": {d}}}]</area><text>step {i}</text>'
                   for i, (box, d) in enumerate(areas))
    return f"<think>{body}</think><answer>{answer}</answer>"


FULL = ([0, 0, 1, 1], 0.4)
PERFECT = cot(FULL, ([0.5, 0.5, 1, 1], 0.8))  # whole image, then exactly the GT, true depths


def conv(text):  # TRL hands conversational completions as message lists
    return [{"role": "assistant", "content": text}]


def test_perfect_completion():
    assert format_reward([conv(PERFECT)]) == [1.0]
    assert answer_reward([conv(PERFECT)], answer=["Red."]) == [1.0]
    assert depth_reward([conv(PERFECT)], depth_map=[depth_png()]) == [1.0]
    # the first area that is not the whole image is already the GT: H_end 1 + max(0, 1 - 1)
    assert box_reward([conv(PERFECT)], gt_boxes=[GT]) == [1.0]


def test_box_reward_rewards_moving_from_a_wrong_start_to_the_gt():
    wrong_then_right = cot(FULL, ([0, 0, 0.5, 0.5], 0.0), ([0.5, 0.5, 1, 1], 0.8))
    assert box_reward([wrong_then_right], gt_boxes=[GT]) == [2.0]  # H_end 1 + (1 - 0)
    right_then_wrong = cot(([0.5, 0.5, 1, 1], 0.8), ([0, 0, 0.5, 0.5], 0.0))
    assert box_reward([right_then_wrong], gt_boxes=[GT]) == [0.0]  # H_end 0, no negative bonus
    halfway = cot(FULL, ([0.5, 0.5, 1.0, 0.75], 0.8))  # half the GT: IoU 0.5 both ways
    assert box_reward([halfway], gt_boxes=[GT]) == pytest.approx([0.5])
    only_full = cot(FULL)
    assert box_reward([only_full], gt_boxes=[GT]) == pytest.approx([0.25])  # H = (0.25 + 0.25) / 2, no bonus


def test_depth_reward_counts_depths_within_ten_percent():
    half = cot(FULL, ([0.5, 0.5, 1, 1], 0.5))  # second depth wrong (true 0.8)
    assert depth_reward([half], depth_map=[depth_png()]) == [0.5]
    assert depth_reward([PERFECT], depth_map=[None]) == [None]  # no map: does not apply


def test_broken_grammar_and_wrong_answer():
    broken = "<think>I see a red thing</think><answer>red</answer>"
    assert format_reward([broken]) == [0.0] and box_reward([broken], gt_boxes=[GT]) == [0.0]
    assert depth_reward([broken], depth_map=[depth_png()]) == [0.0]
    no_depth = '<think><area>[{"bbox_2d": [0, 0, 1, 1]}]</area><text>x</text></think><answer>red</answer>'
    assert format_reward([no_depth]) == [0.0]  # SIF areas carry depth
    assert answer_reward([PERFECT.replace(">red<", ">blue<")], answer=["red"]) == [0.0]
    assert answer_reward(["no tags at all"], answer=["red"]) == [0.0]


def test_progress_bonus_when_a_sample_improves():
    reward = ProgressAnswerReward()
    wrong, right = PERFECT.replace(">red<", ">blue<"), PERFECT
    assert reward([wrong, wrong], answer=["red"] * 2, id=["a", "b"]) == [0.0, 0.0]  # first sight: no bonus
    assert reward([right, wrong], answer=["red"] * 2, id=["a", "b"]) == [2.0, 0.0]  # a improved 0 -> 1
    assert reward([right], answer=["red"], id=["a"]) == [1.0]  # no better than its best
    import pickle
    assert pickle.loads(pickle.dumps(reward)).best == {"a": 1.0, "b": 0.0}


def test_mgpo_and_ivgr_rewards():
    assert boxed_answer_reward(["It is \\boxed{two}.", "\\boxed{3}", "2"], answer=["2", "2", "2"]) == [1.0, 0.0, 0.0]
    twin = cot(FULL, ([0.5, 0.5, 1, 1], 0.8)).replace("step 0", "the red car by the tree")
    close = "<think>The red car stands by the tree.</think><answer>red</answer>"
    far = "<think>Nothing relevant here at all.</think><answer>red</answer>"
    wrong = "<think>The red car by the tree.</think><answer>blue</answer>"
    scores = consistency_reward([close, far, wrong], twin_text=[twin] * 3, answer=["red"] * 3)
    assert scores[0] > scores[1] >= 0.0 and scores[2] == 0.0


def test_select_follows_the_config():
    funcs, weights = select({"format": 1.0, "answer": 2.0, "box": 0.0, "depth": 1.0})
    assert [f.__name__ for f in funcs] == ["format_reward", "answer_reward", "depth_reward"] and weights == [1, 2, 1]


def test_answer_judge_through_an_openai_compatible_endpoint():
    from groundcot.trainer.rewards import OpenAIJudge

    from support.fake_openai import FakeOpenAI

    worded = PERFECT.replace(">red<", ">a deep red colour<")
    with FakeOpenAI() as fake:  # its judge says yes for questions marked [[paraphrase]]
        judge = OpenAIJudge(fake.base_url, "judge-model")
        reward = ProgressAnswerReward(judge)
        got = reward([worded, worded, PERFECT], answer=["red"] * 3, id=["a", "b", "c"],
                     question=["Colour? [[paraphrase]]", "Colour?", "Colour?"])
        assert got == [1.0, 0.0, 1.0]
        calls = len(fake.requests)
        assert calls == 2  # exact matches need no judge
        reward([worded], answer=["red"], id=["a"], question=["Colour? [[paraphrase]]"])
        assert len(fake.requests) == calls  # verdicts are cached
    assert answer_reward([worded], answer=["red"]) == [0.0]  # without a judge
