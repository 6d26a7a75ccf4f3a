import json
from types import SimpleNamespace

import apache_beam as beam
from apache_beam.testing.util import assert_that, equal_to

from groundcot.transforms.sources.gqa import (
    ReadGqa,
    evidence_ids,
    join_graph,
    parse_question,
    slim_graph,
    split_from_filename,
)
from groundcot.transforms.sources.jsonstream import JsonError

from support import FIXTURES, GQA_GRAPH

QUESTIONS = FIXTURES / "gqa" / "SAMPLE-val_balanced_questions.json"
NO_FILTERS = SimpleNamespace(balanced_only=False, structural=None, semantic=None, detailed=None)


def question(qid):
    return qid, json.loads(QUESTIONS.read_text())[qid]


def joined(qid, filters=NO_FILTERS):
    graphs = dict(slim_graph("g.json", 0, kv)[0] for kv in GQA_GRAPH.items())
    return join_graph(parse_question("q.json", 0, question(qid), "val", filters), graphs)


def test_evidence_order_answer_then_question_then_full_answer_with_spans():
    q = question("00137872")[1]
    assert evidence_ids(q["annotations"]) == ["1669822", "3855001"]  # "6:8" is a span
    q = question("00137901")[1]
    assert evidence_ids(q["annotations"]) == ["3484036", "1837456", "3007398"]  # token order 4:6, 11, 14:16


def test_boxes_are_xyxy_pixels_labelled_by_object_name():
    r = joined("00137872")
    assert r.rejection is None
    assert r.gt_boxes == [[40, 60, 70, 80], [20, 50, 90, 170]]
    assert r.labels == ["camera", "traffic light"]
    assert (r.width, r.height, r.image_path) == (500, 375, "2371269.jpg")
    assert r.answer == "camera" and r.source_id == "00137872" and r.split == "val"


def test_box_past_the_edge_is_kept_for_the_image_stage_to_clip():
    r = joined("00137901")
    assert r.gt_boxes[0] == [470, 300, 530, 390]  # clipped to 500x375 when the image loads


def test_unknown_image_id_is_rejected():
    r = joined("00126851")
    assert r.rejection.reason == "unknown_image_id" and "1159529" in r.rejection.detail


def test_annotated_object_missing_from_graph():
    graphs = {"2371269": {"width": 500, "height": 375, "objects": {}}}
    r = join_graph(parse_question("q.json", 0, question("00137872"), "val", NO_FILTERS), graphs)
    assert r.rejection.reason == "no_evidence_boxes"


def test_filters():
    verify_only = SimpleNamespace(balanced_only=True, structural=["verify"], semantic=None, detailed=None)
    assert parse_question("q", 0, question("00137872"), "val", verify_only).filtered
    assert not parse_question("q", 0, question("00137901"), "val", verify_only).filtered
    unbalanced = ("x", dict(question("00137901")[1], isBalanced=False))
    assert parse_question("q", 0, unbalanced, "val", verify_only).rejection.reason == "not_balanced"


def test_malformed_questions():
    assert parse_question("q", 5, JsonError("bad_json", "x"), "val", NO_FILTERS).rejection.reason == "bad_json"
    r = parse_question("q", 0, ("1", {"question": "q?"}), "val", NO_FILTERS)
    assert r.rejection.reason == "missing_key" and "imageId" in r.rejection.detail
    bad_size = {"2371269": {"width": -1, "height": 375, "objects": {}}}
    r = join_graph(parse_question("q", 0, question("00137872"), "val", NO_FILTERS), bad_size)
    assert r.rejection.reason == "bad_size"


def test_reader_streams_and_joins_in_beam(tmp_path):
    graphs = tmp_path / "val_sceneGraphs.json"
    graphs.write_text(json.dumps(GQA_GRAPH))
    src = SimpleNamespace(path=str(QUESTIONS), scene_graphs=str(graphs), split=None, filters=NO_FILTERS)
    with beam.Pipeline("DirectRunner") as p:
        out = (p | ReadGqa(src)
               | beam.Map(lambda r: (r.source_id, r.rejection.reason if r.rejection else len(r.gt_boxes))))
        assert_that(out, equal_to([("00126851", "unknown_image_id"), ("00137872", 2), ("00137901", 3),
                                   ("00148535", "unknown_image_id"), ("00155957", "unknown_image_id")]))
    assert split_from_filename(str(QUESTIONS)) == "SAMPLE-val"
    assert split_from_filename("/x/testdev_balanced_questions.json") == "testdev"


def test_malformed_questions_and_graphs_are_reasons_not_crashes():
    assert parse_question("q.json", 0, ("1", "text"), "val", NO_FILTERS).rejection.reason == "bad_record"
    blank = {"imageId": "2371269", "question": "  ", "answer": "yes", "annotations": ["not", "a", "dict"],
             "types": "neither"}
    assert parse_question("q.json", 0, ("1", blank), "val", NO_FILTERS).rejection.reason == "empty_question"
    null = {**blank, "question": "Is it?", "answer": None}
    assert parse_question("q.json", 0, ("1", null), "val", NO_FILTERS).rejection.reason == "empty_answer"
    assert slim_graph("g.json", 0, ("1", 5)) == []
    assert slim_graph("g.json", 0, JsonError("bad_encoding", "x")) == []
    graph = {"width": 10, "height": 10, "objects": {"1": {"x": "0", "y": 0, "w": 1, "h": 1},
                                                     "2": {"name": None, "x": 1, "y": 1, "w": 2, "h": 2}}}
    assert slim_graph("g.json", 0, ("7", graph)) == [("7", {"width": 10, "height": 10,
                                                          "objects": {"2": ["", 1, 1, 2, 2]}})]
    assert slim_graph("g.json", 0, ("7", {"objects": ["a list"]}))[0][1]["objects"] == {}
