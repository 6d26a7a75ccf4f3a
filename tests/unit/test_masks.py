
import numpy as np
import pytest
from PIL import Image

from groundcot.schemas.codecs import decode_mask, encode_mask
from groundcot.schemas.record import Record
from groundcot.transforms.masks import (
    Sam2Handler,
    build_tiny_random,
    preprocess,
    scale_boxes,
    torchvision_available,
    upsample,
)
from groundcot.transforms.models import ResolvedModel

from support import CountingNet, png_bytes


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = build_tiny_random(str(tmp_path_factory.mktemp("sam2")))
    handler = Sam2Handler(ResolvedModel(path, path), batch_size=2, device="cpu")
    return handler, handler.load_model()


def record(i, w, h, boxes):
    return Record(id=f"r{i}", source="viscot", source_id=str(i), dataset="toy", split="train", question="q",
                  answer="a", image_path="x.png", width=w, height=h, gt_boxes=boxes,
                  image=png_bytes(w, h, (40 * i, 120, 90)))


def test_masks_from_the_tiny_model_have_the_image_shape_and_round_trip(tiny):
    handler, loaded = tiny
    batch = [record(0, 64, 48, [[5, 5, 30, 30], [30, 10, 60, 40]]), record(1, 40, 90, [[1, 2, 20, 80]]),
             record(2, 50, 50, [[0, 0, 10, 10]]).reject("image", "missing_image")]
    out = list(handler.run_inference(batch, loaded))
    assert out == batch and out[2].masks is None
    assert [len(r.masks) for r in out[:2]] == [2, 1]  # one per GT box, padding dropped
    for r in out[:2]:
        for entry in r.masks:
            mask = decode_mask(entry)
            assert mask.shape == (r.height, r.width)
            assert encode_mask(mask, entry["score"]) == entry  # RLE round-trips
            assert entry["area"] == int(mask.sum())


def test_rle_box_and_area_on_a_known_mask():
    mask = np.zeros((20, 30), dtype=bool)
    mask[5:9, 10:25] = True  # rows 5-8, columns 10-24
    entry = encode_mask(mask, 0.9)
    assert entry["box"] == [10.0, 5.0, 25.0, 9.0] and entry["area"] == 60
    assert entry["size"] == [20, 30] and np.array_equal(decode_mask(entry), mask)
    empty = encode_mask(np.zeros((4, 4), dtype=bool), 0.1)
    assert empty["area"] == 0


def test_own_preprocessing_matches_the_processor_steps():
    image = Image.new("RGB", (64, 32), (255, 0, 128))
    x = preprocess(image, 16)
    assert x.shape == (3, 16, 16)
    assert x[0, 0, 0] == pytest.approx((1.0 - 0.485) / 0.229, abs=1e-5)
    assert x[1, 5, 5] == pytest.approx((0.0 - 0.456) / 0.224, abs=1e-5)
    assert scale_boxes([[16, 8, 32, 16]], 64, 32, 1024) == [[256.0, 256.0, 512.0, 512.0]]
    logits = np.full((1, 4, 4), -1.0, dtype=np.float32)
    logits[0, :2, :2] = 1.0
    up = upsample(logits, 8, 8)
    assert up.shape == (1, 8, 8) and up[0, :3, :3].all() and not up[0, 5:, 5:].any()


