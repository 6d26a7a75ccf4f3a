"""Depth-Anything-V2 depth maps through ``transformers``, batched in a Beam ModelHandler.

The model predicts relative inverse depth; each map is min-max normalised and inverted
so 0 = nearest and 1 = farthest, stored as a lossless 16-bit PNG at the image's size.
"""
from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
from apache_beam.ml.inference.base import ModelHandler
from PIL import Image

from groundcot.schemas.codecs import encode_png16
from groundcot.schemas.record import Record
from groundcot.transforms.cache import StageCache, content_key
from groundcot.transforms.models import ResolvedModel, device, quiet_transformers, resolve_model

STAGE = "depth"
VERSION = "1"  # of the map's making (normalisation, encoding): a change here misses old cache entries


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


# --- model (driver side: see transforms.models) -----------------------------------------

def resolve_depth_model(model: str, fallback: str | None) -> ResolvedModel:
    return resolve_model(model, fallback, build_tiny_random, "depth")


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


# --- Beam model handler ----------------------------------------------------------------

@dataclass
class LoadedDepth:
    """What ``load_model`` returns (Beam's model sharing needs a weak-referenceable object)."""

    processor: object
    net: object
    device: str


class DepthHandler(ModelHandler):
    """Records in, records out with ``depth_map`` set; rejected records pass through.

    With a ``cache`` root, maps are looked up by model and image bytes first: only misses
    reach the model, and each distinct image of a batch runs once.
    """

    def __init__(self, model: ResolvedModel, batch_size: int = 8, device: str = "auto", cache: str | None = None):
        super().__init__()
        self.model, self.batch_size, self.device = model, batch_size, device
        self.identity = model.identity()  # here, on the driver, where a fallback's files are
        self.cache = StageCache(cache, STAGE, ".png", encode=bytes, decode=checked_png)

    def load_model(self):
        import torch
        from transformers import AutoImageProcessor, AutoModelForDepthEstimation

        quiet_transformers()
        where = device(self.device)
        kwargs = {"local_files_only": self.model.local_files_only}
        processor = AutoImageProcessor.from_pretrained(self.model.load_from, **kwargs)
        dtype = torch.float16 if where == "cuda" else torch.float32
        net = AutoModelForDepthEstimation.from_pretrained(self.model.load_from, dtype=dtype, **kwargs)
        return LoadedDepth(processor, net.to(where).eval(), where)

    def batch_elements_kwargs(self):
        return {"min_batch_size": 1, "max_batch_size": self.batch_size}

    def cache_key(self, record: Record, model: LoadedDepth) -> str:
        return content_key(STAGE, VERSION, self.identity, str(model.net.dtype), record.image or b"")

    def run_inference(self, batch: Sequence[Record], model: LoadedDepth, inference_args=None) -> Iterable[Record]:
        todo = [(self.cache_key(r, model), r) for r in batch if r.rejection is None]
        misses = self.cache.lookup(todo, lambda r, png: setattr(r, "depth_map", png))
        groups: dict[tuple, list[tuple[str, list[Record], Image.Image, object]]] = {}
        for key, same in misses.items():
            try:
                image = Image.open(io.BytesIO(same[0].image)).convert("RGB")
                pixels = model.processor(images=image, return_tensors="pt")["pixel_values"][0]
            except Exception as err:  # noqa: BLE001 - one bad image must not sink the batch
                for record in same:
                    record.reject(STAGE, f"error_{type(err).__name__}", str(err)[:300])
                continue
            groups.setdefault(tuple(pixels.shape), []).append((key, same, image, pixels))
        for group in groups.values():  # same-shape images run as one forward pass
            try:
                self._predict(group, model)
            except Exception:  # noqa: BLE001 - retry one by one to isolate the culprit
                for item in group:
                    try:
                        self._predict([item], model)
                    except Exception as err:  # noqa: BLE001
                        for record in item[1]:
                            record.reject(STAGE, f"error_{type(err).__name__}", str(err)[:300])
        return batch

    def _predict(self, group, model: LoadedDepth) -> None:
        import torch

        stacked = torch.stack([p for *_, p in group]).to(model.device, dtype=model.net.dtype)
        with torch.inference_mode():
            out = model.net(pixel_values=stacked)
        out.predicted_depth = out.predicted_depth.float()
        sizes = [(image.height, image.width) for _, _, image, _ in group]
        maps = model.processor.post_process_depth_estimation(out, target_sizes=sizes)
        done = []
        for (key, same, _, _), m in zip(group, maps):
            png = encode_png16(normalise(m["predicted_depth"].cpu().numpy()))
            for record in same:
                record.depth_map = png
            done.append((key, png))
        self.cache.save(done)

    def get_metrics_namespace(self) -> str:
        return "groundcot.depth"
