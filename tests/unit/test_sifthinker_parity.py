"""The sifthinker reward set against SIFThinker's own reward functions (quoted with their commit in
tests/fixtures/sifthinker/qwen_module_rewards.py), on a few hundred generated completions: valid
trajectories, numeric-string coordinates, NaN and Infinity, malformed JSON, missing tags, degenerate
and out-of-range boxes. SIFThinker's depth reward reads the colour depth image groundcot renders
from the same stored map (Spectral_r, and grey)."""
import contextlib
import importlib.util
import io
import json
import random

import numpy as np
import pytest
from PIL import Image

from groundcot.schemas.codecs import decode_png16, encode_png16
from groundcot.schemas.depth import render_depth
from groundcot.trainer.rewards import sifthinker as S

from support import REPO

pytest.importorskip("shapely")  # SIFThinker's global IoU is shapely's (a dev dependency)
QUOTED = REPO / "tests" / "fixtures" / "sifthinker" / "qwen_module_rewards.py"


class _Cv2:
    """The two cv2 calls the quoted depth loader makes, on PIL (imread gives BGR, as cv2 does)."""

    @staticmethod
    def imread(path):
        return np.asarray(Image.open(path).convert("RGB"))[:, :, ::-1]

    @staticmethod
    def absdiff(a, b):
        return np.abs(a.astype(np.int16) - b.astype(np.int16)).astype(np.uint8)


@pytest.fixture(scope="module")
def theirs():
    spec = importlib.util.spec_from_file_location("sifthinker_quoted", QUOTED)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.cv2 = _Cv2
    return module


def number(rng: random.Random):
    """A coordinate or depth as a model might write it (a JSON fragment)."""
    kind = rng.random()
    v = rng.choice([rng.random(), round(rng.random(), 3), rng.choice([0, 1, 0.5, 0.25])])
    if kind < 0.70:
        return json.dumps(round(v, 3))
    if kind < 0.78:
        return f'"{round(v, 3)}"'  # a numeric string
    if kind < 0.84:
        return rng.choice(["NaN", "Infinity", "-Infinity"])
    if kind < 0.88:
        return rng.choice([f"{v:.4f}", "1e-05", "0.1230", "-0.1", "1.5", "2"])
    if kind < 0.92:
        return rng.choice(['"abc"', "null", "true", "[0.1]", '""', '".5"', '"1e-1"'])
    return json.dumps(round(v, 3))


def box(rng: random.Random) -> str:
    if rng.random() < 0.8:
        x1, y1 = round(rng.random() * 0.7, 3), round(rng.random() * 0.7, 3)
        x2, y2 = round(x1 + rng.random() * (1 - x1), 3), round(y1 + rng.random() * (1 - y1), 3)
        values = [json.dumps(v) for v in (x1, y1, x2, y2)]
        if rng.random() < 0.35:
            values[rng.randrange(4)] = number(rng)
        if rng.random() < 0.1:
            values = [f'"{v}"' for v in values]  # every coordinate a numeric string
    else:
        values = [number(rng) for _ in range(rng.choice([4, 4, 3, 5]))]
    return "[" + ", ".join(values) + "]"


def item(rng: random.Random) -> str:
    r = rng.random()
    if r < 0.80:
        return f'{{"bbox_2d": {box(rng)}, "depth": {number(rng)}}}'
    if r < 0.88:
        return f'{{"bbox_2d": {box(rng)}}}'  # no depth
    if r < 0.93:
        return f'{{"bbox_2d": {box(rng)}, "depth": {number(rng)}, "label": "cup"}}'
    return rng.choice(['"bbox_2d depth"', "3", '{"depth": 0.5}', "[0, 0, 1, 1]", "{}"])


def area(rng: random.Random) -> str:
    r = rng.random()
    if r < 0.85:
        inner = "[" + ", ".join(item(rng) for _ in range(rng.choice([1, 1, 1, 2, 3, 0]))) + "]"
    elif r < 0.90:
        inner = item(rng)  # an object, not a list
    elif r < 0.95:
        inner = '[{"bbox_2d": [0, 0, 1, 1], "depth": 0.5'  # malformed JSON
    else:
        inner = '[{"bbox_2d": [0, 0, 1, 1], "depth": 0.5}]'
    return f"<area>{inner}</area>"


