import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from groundcot.schemas.codecs import decode_png16, encode_png16
from groundcot.schemas.depth import box_depths
from groundcot.schemas.record import Record
from groundcot.transforms.depth import BUFFER, DepthHandler, build_tiny_random, normalise, resolve_depth_model
from groundcot.transforms.models import ResolvedModel, check_bucket, copy_bucket, fingerprint, open_model

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
    assert handler.batch_elements_kwargs()["max_batch_size"] == 16 * BUFFER  # grouped by shape in the handler


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


def identity(model):
    with open_model(model, build_tiny_random) as (_, found):
        return found


def test_model_identity_keeps_the_fallback_apart_and_keys_folders_by_their_files(tmp_path):
    hub = "depth-anything/Depth-Anything-V2-Small-hf"
    tiny = identity(ResolvedModel(hub, fallback=True))
    assert tiny == identity(ResolvedModel(hub, fallback=True))  # built again on another worker: same weights
    assert tiny.startswith(f"tiny_random:{hub}:") and tiny != identity(ResolvedModel("other/model", fallback=True))
    a = build_tiny_random(str(tmp_path / "a"))
    assert tiny.split(":")[-1] == fingerprint(a, contents=True)  # the fallback is keyed by its weights
    local = identity(ResolvedModel(a, a))
    assert local == f"{a}:{fingerprint(a)}"
    with open(f"{a}/config.json", "a") as handle:
        handle.write(" ")
    assert identity(ResolvedModel(a, a)) != local  # a local folder is keyed by its files' names and sizes


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


# --- models found on the worker, not the driver -------------------------------------------

LOAD_ELSEWHERE = """
import hashlib, json, pickle, sys, tempfile
from groundcot.schemas.record import Record
for handler in pickle.load(sys.stdin.buffer):
    loaded = handler.load_model()
    [r] = handler.run_inference([pickle.loads(bytes.fromhex(sys.argv[1]))], loaded)
    print(json.dumps({"identity": loaded.identity, "tmp": tempfile.gettempdir(),
                      "map": hashlib.sha256(r.depth_map).hexdigest()}))
"""


def load_elsewhere(handlers, tmp_path, **env) -> list[dict]:
    """Each handler's ``load_model()`` and one record, in turn, in one other process with its own HOME,
    TMPDIR and HF_HOME (a worker: one interpreter, so its imports are paid once for all the handlers)."""
    import os
    import pickle
    import subprocess
    import sys

    home = tmp_path / "worker"
    for name in ("home", "tmp", "hf"):
        (home / name).mkdir(parents=True, exist_ok=True)
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE", "GROUNDCOT"))}
    clean.update(HOME=str(home / "home"), TMPDIR=str(home / "tmp"), HF_HOME=str(home / "hf"), HF_HUB_OFFLINE="1",
                 **env)
    proc = subprocess.run([sys.executable, "-c", LOAD_ELSEWHERE, pickle.dumps(record(0, 64, 48)).hex()],
                          check=False, input=pickle.dumps(handlers), capture_output=True, env=clean, timeout=300)
    assert proc.returncode == 0, proc.stderr.decode()[-3000:]
    return [json.loads(line) for line in proc.stdout.decode().strip().splitlines()[-len(handlers):]]


def test_a_worker_finds_its_models_itself(tmp_path):
    """In a worker process with its own temp folder and HF cache (offline), which the driver never
    looked into: the fallback is built there with the same weights as here, and a Hub id the driver
    has never seen is found in the worker's HF cache."""
    fallback = DepthHandler(ResolvedModel("no-such-org/depth", fallback=True), device="cpu")
    sha = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "worker" / "hf" / "hub" / "models--groundcot-test--tiny-depth"
    build_tiny_random(str(repo / "snapshots" / sha))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(sha)
    hub = DepthHandler(ResolvedModel("groundcot-test/tiny-depth", "groundcot-test/tiny-depth"), device="cpu")
    assert hub.model.kind == "hub"
    here = fallback.load_model()
    there, from_cache = load_elsewhere([fallback, hub], tmp_path)
    assert there["tmp"] == str(tmp_path / "worker" / "tmp"), "the fallback: not built in the driver's temp folder"
    assert there["identity"] == here.identity, "the fallback: the same weights, so the same cache keys"
    [mine] = fallback.run_inference([record(0, 64, 48)], here)
    assert there["map"] == hashlib.sha256(mine.depth_map).hexdigest(), "the fallback: the same depth map"
    assert not list((tmp_path / "worker" / "tmp").glob("groundcot-tiny-*")), "the fallback: built, loaded, removed"
    assert from_cache["identity"] == f"groundcot-test/tiny-depth@{sha}", "the Hub id: from the worker's HF cache"


