import pytest

from groundcot.schemas.cot import Area, Cot, CotError, Step, parse_cot, render_cot

GOOD = ('<think><area>[{"bbox_2d": [0.0, 0.0, 1.0, 1.0], "depth": 0.5}]</area><text>All of it.</text>'
        '<area>[{"bbox_2d": [0.1, 0.2, 0.3, 0.4], "depth": 0.25}, {"bbox_2d": [0.5, 0.5, 0.6, 0.7], "depth": 1}]</area>'
        '<text>Two spots.</text></think><answer>two</answer>')


def test_accepts_good_cot():
    cot = parse_cot(GOOD)
    assert len(cot.steps) == 2
    assert cot.steps[1].areas[1] == Area((0.5, 0.5, 0.6, 0.7), 1.0)
    assert cot.steps[0].text == "All of it."
    assert cot.answer == "two"


def test_whitespace_between_tags_is_fine():
    spaced = GOOD.replace("><", ">\n  <")
    assert parse_cot(spaced) == parse_cot(GOOD)


@pytest.mark.parametrize("text, rule", [
    ("<answer>x</answer>", "not_think_then_answer"),
    ("<think><area>[]</area><text>a</text></think>", "not_think_then_answer"),
    ("<think></think><answer>x</answer>", "no_steps"),
    ("<think>just words</think><answer>x</answer>", "no_steps"),
    ('<think><text>a</text><area>[{"bbox_2d": [0, 0, 1, 1], "depth": 0}]</area></think><answer>x</answer>', "bad_step_order"),
    ('<think><area>[{"bbox_2d": [0, 0, 1, 1], "depth": 0}]</area><text>a</text>'
     '<area>[{"bbox_2d": [0, 0, 1, 1], "depth": 0}]</area></think><answer>x</answer>', "bad_step_order"),
    ('<think><area>[{"bbox_2d": [0, 0, 1, 1], "depth": 0}]</area><text>a</text>tail</think><answer>x</answer>', "bad_step_order"),
    ('<think><area>{"bbox_2d": [0, 0, 1, 1]}</area><text>a</text></think><answer>x</answer>', "area_not_list"),
    ('<think><area>[0, 0, 1, 1</area><text>a</text></think><answer>x</answer>', "area_not_json"),
    ('<think><area>[{"box": [0, 0, 1, 1], "depth": 0}]</area><text>a</text></think><answer>x</answer>', "area_item_keys"),
    ('<think><area>[{"bbox_2d": [0, 0, 1, 1], "depth": 0, "label": "x"}]</area><text>a</text></think><answer>x</answer>', "area_item_keys"),
    ('<think><area>[{"bbox_2d": [0, 0, 1], "depth": 0}]</area><text>a</text></think><answer>x</answer>', "box_not_4_numbers"),
    ('<think><area>[{"bbox_2d": [0, 0, 1.2, 1], "depth": 0}]</area><text>a</text></think><answer>x</answer>', "box_out_of_range"),
    ('<think><area>[{"bbox_2d": [0.5, 0, 0.5, 1], "depth": 0}]</area><text>a</text></think><answer>x</answer>', "box_degenerate"),
    ('<think><area>[{"bbox_2d": [0.1234, 0, 0.5, 1], "depth": 0}]</area><text>a</text></think><answer>x</answer>', "too_many_decimals"),
    ('<think><area>[{"bbox_2d": [0, 0, 1, 1], "depth": 0.0001}]</area><text>a</text></think><answer>x</answer>', "too_many_decimals"),
    ('<think><area>[{"bbox_2d": [0, 0, 1, 1]}]</area><text>a</text></think><answer>x</answer>', "depth_missing"),
    ('<think><area>[{"bbox_2d": [0, 0, 1, 1], "depth": 2}]</area><text>a</text></think><answer>x</answer>', "depth_out_of_range"),
    ('<think><area>[{"bbox_2d": [0, 0, 1, 1], "depth": "near"}]</area><text>a</text></think><answer>x</answer>', "depth_not_number"),
    ('<think><area>[{"bbox_2d": [0, 0, 1, 1], "depth": 0}]</area><text>  </text></think><answer>x</answer>', "empty_text"),
    ('<think><area>[{"bbox_2d": [0, 0, 1, 1], "depth": 0}]</area><text>a</text></think><answer> </answer>', "empty_answer"),
    ('<think><area>[{"bbox_2d": [0, 0, 1, 1], "depth": 0}]</area><text>a <b>bold</b></text></think><answer>x</answer>', "unexpected_tag"),
    ('<think><area>[{"bbox_2d": [0, 0, 1, 1], "depth": 0}]</area><text>a</text></think><answer>x <think></answer>', "unexpected_tag"),
    ('<think><think><area>[{"bbox_2d": [0, 0, 1, 1], "depth": 0}]</area><text>a</text></think></think><answer>x</answer>', "unexpected_tag"),
])
def test_rejects_with_the_rule_broken(text, rule):
    with pytest.raises(CotError) as err:
        parse_cot(text)
    assert err.value.rule == rule


def test_depth_optional_only_when_asked():
    text = '<think><area>[{"bbox_2d": [0, 0, 1, 1]}]</area><text>a</text></think><answer>x</answer>'
    assert parse_cot(text, require_depth=False).steps[0].areas[0].depth is None


def test_round_trip_from_objects():
    cot = Cot((Step((Area((0.0, 0.0, 1.0, 1.0), 0.5),), "Whole image."),
               Step((Area((0.125, 0.25, 0.5, 0.75), 0.031), Area((0.6, 0.6, 0.9, 0.95), 0.999)), "Two parts.")),
              "yes")
    text = render_cot(cot)
    assert parse_cot(text) == cot
    assert render_cot(parse_cot(text)) == text  # canonical text round-trips too


def test_round_trip_without_depth():
    cot = Cot((Step((Area((0.1, 0.1, 0.2, 0.2)),), "x"),), "y")
    assert '"depth"' not in render_cot(cot)
    assert parse_cot(render_cot(cot), require_depth=False) == cot


def test_render_uses_three_decimals():
    text = render_cot(Cot((Step((Area((0.0, 0.0, 1.0, 1.0), 0.5),), "t"),), "a"))
    assert '{"bbox_2d": [0.000, 0.000, 1.000, 1.000], "depth": 0.500}' in text