def completion(rng: random.Random) -> str:
    steps = [area(rng) + f"<text>{rng.choice(['I look here.', ' ', 'The cup.'])}</text>"
             for _ in range(rng.randint(1, 4))]
    if rng.random() < 0.3:
        steps.insert(0, '<area>[{"bbox_2d": [0, 0, 1, 1], "depth": 0.5}]</area><text>The whole image.</text>')
    think = "".join(steps)
    answer = rng.choice(["red", "red", " ", "\nred\n"])
    text = f"<think>{think}</think><answer>{answer}</answer>"
    damage = rng.random()
    if damage < 0.05:
        text = text.replace("</think>", "")
    elif damage < 0.10:
        text = text.replace("<answer>", "")
    elif damage < 0.13:
        text = text.replace("<text>", "", 1)
    elif damage < 0.16:
        text = "Let me see. " + text + " Done."
    elif damage < 0.19:
        text = think  # areas with no think/answer tags
    return text


def gt_boxes(rng: random.Random) -> list[list[float]]:
    out = []
    for _ in range(rng.randint(1, 3)):
        x1, y1 = rng.random() * 0.7, rng.random() * 0.7
        out.append([round(x1, 3), round(y1, 3), round(x1 + 0.05 + rng.random() * 0.25, 3),
                    round(y1 + 0.05 + rng.random() * 0.25, 3)])
    return out


def depth_map(rng: random.Random) -> np.ndarray:
    h, w = rng.randint(8, 40), rng.randint(8, 40)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    gen = np.random.default_rng(rng.randrange(2**32))
    d = (0.5 * xx + 0.3 * yy + 0.2 * gen.random((h, w)))
    d[: h // 4, : w // 4] = 0.0  # a nearest patch: mean 0 there
    return np.clip(d, 0, 1)


N = 400


def test_sifthinker_set_equals_sifthinkers_code(theirs, tmp_path):
    rng = random.Random(21)
    maps = []
    for k, colormap in enumerate(["Spectral_r"] * 3 + ["grey"]):
        png = encode_png16(depth_map(rng))
        path = tmp_path / f"depth{k}.png"
        path.write_bytes(render_depth(decode_png16(png), colormap))
        maps.append((png, str(path), S.DepthReward(colormap)))
    differences, sample, texts = 0, [], []
    for n in range(N):
        text, gt = completion(rng), gt_boxes(rng)
        texts.append(text)
        png, path, depth_reward = maps[n % len(maps)]
        conv = [[{"role": "assistant", "content": text}]]
        with contextlib.redirect_stdout(io.StringIO()):  # SIFThinker's code prints as it goes
            want = {"format": theirs.format_reward_rec(conv)[0],
                    "box": theirs.iou_reward_modify(conv, solution=[{"bbox_3d": gt}])[0],
                    "depth": theirs.depth_reward(conv, solution=[None], img_depth_str=[path])[0],
                    "answer": theirs.extract_answer(text)}
        got = {"format": S.format_reward(conv)[0], "box": S.box_reward(conv, gt_boxes=[gt])[0],
               "depth": depth_reward(conv, depth_map=[png])[0], "answer": S.answer_of(text)}
        for part, value in want.items():
            same = got[part] == value if part == "answer" else got[part] == pytest.approx(value, abs=1e-9, nan_ok=True)
            if not same:
                differences += 1
                sample.append((part, text, gt, value, got[part]))
    assert differences == 0, "\n".join(map(repr, sample[:8]))
    # the generated set holds the cases issue 21 names
    assert sum('"bbox_2d": ["' in t for t in texts) >= 10 and sum("NaN" in t or "Infinity" in t for t in texts) >= 20
    assert sum("</think>" not in t for t in texts) >= 10


def test_numeric_string_coordinates_score_as_numbers(theirs):
    gt = [[0.1, 0.1, 0.5, 0.5]]
    as_strings = [[{"role": "assistant", "content": '<think><area>[{"bbox_2d": ["0.1", "0.1", "0.5", "0.5"], '
                   '"depth": 0.5}]</area><text>x</text></think><answer>a</answer>'}]]
    with contextlib.redirect_stdout(io.StringIO()):
        assert theirs.iou_reward_modify(as_strings, solution=[{"bbox_3d": gt}]) == [1.0]
    assert S.box_reward(as_strings, gt_boxes=[gt]) == [1.0]
