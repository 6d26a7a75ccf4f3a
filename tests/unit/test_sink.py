import json
import math

from groundcot.schemas.record import Record
from groundcot.transforms.sink import to_rejected


def test_a_rejected_line_is_standard_json_even_with_non_finite_boxes():
    record = Record(id="r1", source="viscot", source_id="a.jsonl@0",
                    gt_boxes=[[math.nan, 1.0, math.inf, 4.0], [1.0, 2.0, 3.0, 4.0]])
    record.reject("read", "box_not_finite", "a.jsonl@0: box 0 is not finite")
    line = to_rejected(record)
    assert "NaN" not in line and "Infinity" not in line
    row = json.loads(line, parse_constant=lambda name: (_ for _ in ()).throw(ValueError(name)))
    assert row["gt_boxes"] == [[None, 1.0, None, 4.0], [1.0, 2.0, 3.0, 4.0]] and row["reason"] == "box_not_finite"
