"""The sifthinker reward set against hand-computed values of SIFThinker's GRPO-SIF rewards, beside
groundcot's stricter set on the same completions (the deviations the README lists)."""
import io
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from PIL import Image

from groundcot.trainer import rewards as G
from groundcot.trainer.rewards import sifthinker as S


def png16(depth: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray((depth * 65535).round().astype(np.uint16)).save(buf, format="PNG")
    return buf.getvalue()


def area(*items) -> str:
    return "<area>" + json.dumps(list(items)) + "</area>"


def sif(*areas, answer="red", tail="") -> str:
    return "<think>" + "".join(f"{a}<text>step {i}</text>" for i, a in enumerate(areas)) + f"</think><answer>{answer}</answer>{tail}"


GOOD = sif(area({"bbox_2d": [0, 0, 1, 1], "depth": 0.5}), area({"bbox_2d": [0.5, 0.5, 1, 1], "depth": 0.8}))


@pytest.mark.parametrize("text", [
    sif(area(), area({"bbox_2d": [0.5, 0.5, 1, 1], "depth": 0.8})),  # an empty area list
    sif(area({"bbox_2d": [0.5, 0.5, 1, 1], "depth": 0.8, "label": "cup"})),  # an extra key
    GOOD + "\nHope this helps!",  # text after </answer>
    GOOD.replace('"depth": 0.8', '"depth": 0.8000'),  # a literal with trailing zeros reads as 0.8
])
def test_lenient_format_passes_sifthinker_and_fails_groundcot(text):
    assert S.format_reward([text]) == [1.0]
    assert G.format_reward([text]) == [0.0]


@pytest.mark.parametrize("text", [
    GOOD.replace('"depth": 0.8', '"depth": 0.8125'),  # 4 decimals
    GOOD.replace('"depth": 0.8', '"depth": 1e-05'),  # no '.' in Python's repr: refused there too
    sif(area({"bbox_2d": [0.5, 0.5, 0.5, 1], "depth": 0.8})),  # degenerate
    sif(area({"bbox_2d": [0.5, 0.5, 1, 1]})),  # no depth
    "<think><text>x</text><area>[]</area></think><answer>a</answer>",  # text before area
    GOOD.replace("<answer>red</answer>", "<answer> </answer>"),  # empty answer
])
def test_format_failures_both_sets_share(text):
    assert S.format_reward([text]) == [0.0]
    assert G.format_reward([text]) == [0.0]


def test_degenerate_box_stays_in_the_pairing():
    gt = [[0.5, 0.5, 1, 1], [0, 0, 0.25, 0.25]]
    text = sif(area({"bbox_2d": [0.5, 0.5, 1, 1], "depth": 0.8}, {"bbox_2d": [0.2, 0.2, 0.2, 0.4], "depth": 0.3}))
    # by hand: unions 0.25 vs 0.3125 overlapping 0.25 -> global 0.8; pairs 1 + 0 over min(2, 2) -> 0.5;
    # HIoU 0.65; the one area is both B_ini and B_end, so no bonus
    assert S.box_reward([text], gt_boxes=[gt]) == [pytest.approx(0.65)]
    assert G.box_reward([text], gt_boxes=[gt]) == [0.0]  # groundcot: not a valid CoT, no box reward


def test_box_reward_progress_and_areas_outside_the_grammar():
    gt = [[0.5, 0.5, 1, 1]]
    wrong_then_right = sif(area({"bbox_2d": [0, 0, 1, 1], "depth": 0.5}), area({"bbox_2d": [0, 0, 0.5, 0.5], "depth": 0}),
                           area({"bbox_2d": [0.5, 0.5, 1, 1], "depth": 0.8}))
    assert S.box_reward([wrong_then_right], gt_boxes=[gt]) == [2.0]  # 1 + (1 - 0)
    # an area in <answer> still counts as the last area; the grammar does not matter here
    loose = "I look at <area>[{\"bbox_2d\": [0.5, 0.5, 1, 0.75]}]</area> then stop."
    assert S.box_reward([loose], gt_boxes=[gt]) == [pytest.approx(0.5)]  # IoU 0.5 both ways, no bonus
    assert S.box_reward(["no areas"], gt_boxes=[gt]) == [0.0]
    # a first area that does not parse is B_ini; its HIoU fails, so H_end stands without the bonus
    broken_start = "<area>[oops]</area>" + area({"bbox_2d": [0.5, 0.5, 1, 1]})
    assert S.box_reward([broken_start], gt_boxes=[gt]) == [1.0]


def test_boundary_depth_is_judged_on_the_unrounded_mean():
    # 7 pixels: 3 far (1.0), 4 near (0.0): the box mean is 3/7 = 0.428571...
    depth = np.array([[1, 1, 1, 0, 0, 0, 0]], dtype=float)
    text = sif(area({"bbox_2d": [0, 0, 1, 1], "depth": 0.386}))
    # SIFThinker: |0.386 - 0.428571| / 0.428571 = 0.0993 <= 0.1 -> credit
    assert S.depth_reward([text], depth_map=[png16(depth)]) == [1.0]
    # groundcot rounds the mean to 0.429 first: |0.386 - 0.429| = 0.043 > 0.0429 -> none
    assert G.depth_reward([text], depth_map=[png16(depth)]) == [0.0]


def test_missing_depth_is_not_counted_and_zero_mean_gets_no_credit():
    depth = np.zeros((10, 10))
    depth[:, 5:] = 0.6  # left half nearest (0), right half 0.6
    right, left = [0.5, 0, 1, 1], [0, 0, 0.5, 1]
    text = sif(area({"bbox_2d": right, "depth": 0.6}, {"bbox_2d": right}))
    # one stated depth, and it passes: 1/1 (groundcot counts the box without depth: 1/2)
    assert S.depth_reward([text], depth_map=[png16(depth)]) == [1.0]
    assert G.depth_reward([text], depth_map=[png16(depth)]) == [0.5]
    # a box whose mean is 0 gives no credit however close the stated depth; 1 of 2 pass
    both = sif(area({"bbox_2d": left, "depth": 0.0}), area({"bbox_2d": right, "depth": 0.62}))
    assert S.depth_reward([both], depth_map=[png16(depth)]) == [0.5]
    assert S.depth_reward([both], depth_map=[None]) == [None]


def test_depth_map_read_at_the_colour_image_levels():
    # 0.3 renders to level uint8(0.7 * 255) = 178, read back as 1 - 178/255 = 0.30196
    assert S.sif_levels(np.array([[0.3]]))[0, 0] == pytest.approx(1 - 178 / 255)


def test_batch_mean_progress_bonus():
    reward = S.BatchMeanProgress()
    ok, wrong = "<answer>red</answer>", "<answer>blue</answer>"
    # first step: no previous mean, no bonus; the mean of prompt a is (1 + 0) / 2 = 0.5
    assert reward([ok, wrong], answer=["red"] * 2, id=["a", "a"]) == [1.0, 0.0]
    # second step: 1 >= 0.5 -> 1 + 0.5; 0 < 0.5 -> 0; the new mean 0.75 replaces 0.5
    assert reward([ok, wrong], answer=["red"] * 2, id=["a", "a"]) == [1.5, 0.0]
    assert reward.prev == {"a": 0.75}
    # a batch mean of 0 leaves the previous one in place
    assert reward([wrong, wrong], answer=["red"] * 2, id=["a", "a"]) == [0.0, 0.0]
    assert reward([ok], answer=["red"], id=["a"]) == [1.25]  # 1 + (1 - 0.75)


def test_progress_prev_is_the_previous_training_steps_mean():
    from types import SimpleNamespace

    reward, ok, wrong = S.BatchMeanProgress(), "<answer>red</answer>", "<answer>blue</answer>"
    step = SimpleNamespace(global_step=0)
    # two calls in step 0: neither sees a prev; together their mean is (1 + 0 + 1 + 1) / 4 = 0.75
    assert reward([ok, wrong], answer=["red"] * 2, id=["a"] * 2, trainer_state=step) == [1.0, 0.0]
    assert reward([ok, ok], answer=["red"] * 2, id=["a"] * 2, trainer_state=step) == [1.0, 1.0]
    step.global_step = 1
    assert reward([ok], answer=["red"], id=["a"], trainer_state=step) == [1.25]


class _Judge(BaseHTTPRequestHandler):
    """A graded judge: 0.6 for an answer containing 'crimson', 1 for 'red', else 0; fenced JSON sometimes."""

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.bodies.append(body)
        user = body["messages"][1]["content"][0]["text"]
        said = user.rsplit("Model's answer:", 1)[1]
        text = ('```json\n{"score": 0.6}\n```' if "crimson" in said else
                '{"score": 1}' if "red" in said else "I cannot score that")
        data = json.dumps({"id": "x", "object": "chat.completion", "created": 0, "model": "judge",
                           "choices": [{"index": 0, "finish_reason": "stop",
                                        "message": {"role": "assistant", "content": text}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def judge_url():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Judge)
    server.bodies = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1", server.bodies
    server.shutdown()
    server.server_close()


def test_graded_judge_scores_and_bonus(judge_url):
    url, bodies = judge_url
    reward = S.BatchMeanProgress(S.GradedJudge(url, "judge"))
    texts = ["<answer>\ncrimson\n</answer>", "<answer>red</answer>", "no answer tag"]
    image = Image.new("RGB", (8, 8))
    got = reward(texts, answer=["red"] * 3, id=["p"] * 3, question=["Colour?"] * 3, images=[[image]] * 3)
    assert got == [0.6, 1.0, 0.0]  # graded, readable through a code fence; unreadable -> 0
    assert "Model's answer: None" in bodies[2]["messages"][1]["content"][0]["text"]  # as SIFThinker asks
    assert bodies[0]["messages"][1]["content"][1]["image_url"]["url"].startswith("data:image/png;base64,")
    # the batch mean was 1.6 / 3; next step: 0.6 >= 0.5333 -> 0.6 + 0.0667
    assert reward(texts[:1], answer=["red"], id=["p"], question=["Colour?"])[0] == pytest.approx(0.6 + (0.6 - 1.6 / 3))


def test_select_switches_the_four_sif_rewards():
    funcs, _ = G.select({"format": 1, "answer": 1, "box": 1, "depth": 1}, reward_set="sifthinker")
    assert funcs[0] is S.format_reward and isinstance(funcs[1], S.BatchMeanProgress) and funcs[2] is S.box_reward
    assert isinstance(funcs[3], S.DepthReward) and funcs[3].colormap == "Spectral_r"
    assert [f.__name__ for f in funcs] == ["format_reward", "answer_reward", "box_reward", "depth_reward"]


def test_aperture_reward_by_hand():
    gt = [[0.5, 0.5, 1, 1]]
    exact = "<think>a</think><zoom>[0.5, 0.5, 1, 1]</zoom>\n\n<observe>b</observe><answer>red</answer>"
    assert G.aperture_reward([exact], answer=["red"], gt_boxes=[gt]) == [1.0]  # 1 * (1 + 1) / 2 - 0
    # two actions, the first nowhere near the evidence (wasted), the last covering half of it:
    # IoU([0.5, 0.5, 1, 0.75], E) = 0.5 -> (1 + 0.5) / 2 - (1 / 2) / 2 = 0.5
    detour = ("<think>a</think><zoom>[0, 0, 0.2, 0.2]</zoom>",
              "<observe>b</observe><think>c</think><segment>[0.5, 0.5, 1, 0.75]</segment>",
              "<observe>d</observe><answer>red</answer>")
    turns = [{"role": "assistant", "content": t} for t in detour]
    assert G.aperture_reward([turns], answer=["red"], gt_boxes=[gt]) == [0.5]
    assert G.aperture_reward([turns], answer=["blue"], gt_boxes=[gt]) == [-0.25]  # wrong: only the waste counts
    assert G.aperture_reward(["<answer>red</answer>"], answer=["red"], gt_boxes=[gt]) == [0.5]  # no looking


def test_progress_bonus_off_is_honoured_in_both_sets():
    ok = "<think><area>[]</area><text>x</text></think><answer>red</answer>"
    for reward_set in ("sifthinker", "groundcot"):
        (answer,), _ = G.select({"answer": 1}, progress_bonus=False, reward_set=reward_set)
        for _ in range(3):  # with the bonus, the second call scores 1.5 (sifthinker) or stays 1 (groundcot)
            assert answer([ok, ok], answer=["red"] * 2, id=["a", "a"]) == [1.0, 1.0]
    (answer,), _ = G.select({"answer": 1}, progress_bonus=True, reward_set="sifthinker")
    answer([ok, "<answer>no</answer>"], answer=["red"] * 2, id=["a", "a"])
    assert answer([ok], answer=["red"], id=["a"]) == [1.5]
