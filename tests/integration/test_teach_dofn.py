"""The teacher's Beam step itself: a record whose request cannot be made is rejected with the
error's type and the other records go on (the request is prepared on the DoFn's event loop)."""
import io

import apache_beam as beam
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.testing.util import assert_that, equal_to
from PIL import Image

from groundcot.schemas.record import Record
from groundcot.transforms.expand import expand_record
from groundcot.transforms.teach.api import OpenAIConfig
from groundcot.transforms.teach.dofn import Teach

from support.fake_openai import FakeOpenAI


def record(i: int, image: bytes) -> Record:
    r = Record(id=f"r{i}", source="t", source_id=str(i), dataset="t", split="train", question="What is it?",
               answer="red", image_path="x.jpg", width=64, height=48, gt_boxes=[[10, 10, 30, 30]], image=image)
    return expand_record(r, seed=i)


def test_a_record_whose_request_fails_is_rejected_and_the_rest_go_on():
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 30, 30)).save(buffer, format="JPEG")
    records = [record(0, buffer.getvalue()), record(1, b"not an image"), record(2, buffer.getvalue())]
    with FakeOpenAI() as fake:
        cfg = OpenAIConfig(kind="openai", limits={"max_concurrency": 2},
                           connection={"base_url": fake.base_url, "model": "fake", "api_key_env": None})
        p = beam.Pipeline(runner=FnApiRunner())
        fates = (p | beam.Create(records, reshuffle=False)
                 | beam.ParDo(Teach(cfg, {"min_hiou": 0.5, "box_tol": 0.01, "depth_tol": 0.1}, "dofn"))
                 | beam.Map(lambda r: (r.id, r.rejection.reason, r.rejection.detail[:50]) if r.rejection
                            else (r.id, "ok", "")))
        assert_that(fates, equal_to([("r0", "ok", ""), ("r2", "ok", ""), ("r1", "error_UnidentifiedImageError",
                                                                          "UnidentifiedImageError: cannot identify image file")]))
        p.run().wait_until_finish()
