import io

import numpy as np
import pytest
from PIL import Image

from groundcot.schemas.codecs import decode_png16, encode_png16
from groundcot.schemas.depth import box_depths
from groundcot.schemas.record import Record
from groundcot.transforms.depth import DepthHandler, build_tiny_random, normalise, resolve_depth_model
from groundcot.transforms.models import ResolvedModel

from support import CountingNet, png_bytes


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("depth"))
    build_tiny_random(path)
    handler = DepthHandler(ResolvedModel(path, path), batch_size=4, device="cpu")
    return handler, handler.load_model()


def record(i, width, height, image=None):
    return Record(id=f"r{i}", source="viscot", source_id=str(i), dataset="toy", split="train", question="q",
                  answer="a", image_path="x.png", width=width, height=height, gt_boxes=[[0, 0, 5, 5]],
                  image=image if image is not None else png_bytes(width, height, (i * 40, 90, 200)))


def test_normalise_inverts_and_scales():
    inverse = np.array([[10.0, 5.0], [0.0, 2.5]])  # large inverse depth = near
    d = normalise(inverse)
    assert d[0, 0] == 0.0 and d[1, 0] == 1.0
    assert d[0, 1] == pytest.approx(0.5)
    assert normalise(np.full((3, 3), 7.0)).max() == 0.0  # flat map: no division by zero


def test_png16_is_lossless_to_16_bits():
    rng = np.random.default_rng(0)
    d = rng.random((37, 53)).astype(np.float32)
    data = encode_png16(d)
    assert Image.open(io.BytesIO(data)).mode == "I;16"
    assert np.abs(decode_png16(data) - d).max() <= 0.5 / 65535 + 1e-7


def test_box_depths_is_the_mean_inside():
    d = np.zeros((10, 20))
    d[:, 10:] = 1.0
    assert box_depths(d, [[0, 0, 0.5, 1], [0.5, 0, 1, 1], [0.25, 0, 0.75, 1], [0.999, 0.999, 1, 1]]) == [0.0, 1.0, 0.5, 1.0]


def test_tiny_model_depth_maps_through_the_handler(tiny_model):
    handler, loaded = tiny_model
    batch = [record(0, 64, 48), record(1, 64, 48), record(2, 40, 90)]
    batch.append(record(3, 30, 30).reject("image", "missing_image"))
    out = list(handler.run_inference(batch, loaded))
    assert out == batch  # order kept, rejected record passed through
    for r in out[:3]:
        depth = decode_png16(r.depth_map)
        assert depth.shape == (r.height, r.width)
        assert depth.min() == pytest.approx(0.0) and depth.max() == pytest.approx(1.0)
    assert out[3].depth_map is None


def test_one_bad_image_does_not_sink_the_batch(tiny_model):
    handler, loaded = tiny_model
    batch = [record(0, 64, 48), record(1, 64, 48, image=b"garbage")]
    handler.run_inference(batch, loaded)
    assert batch[0].depth_map is not None and batch[0].rejection is None
    assert batch[1].rejection.stage == "depth" and batch[1].rejection.reason.startswith("error_")


def test_handler_batches_by_config():
    handler = DepthHandler(ResolvedModel("m", "m"), batch_size=16)
    assert handler.batch_elements_kwargs()["max_batch_size"] == 16


def test_resolve_model_local_path_and_no_silent_fallback(tmp_path):
    assert resolve_depth_model(str(tmp_path), "none").load_from == str(tmp_path)
    with pytest.raises(RuntimeError, match="depth model cannot be loaded"):
        resolve_depth_model("no-such-org/no-such-model-groundcot-test", "none")


def test_resolve_model_demo_fallback_is_recorded():
    chosen = resolve_depth_model("no-such-org/no-such-model-groundcot-test", "tiny_random")
    assert chosen.fallback and "no-such-model" in chosen.reason
    handler = DepthHandler(chosen, device="cpu")
    assert handler.load_model().net.config.model_type == "depth_anything"


# --- the cache: only misses reach the model ---------------------------------------------

def counted(handler):
    loaded = handler.load_model()
    loaded.net = CountingNet(loaded.net)
    return loaded


def images(n, offset=0):
    return [png_bytes(64, 48, (30 * (i + offset), 90, 200)) for i in range(n)]


def fresh(data):
    return [record(i, 64, 48, image=d) for i, d in enumerate(data)]


def test_a_second_run_with_the_same_cache_runs_the_model_zero_times(tiny_model, tmp_path):
    handler, _ = tiny_model
    path = handler.model.load_from
    first = DepthHandler(ResolvedModel(path, path), batch_size=4, device="cpu", cache=str(tmp_path))
    loaded = counted(first)
    computed = first.run_inference(fresh(images(3)), loaded)
    assert loaded.net.images == 3
    again = DepthHandler(ResolvedModel(path, path), batch_size=4, device="cpu", cache=str(tmp_path))
    reloaded = counted(again)
    cached = again.run_inference(fresh(images(3)), reloaded)
    assert reloaded.net.images == 0
    uncached = DepthHandler(ResolvedModel(path, path), device="cpu").run_inference(fresh(images(3)), loaded)
    assert [r.depth_map for r in cached] == [r.depth_map for r in computed] == [r.depth_map for r in uncached]
    assert len(list(tmp_path.glob("depth/*/*.png"))) == 3  # binary PNGs, one per image


