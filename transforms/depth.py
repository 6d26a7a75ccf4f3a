"""Depth-Anything-V2 depth maps through ``transformers``, batched in a Beam ModelHandler.

The model predicts relative inverse depth; each map is min-max normalised and inverted
so 0 = nearest and 1 = farthest, stored as a lossless 16-bit PNG at the image's size.
Images are resized and normalised on the model's device (``transforms.tensor_prep``) unless
``preprocess="processor"``; a buffer of ``BUFFER`` batches is grouped by processed shape so that
forward passes fill (bench/gpu_prep.py measures how full).
"""
from __future__ import annotations

import io
import logging
import math
from collections.abc import Iterable, Sequence

import numpy as np
from apache_beam.ml.inference.base import ModelHandler
from PIL import Image

from groundcot.schemas.codecs import encode_png16
from groundcot.schemas.record import Record
from groundcot.transforms.cache import StageCache, content_key
from groundcot.transforms.models import ResolvedModel, device, open_model, quiet_transformers, resolve_model
from groundcot.transforms.tensor_prep import Prep, decode, from_processor, plan_batches

log = logging.getLogger("groundcot")
STAGE = "depth"
VERSION = "1"  # of the map's making (normalisation, encoding): a change here misses old cache entries
BUFFER = 16  # batches' worth of images the handler receives at once and groups by processed shape


# --- pure core -------------------------------------------------------------------------

def normalise(inverse_depth: np.ndarray) -> np.ndarray:
    """Min-max normalise a relative inverse-depth map and invert it: 0 = nearest."""
    d = inverse_depth.astype(np.float64)
    lo, hi = float(d.min()), float(d.max())
    if not math.isfinite(lo) or not math.isfinite(hi) or hi - lo < 1e-12:
        return np.zeros_like(d, dtype=np.float32)
    return (1.0 - (d - lo) / (hi - lo)).astype(np.float32)


def checked_png(data: bytes) -> bytes:
    """The bytes of a cached map, once they decode as a PNG (a damaged entry raises: a miss)."""
    Image.open(io.BytesIO(data)).load()
    return data


# --- model (checked on the driver, found and loaded on the worker: see transforms.models) ---

def resolve_depth_model(model: str, fallback: str | None, local: bool = True) -> ResolvedModel:
    return resolve_model(model, fallback, "depth", local)


def build_tiny_random(path: str, seed: int = 0) -> str:
    """Save a tiny random Depth-Anything-V2 (same architecture, ~130k params) to ``path``."""
    import torch

    quiet_transformers()  # before the import: it warns about torchvision on import
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config, DPTImageProcessor

    torch.manual_seed(seed)
    backbone = Dinov2Config(hidden_size=32, num_hidden_layers=4, num_attention_heads=2,
                            intermediate_size=64, patch_size=14, image_size=56,
                            out_features=["stage1", "stage2", "stage3", "stage4"],
                            reshape_hidden_states=False)
    config = DepthAnythingConfig(backbone_config=backbone, reassemble_hidden_size=32,
                                 neck_hidden_sizes=[16, 16, 16, 16], fusion_hidden_size=16,
                                 head_hidden_size=8, depth_estimation_type="relative")
    DepthAnythingForDepthEstimation(config).save_pretrained(path)
    DPTImageProcessor(size={"height": 56, "width": 56}, keep_aspect_ratio=True,
                      ensure_multiple_of=14).save_pretrained(path)
    return path