def test_a_bucket_model_is_copied_into_the_workers_cache_and_loaded_from_there(tmp_path):
    """A bucket folder (here reached through Beam's local FileSystem) is copied once per worker."""
    assert ResolvedModel("gs://bucket/models/depth", "gs://bucket/models/depth").kind == "bucket"
    bucket = build_tiny_random(str(tmp_path / "bucket" / "depth"))
    folder, found = copy_bucket(bucket, str(tmp_path / "copies"))
    assert found == f"{bucket}:{fingerprint(bucket)}" and fingerprint(folder) == fingerprint(bucket)
    loaded = DepthHandler(ResolvedModel(folder, folder), device="cpu").load_model()
    assert loaded.net.config.model_type == "depth_anything"
    assert copy_bucket(bucket, str(tmp_path / "copies"))[0] == folder  # once per worker
    (tmp_path / "bucket" / "depth" / "extra.txt").write_text("changed")
    assert copy_bucket(bucket, str(tmp_path / "copies"))[0] != folder  # a changed folder is copied anew


def _copy_when_all_are_ready(ready, bucket: str, copies: str, found) -> None:
    ready.wait()  # the four start copying together
    found.put(copy_bucket(bucket, copies)[0])


def test_processes_copying_one_bucket_at_once_leave_one_whole_copy(tmp_path):
    import multiprocessing

    bucket = build_tiny_random(str(tmp_path / "bucket"))
    fork = multiprocessing.get_context("fork")  # four processes, without each importing Beam again
    ready, found = fork.Barrier(4), fork.Queue()
    procs = [fork.Process(target=_copy_when_all_are_ready, args=(ready, bucket, str(tmp_path / "copies"), found))
             for _ in range(4)]
    for proc in procs:
        proc.start()
    folders = {found.get(timeout=120) for _ in procs}
    for proc in procs:
        proc.join(timeout=120)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    assert len(folders) == 1 and list((tmp_path / "copies").iterdir()) == [Path(folders.pop())]  # no temp left
    assert fingerprint(str(next((tmp_path / "copies").iterdir())), contents=True) == fingerprint(bucket, contents=True)


def test_the_driver_accepts_worker_only_models_on_cluster_runners_and_never_falls_back(tmp_path):
    baked = "/opt/models/depth-anything"  # only in the worker image
    assert resolve_depth_model(baked, "none", local=False).kind == "path"
    with pytest.raises(RuntimeError, match="not a folder"):
        resolve_depth_model(baked, "none", local=True)
    hub = resolve_depth_model("no-such-org/no-such-model-groundcot-test", "tiny_random", local=False)
    assert hub.kind == "hub" and not hub.fallback  # the Hub may be reachable from the workers; never a fallback
    with pytest.raises(RuntimeError, match="holds no files"):
        check_bucket(str(tmp_path), "depth")  # what a bucket URL gets: its folder is listed


def test_the_handler_works_through_beams_cross_process_model_proxy(tiny_model, tmp_path):
    """With model sharing, run_inference gets a proxy to another process's model (methods only)."""
    import uuid

    from apache_beam.utils.multi_process_shared import MultiProcessShared

    handler, loaded = tiny_model
    shared = MultiProcessShared(handler.load_model, tag=f"groundcot-test-{uuid.uuid4().hex}",
                                path=str(tmp_path), always_proxy=True)
    proxy = shared.acquire()
    batch = [record(0, 64, 48), record(1, 40, 90, image=b"garbage")]
    out = handler.run_inference(batch, proxy)
    assert out[0].depth_map == handler.run_inference([record(0, 64, 48)], loaded)[0].depth_map
    assert out[1].rejection.reason.startswith("error_")
    shared.release(proxy)


def test_one_model_copy_per_gpu_is_shared_by_the_workers_processes_and_none_on_cpu():
    assert DepthHandler(ResolvedModel("m", "m"), device="cuda").share_model_across_processes()
    assert not DepthHandler(ResolvedModel("m", "m"), device="cpu").share_model_across_processes()