def test_an_extended_run_computes_only_the_new_images(tiny_model, tmp_path):
    path = tiny_model[0].model.load_from
    handler = DepthHandler(ResolvedModel(path, path), batch_size=8, device="cpu", cache=str(tmp_path))
    loaded = counted(handler)
    handler.run_inference(fresh(images(2)), loaded)
    assert loaded.net.images == 2
    out = handler.run_inference(fresh(images(2) + images(3, offset=2)), loaded)
    assert loaded.net.images == 2 + 3 and all(r.depth_map for r in out)


def test_the_same_image_twice_in_a_batch_runs_once(tiny_model, tmp_path):
    path = tiny_model[0].model.load_from
    handler = DepthHandler(ResolvedModel(path, path), device="cpu", cache=str(tmp_path))
    loaded = counted(handler)
    out = handler.run_inference(fresh(images(2) + images(1)), loaded)
    assert loaded.net.images == 2 and out[0].depth_map == out[2].depth_map


def test_a_changed_model_misses(tiny_model, tmp_path):
    path = tiny_model[0].model.load_from
    first = DepthHandler(ResolvedModel(path, path), device="cpu", cache=str(tmp_path / "cache"))
    first.run_inference(fresh(images(2)), counted(first))
    other = build_tiny_random(str(tmp_path / "other"), seed=1)  # another model (a local path is its id)
    second = DepthHandler(ResolvedModel(other, other), device="cpu", cache=str(tmp_path / "cache"))
    loaded = counted(second)
    second.run_inference(fresh(images(2)), loaded)
    assert loaded.net.images == 2


def test_model_identity_names_the_revision_and_keeps_the_fallback_apart(tmp_path):
    hub = "depth-anything/Depth-Anything-V2-Small-hf"
    assert ResolvedModel(hub, hub, revision="abc").identity() == f"{hub}@abc"
    assert ResolvedModel(hub, hub, revision="abc").identity() != ResolvedModel(hub, hub, revision="def").identity()
    a, b = build_tiny_random(str(tmp_path / "a")), build_tiny_random(str(tmp_path / "b"))
    tiny_a = ResolvedModel(hub, a, fallback=True).identity()
    assert tiny_a == ResolvedModel(hub, b, fallback=True).identity()  # same seed, other temp folder
    assert tiny_a.startswith("tiny_random:") and tiny_a != ResolvedModel(hub, hub, revision="abc").identity()
    assert tiny_a != ResolvedModel(hub, build_tiny_random(str(tmp_path / "c"), seed=1), fallback=True).identity()
    local = ResolvedModel(a, a).identity()
    with open(f"{a}/config.json", "a") as handle:
        handle.write(" ")
    assert ResolvedModel(a, a).identity() != local  # a local folder is keyed by its files' names and sizes


def test_a_damaged_entry_is_recomputed_and_rewritten(tiny_model, tmp_path):
    path = tiny_model[0].model.load_from
    handler = DepthHandler(ResolvedModel(path, path), device="cpu", cache=str(tmp_path))
    loaded = counted(handler)
    good = handler.run_inference(fresh(images(1)), loaded)[0].depth_map
    [entry] = tmp_path.glob("depth/*/*.png")
    entry.write_bytes(b"\x89PNG truncated")
    assert handler.run_inference(fresh(images(1)), loaded)[0].depth_map == good
    assert loaded.net.images == 2 and entry.read_bytes() == good


def test_the_shared_cache_keeps_json_and_blobs_and_is_off_without_a_root(tmp_path):
    from groundcot.transforms.cache import Cache, content_key, teacher_cache_root

    cache = Cache(str(tmp_path)).sub("teacher")  # what the teacher gets: the teacher client's get/put by key
    key = content_key("model", b"messages")
    assert cache.get(key) is None
    cache.put(key, {"content": "a reply"})
    assert cache.get(key) == {"content": "a reply"} and cache.root == f"{tmp_path}/teacher"
    assert (tmp_path / "teacher" / key[:2] / f"{key}.json").exists()
    assert not list(tmp_path.rglob("*.tmp-*"))  # written under a temporary name, then renamed
    cache.put_bytes(key, b"\x00\x01", ".png")
    assert cache.get_bytes(key, ".png") == b"\x00\x01"
    off = Cache(None)
    off.put(key, {"content": "x"})
    assert off.root is None and off.get(key) is None
    assert teacher_cache_root(str(tmp_path), None) == f"{tmp_path}/teacher"