class LoadedDepth:
    """The loaded model. With model sharing, the handler reaches it through a proxy in another
    process: it calls only methods, with bytes in and bytes out."""

    def __init__(self, processor, net, device: str, identity: str, prep: Prep | None = None):
        self.processor, self.net, self.device, self.identity = processor, net, device, identity
        self.prep = prep  # None: the processor's own (PIL, CPU) steps

    def key_parts(self) -> tuple[str, ...]:
        """What decides the maps besides the image: the model's identity and dtype (and the
        device-side preprocessing, whose maps differ from the processor's by a rounding)."""
        parts = (self.identity, str(self.net.dtype))
        return parts if self.prep is None else (*parts, "tensor_prep")

    def depth_maps(self, images: list[bytes], batch_size: int = 8) -> list[tuple[bytes | None, str, str]]:
        """(16-bit PNG, "", "") per image, or (None, reason, detail) for one that failed.

        Images are grouped by processed shape (read from their headers) and decoded one batch
        at a time, so a large buffer of images costs one batch of pixels in memory.
        """
        results: list = [None] * len(images)
        sizer = self.prep or from_processor(self.processor)  # None: group by image size only
        items, shapes = [], []  # (index, (height, width), bytes), processed shape
        for i, data in enumerate(images):
            try:
                width, height = Image.open(io.BytesIO(data)).size  # the header only
            except Exception as err:  # noqa: BLE001 - one bad image must not sink the batch
                results[i] = failure(err)
                continue
            items.append((i, (height, width), data))
            shapes.append(sizer.size(height, width) if sizer else (height, width))
        for batch in plan_batches(shapes, batch_size):  # same-shape images run as one forward pass
            group = [items[j] for j in batch]
            try:
                self._predict(group, results)
            except Exception:  # noqa: BLE001 - retry one by one to isolate the culprit
                for item in group:
                    try:
                        self._predict([item], results)
                    except Exception as err:  # noqa: BLE001
                        results[item[0]] = failure(err)
        return results

    def _predict(self, group, results: list) -> None:
        import torch

        if self.prep is not None:  # decoded here, resized and normalised on the device
            stacked = self.prep([decode(data) for *_, data in group], self.device, self.net.dtype)
        else:
            pixels = [self.processor(images=Image.open(io.BytesIO(data)).convert("RGB"), return_tensors="pt")
                      ["pixel_values"][0] for *_, data in group]
            stacked = torch.stack(pixels).to(self.device, dtype=self.net.dtype)
        with torch.inference_mode():
            out = self.net(pixel_values=stacked)
        out.predicted_depth = out.predicted_depth.float()
        maps = self.processor.post_process_depth_estimation(out, target_sizes=[size for _, size, _ in group])
        for (i, _, _), m in zip(group, maps):
            results[i] = (encode_png16(normalise(m["predicted_depth"].cpu().numpy())), "", "")


def failure(err: Exception) -> tuple[None, str, str]:
    return None, f"error_{type(err).__name__}", str(err)[:300]


# --- Beam model handler ----------------------------------------------------------------

class DepthHandler(ModelHandler):
    """Records in, records out with ``depth_map`` set; rejected records pass through.

    The model is found and loaded on the worker (``load_model``); on a GPU one copy is shared by
    the worker's processes. With a ``cache`` root, maps are looked up by model and image bytes
    first: only misses reach the model, and each distinct image of a batch runs once.
    """

    def __init__(self, model: ResolvedModel, batch_size: int = 8, device: str = "auto", cache: str | None = None,
                 preprocess: str = "torch"):
        super().__init__()
        self.model, self.batch_size, self.device, self.preprocess = model, batch_size, device, preprocess
        self.cache = StageCache(cache, STAGE, ".png", encode=bytes, decode=checked_png)

    def load_model(self) -> LoadedDepth:
        import torch
        from transformers import AutoImageProcessor, AutoModelForDepthEstimation

        quiet_transformers()
        where = device(self.device)
        dtype = torch.float16 if where == "cuda" else torch.float32
        with open_model(self.model, build_tiny_random) as (folder, identity):
            processor = AutoImageProcessor.from_pretrained(folder)
            net = AutoModelForDepthEstimation.from_pretrained(folder, dtype=dtype)
        prep = from_processor(processor) if self.preprocess == "torch" else None
        if self.preprocess == "torch" and prep is None:
            log.warning("depth: the model's processor does steps with no torch equivalent here (padding, "
                        "cropping or another resample mode): its own CPU steps run instead")
        return LoadedDepth(processor, net.to(where).eval(), where, identity, prep)

    def share_model_across_processes(self) -> bool:
        return device(self.device) == "cuda"  # one copy per GPU; on CPU each process keeps its own

    def batch_elements_kwargs(self):
        return {"min_batch_size": 1, "max_batch_size": self.batch_size * BUFFER}

    def run_inference(self, batch: Sequence[Record], model: LoadedDepth, inference_args=None) -> Iterable[Record]:
        parts = model.key_parts()
        todo = [(content_key(STAGE, VERSION, *parts, r.image or b""), r) for r in batch if r.rejection is None]
        misses = self.cache.lookup(todo, lambda r, png: setattr(r, "depth_map", png))
        keys = list(misses)
        done = []
        for key, (png, reason, detail) in zip(keys, model.depth_maps([misses[k][0].image for k in keys], self.batch_size)):
            for record in misses[key]:
                if png is None:
                    record.reject(STAGE, reason, detail)
                else:
                    record.depth_map = png
            if png is not None:
                done.append((key, png))
        self.cache.save(done)
        return batch

    def get_metrics_namespace(self) -> str:
        return "groundcot.depth"
