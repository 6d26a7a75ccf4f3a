"""Device-side preprocessing (transforms.tensor_prep) against the processors it stands in for."""
import io

import numpy as np
import pytest
import torch
from PIL import Image

from groundcot.schemas.codecs import decode_mask, decode_png16
from groundcot.transforms import depth, masks
from groundcot.transforms.models import ResolvedModel
from groundcot.transforms.tensor_prep import TOLERANCE, Prep, decode, from_processor, plan_batches

SIZES = [(640, 480), (480, 640), (320, 240), (1024, 333), (57, 91), (518, 518), (801, 599)]  # (w, h)


def texture(width, height, seed=0):
    """Gradients, fine detail and noise: a flat image would prove nothing."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([xx * 255 // width, yy * 255 // height, (xx * yy) % 256], axis=-1)
    return (base + rng.integers(-40, 40, (height, width, 3))).clip(0, 255).astype(np.uint8)


def png(array):
    out = io.BytesIO()
    Image.fromarray(array).save(out, format="PNG")
    return out.getvalue()


def depth_anything_v2_processor():
    """The processor settings of depth-anything/Depth-Anything-V2-*-hf (preprocessor_config.json)."""
    from transformers import DPTImageProcessor

    return DPTImageProcessor(size={"height": 518, "width": 518}, keep_aspect_ratio=True, ensure_multiple_of=14,
                             resample=3, image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225])


@pytest.mark.parametrize("width,height", SIZES)
def test_depth_anything_preprocessing_equals_the_processor_within_one_level(width, height):
    processor = depth_anything_v2_processor()
    prep = from_processor(processor)
    assert prep == Prep(518, 518, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), "bicubic", True, 14, 1 / 255)
    image = texture(width, height, seed=width)
    theirs = processor(images=Image.fromarray(image), return_tensors="pt")["pixel_values"][0]
    ours = prep([decode(png(image))])[0]
    assert ours.shape == theirs.shape and tuple(ours.shape[1:]) == prep.size(height, width)
    gap = (ours - theirs).abs()
    assert gap.max() <= TOLERANCE  # one 8-bit level at most
    assert (gap > 1e-4).float().mean() < 0.01  # and that on under 1% of the values


@pytest.mark.parametrize("width,height", [(300, 200), (64, 48), (1500, 1100)])
def test_sam2_preprocessing_equals_the_pil_steps_within_one_level(width, height):
    image = texture(width, height, seed=height)
    prep = Prep(1024, 1024, tuple(masks.MEAN.tolist()), tuple(masks.STD.tolist()))
    theirs = torch.from_numpy(masks.preprocess(Image.fromarray(image), 1024))
    ours = prep([decode(png(image))])[0]
    gap = (ours - theirs).abs()
    assert ours.shape == (3, 1024, 1024) and gap.max() <= TOLERANCE
    assert (gap > 1e-4).float().mean() < 0.01


def test_processors_doing_something_else_keep_their_own_steps():
    from transformers import DPTImageProcessor

    assert from_processor(DPTImageProcessor(do_pad=True, size_divisor=32)) is None
    assert from_processor(DPTImageProcessor(resample=1)) is None  # LANCZOS: no torch equivalent
    assert from_processor(DPTImageProcessor(do_normalize=False)) is None
    plain = from_processor(DPTImageProcessor())  # 384x384, bicubic, no aspect kept
    assert plain.size(480, 640) == (384, 384) and plain.mode == "bicubic"


def test_plan_batches_stacks_equal_shapes_fills_batches_first_and_keeps_every_index_once():
    shapes = ["a", "b", "a", "a", "c", "a", "b", "a"]
    batches = plan_batches(shapes, 2)
    assert sorted(i for b in batches for i in b) == list(range(len(shapes)))
    assert all(len({shapes[i] for i in b}) == 1 and len(b) <= 2 for b in batches)
    assert [len(b) for b in batches] == [2, 2, 2, 1, 1]  # a:5 -> 2+2+1, b:2 -> 2, c:1


class CallCountingNet:
    """The loaded network, counting forward passes and their sizes."""

    def __init__(self, net):
        self.net, self.calls = net, []

    def __call__(self, **inputs):
        self.calls.append(len(inputs["pixel_values"]))
        return self.net(**inputs)

    def __getattr__(self, name):
        return getattr(self.net, name)


@pytest.fixture(scope="module")
def depth_folder(tmp_path_factory):
    return depth.build_tiny_random(str(tmp_path_factory.mktemp("depth")))


def test_depth_maps_from_device_preprocessing_match_the_processors(depth_folder):
    images = [png(texture(w, h, seed=i)) for i, (w, h) in enumerate([(64, 48), (64, 48), (40, 90), (333, 250)])]
    maps = {}
    for mode in ("torch", "processor"):
        handler = depth.DepthHandler(ResolvedModel(depth_folder, depth_folder), 4, "cpu", preprocess=mode)
        loaded = handler.load_model()
        assert (loaded.prep is not None) == (mode == "torch")
        maps[mode] = [decode_png16(m) for m, _, _ in loaded.depth_maps(images, 4)]
    for ours, theirs, data in zip(maps["torch"], maps["processor"], images):
        assert ours.shape == theirs.shape == Image.open(io.BytesIO(data)).size[::-1]
        assert np.abs(ours - theirs).max() < 2e-3  # maps are 0..1


def test_mixed_sizes_fill_forward_passes_by_processed_shape(depth_folder):
    handler = depth.DepthHandler(ResolvedModel(depth_folder, depth_folder), batch_size=2, device="cpu")
    loaded = handler.load_model()
    loaded.net = CallCountingNet(loaded.net)
    # tiny model: 56-px target, multiple of 14. 64x48 and 65x49 both process to 42x56, 40x90 to 56x28
    sizes = [(64, 48), (40, 90), (65, 49), (64, 48), (40, 90), (64, 48)]
    assert {loaded.prep.size(h, w) for w, h in sizes} == {(42, 56), (56, 28)}
    assert handler.batch_elements_kwargs()["max_batch_size"] == 2 * depth.BUFFER
    out = loaded.depth_maps([png(texture(w, h, seed=i)) for i, (w, h) in enumerate(sizes)], 2)
    assert all(m is not None for m, _, _ in out)
    assert sorted(loaded.net.calls) == [2, 2, 2]  # four 42x56 and two 56x28: three full passes


@pytest.fixture(scope="module")
def sam2_folder(tmp_path_factory):
    return masks.build_tiny_random(str(tmp_path_factory.mktemp("sam2")))


def test_masks_from_device_preprocessing_match_the_pil_steps(sam2_folder):
    items = [(png(texture(64, 48, 1)), [[5, 5, 30, 30], [30, 10, 60, 40]]),
             (png(texture(40, 90, 2)), [[1, 2, 20, 80]]), (png(texture(333, 250, 3)), [[10, 10, 300, 200]])]
    found = {}
    for mode in ("torch", "processor"):
        handler = masks.Sam2Handler(ResolvedModel(sam2_folder, sam2_folder), 2, "cpu", preprocess=mode)
        loaded = handler.load_model()
        assert loaded.key_parts()[2] == ("tensor_prep" if mode == "torch" else "groundcot")
        found[mode] = loaded.masks(items, 2)
    for (ours, _, _), (theirs, _, _) in zip(found["torch"], found["processor"]):
        assert len(ours) == len(theirs)
        for a, b in zip(ours, theirs):
            assert (decode_mask(a) == decode_mask(b)).mean() > 0.99
            assert a["score"] == pytest.approx(b["score"], abs=1e-3)


def test_a_processor_with_steps_torch_cannot_do_runs_its_own_and_says_so(tmp_path, caplog):
    import json

    folder = depth.build_tiny_random(str(tmp_path / "padded"))
    config = tmp_path / "padded" / "preprocessor_config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "do_pad": True, "size_divisor": 28}))
    loaded = depth.DepthHandler(ResolvedModel(folder, folder), 2, "cpu").load_model()
    assert loaded.prep is None and "its own CPU steps run instead" in caplog.text
    assert loaded.key_parts()[-1] != "tensor_prep"
    (png_map, _, _), = loaded.depth_maps([png(texture(50, 30))], 2)
    assert decode_png16(png_map).shape == (30, 50)