@pytest.mark.skipif(not torchvision_available(), reason="needs torchvision (e.g. on a GPU machine)")
def test_own_steps_match_sam2_processor(tmp_path):
    import torch
    from transformers import Sam2ImageProcessor, Sam2Processor

    processor = Sam2Processor(image_processor=Sam2ImageProcessor())
    yy, xx = np.mgrid[0:200, 0:300]
    texture = np.stack([xx * 255 // 299, yy * 255 // 199, (xx * yy) % 256], axis=-1).astype(np.uint8)
    image = Image.fromarray(texture)  # gradients and fine detail: a flat image would prove nothing
    inputs = processor(images=[image], input_boxes=[[[10, 20, 150, 180]]], return_tensors="pt")
    ours = torch.from_numpy(preprocess(image, 1024))
    assert torch.allclose(inputs["pixel_values"][0], ours, atol=0.05)
    assert torch.allclose(inputs["input_boxes"][0], torch.tensor(scale_boxes([[10, 20, 150, 180]], 300, 200, 1024)))
    logits = torch.randn(1, 1, 256, 256)
    theirs = processor.post_process_masks([logits], [(200, 300)])[0][:, 0].numpy()
    assert (theirs == upsample(logits[:, 0], 200, 300)).mean() > 0.999


# --- the cache: only misses reach the model ---------------------------------------------

def handler_and_model(path, cache):
    handler = Sam2Handler(ResolvedModel(path, path), batch_size=2, device="cpu", cache=cache)
    loaded = handler.load_model()
    loaded.net = CountingNet(loaded.net)
    return handler, loaded


def boxed():
    return [record(0, 64, 48, [[5, 5, 30, 30], [30, 10, 60, 40]]), record(1, 40, 90, [[1, 2, 20, 80]]),
            record(2, 50, 50, [[0, 0, 10, 10]])]


def test_a_second_run_with_the_same_cache_runs_the_model_zero_times(tiny, tmp_path):
    path = tiny[0].model.load_from
    handler, loaded = handler_and_model(path, str(tmp_path))
    computed = handler.run_inference(boxed(), loaded)
    assert loaded.net.images == 3
    again, reloaded = handler_and_model(path, str(tmp_path))
    cached = again.run_inference(boxed(), reloaded)
    assert reloaded.net.images == 0
    uncached = Sam2Handler(ResolvedModel(path, path), batch_size=2, device="cpu").run_inference(boxed(), tiny[1])
    assert [r.masks for r in cached] == [r.masks for r in computed] == [r.masks for r in uncached]
    assert all(r.masks for r in cached)


def test_other_boxes_on_a_cached_image_miss(tiny, tmp_path):
    handler, loaded = handler_and_model(tiny[0].model.load_from, str(tmp_path))
    handler.run_inference(boxed(), loaded)
    moved = boxed()
    moved[1].gt_boxes = [[2, 2, 20, 80]]
    out = handler.run_inference(moved + [record(3, 30, 30, [[0, 0, 9, 9]])], loaded)
    assert loaded.net.images == 3 + 2 and all(r.masks for r in out)  # the moved box and the new image


def test_a_changed_model_misses(tiny, tmp_path):
    handler, loaded = handler_and_model(tiny[0].model.load_from, str(tmp_path / "cache"))
    handler.run_inference(boxed(), loaded)
    other = build_tiny_random(str(tmp_path / "other"), seed=1)  # another model (a local path is its id)
    second, reloaded = handler_and_model(other, str(tmp_path / "cache"))
    second.run_inference(boxed(), reloaded)
    assert reloaded.net.images == 3


# --- one model copy per GPU, shared across a worker's processes ----------------------------

def test_the_handlers_work_through_beams_cross_process_model_proxy(tiny, tmp_path):
    """What RunInference gives run_inference when the model is shared: a proxy to another
    process's object, reachable through methods only (arguments and results pickled)."""
    import uuid

    from apache_beam.utils.multi_process_shared import MultiProcessShared

    handler, loaded = tiny
    shared = MultiProcessShared(handler.load_model, tag=f"groundcot-test-{uuid.uuid4().hex}",
                                path=str(tmp_path), always_proxy=True)
    proxy = shared.acquire()
    out = handler.run_inference(boxed(), proxy)
    assert [r.masks for r in out] == [r.masks for r in handler.run_inference(boxed(), loaded)]
    assert all(r.masks for r in out)
    shared.release(proxy)


def test_the_model_is_shared_only_on_a_gpu():
    assert Sam2Handler(ResolvedModel("m", "m"), device="cuda").share_model_across_processes()
    assert not Sam2Handler(ResolvedModel("m", "m"), device="cpu").share_model_across_processes()
