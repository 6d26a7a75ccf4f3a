"""verl's compute_score for each style, called with verl's keyword arguments."""
import pytest

from groundcot.trainer.verl_reward import compute_score

GT = [[0.5, 0.5, 1.0, 1.0]]


def score(text, style, answer="red", **info):
    return compute_score(data_source="groundcot/viscot/toy", solution_str=text, ground_truth=answer,
                         extra_info={"style": style, "gt_boxes": GT, "question": "Colour?", **info})


def test_each_style_gets_its_parts():
    sif = ('<think><area>[{"bbox_2d": [0.5, 0.5, 1, 1], "depth": 0.8}]</area><text>x</text></think>'
           "<answer>red</answer>")
    # no depth map: the depth part is left out, as TRL leaves out a None reward
    # the one area is the GT: H_end 1, and it is also B_ini, so no bonus
    assert score(sif, "sif") == {"score": 3.0, "format": 1.0, "answer": 1.0, "box": 1.0}
    assert score("<think>x</think><answer>Red.</answer>", "textual") == {"score": 1.0, "answer": 1.0}
    assert score("It is \\boxed{red}", "mgpo") == {"score": 1.0, "boxed_answer": 1.0}
    looked = "<think>a</think><zoom>[0.5, 0.5, 1, 1]</zoom>\n\n<observe>b</observe><answer>red</answer>"
    assert score(looked, "aperture") == {"score": 1.0, "aperture": 1.0}


def test_gt_boxes_as_verl_hands_them_and_bad_settings():
    import numpy as np

    sif = '<think><area>[{"bbox_2d": [0.5, 0.5, 1, 1], "depth": 0.8}]</area><text>x</text></think><answer>no</answer>'
    as_arrays = compute_score("d", sif, "red", {"style": "sif", "gt_boxes": np.array([np.array(GT[0])])})
    assert as_arrays["box"] == 1.0 and as_arrays["answer"] == 0.0
    with pytest.raises(ValueError, match="style 'video'"):
        score(sif, "video")
    with pytest.raises(ValueError, match="reward_set"):
        compute_score("d", sif, "red", {"style": "sif", "gt_boxes": GT}, reward_set="nope")
