"""SAM2 box-prompted masks through ``transformers`` (``Sam2Model``), batched, GPU when present.

One mask per GT box, stored as COCO RLE (pycocotools) with its tight box and area.
``Sam2Processor`` needs torchvision. Where torchvision is missing (CPU machines here),
the same steps are done here: resize to the model's square input, rescale, ImageNet
normalise, scale the boxes to that frame, then upsample the low-resolution mask logits
bilinearly to the image size and threshold at 0. By default (``preprocess="torch"``) the resize
and normalisation run on the model's device (``transforms.tensor_prep``), as does the upsampling.
"""
from __future__ import annotations

import io
import json
from collections.abc import Iterable, Sequence

import numpy as np
from apache_beam.ml.inference.base import ModelHandler
from PIL import Image

from groundcot.schemas.codecs import encode_mask
from groundcot.schemas.record import Record
from groundcot.transforms.cache import StageCache, content_key
from groundcot.transforms.models import ResolvedModel, device, open_model, quiet_transformers, resolve_model
from groundcot.transforms.tensor_prep import Prep, decode

STAGE = "masks"
VERSION = "1"  # of the masks' making (resize, upsampling, encoding): a change here misses old cache entries
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)  # ImageNet, as Sam2ImageProcessor
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


# --- pure core ---------------------------------------------------------------------------

def preprocess(image: Image.Image, size: int) -> np.ndarray:
    """(3, size, size) float32: bilinear resize to a square, rescale, normalise."""
    resized = np.asarray(image.convert("RGB").resize((size, size), Image.Resampling.BILINEAR), dtype=np.float32)
    return ((resized / 255.0 - MEAN) / STD).transpose(2, 0, 1)


def scale_boxes(boxes: Sequence[Sequence[float]], width: int, height: int, size: int) -> list[list[float]]:
    """Pixel boxes of the image -> boxes in the model's square input frame."""
    sx, sy = size / width, size / height
    return [[x1 * sx, y1 * sy, x2 * sx, y2 * sy] for x1, y1, x2, y2 in boxes]


def upsample(logits, height: int, width: int) -> np.ndarray:
    """Low-resolution mask logits (k, h, w) -> boolean masks (k, height, width)."""
    import torch
    import torch.nn.functional as F

    up = F.interpolate(torch.as_tensor(logits)[None].float(), (height, width), mode="bilinear", align_corners=False)
    return (up[0] > 0).cpu().numpy()


def build_tiny_random(path: str, seed: int = 0) -> str:
    """Save a tiny random SAM2 (same architecture, ~125k params) to ``path``."""
    import torch

    quiet_transformers()
    from transformers import Sam2Config, Sam2Model
    from transformers.models.sam2.configuration_sam2 import (
        Sam2HieraDetConfig,
        Sam2MaskDecoderConfig,
        Sam2PromptEncoderConfig,
        Sam2VisionConfig,
    )

    torch.manual_seed(seed)
    size = 256  # not SAM2's 1024: the same steps on 1/16 of the pixels (the demo's masks are noise anyway)
    backbone = Sam2HieraDetConfig(hidden_size=8, num_attention_heads=1, blocks_per_stage=[1, 1, 2, 1],
                                  embed_dim_per_stage=[8, 16, 32, 64], num_attention_heads_per_stage=[1, 1, 1, 1],
                                  window_size_per_stage=[8, 4, 14, 7], global_attention_blocks=[3],
                                  image_size=[size, size])
    features = [[size // 4 // 2**i] * 2 for i in range(3)]  # the backbone's three feature maps
    config = Sam2Config(
        vision_config=Sam2VisionConfig(backbone_config=backbone, backbone_channel_list=[64, 32, 16, 8],
                                       fpn_hidden_size=32, backbone_feature_sizes=features),
        prompt_encoder_config=Sam2PromptEncoderConfig(hidden_size=32, image_size=size),
        mask_decoder_config=Sam2MaskDecoderConfig(hidden_size=32, mlp_dim=64, num_attention_heads=2,
                                                  iou_head_hidden_dim=32))
    Sam2Model(config).save_pretrained(path)
    return path


def resolve_sam2_model(model: str, fallback: str | None, local: bool = True) -> ResolvedModel:
    return resolve_model(model, fallback, "masks", local)


# --- Beam model handler ------------------------------------------------------------------

def torchvision_available() -> bool:
    try:
        import torchvision  # noqa: F401
        return True
    except Exception:  # noqa: BLE001 - a broken install counts as missing
        return False


def encode_entries(masks: list[dict]) -> bytes:
    return json.dumps(masks).encode()


def decode_entries(data: bytes) -> list[dict]:
    return json.loads(data)


class LoadedSam2:
    """The loaded model. With model sharing, the handler reaches it through a proxy in another
    process: it calls only methods, with bytes and boxes in and mask entries out."""

    def __init__(self, net, processor, size: int, device: str, identity: str, prep: Prep | None = None):
        self.net, self.processor, self.size, self.device, self.identity = net, processor, size, device, identity
        self.prep = prep  # set: resize and normalise on the device; None: the processor or PIL steps

    def key_parts(self) -> tuple[str, str, str]:
        """What decides the masks besides image and boxes: identity, dtype and whose steps."""
        # the three differ by a few pixels
        steps = "tensor_prep" if self.prep else "processor" if self.processor is not None else "groundcot"
        return self.identity, str(self.net.dtype), steps

    def masks(self, items: list[tuple[bytes, list]], batch_size: int) -> list[tuple[list | None, str, str]]:
        """(mask entries, "", "") per (image, boxes), or (None, reason, detail) for one that failed."""
        results: list = [None] * len(items)
        for start in range(0, len(items), batch_size):
            group = list(range(start, min(start + batch_size, len(items))))
            try:
                self._segment(group, items, results)
            except Exception:  # noqa: BLE001 - isolate the item that fails
                for i in group:
                    try:
                        self._segment([i], items, results)
                    except Exception as err:  # noqa: BLE001
                        results[i] = (None, f"error_{type(err).__name__}", str(err)[:300])
        return results

    def _segment(self, group: list[int], items: list[tuple[bytes, list]], results: list) -> None:
        import torch

        boxes_of = [items[i][1] for i in group]
        most = max(len(b) for b in boxes_of)
        # pad every image's boxes to the same count; padded masks are dropped
        padded = [b + [[0.0, 0.0, 1.0, 1.0]] * (most - len(b)) for b in boxes_of]
        if self.prep is not None:  # decoded here, resized and normalised on the device
            tensors = [decode(items[i][0]) for i in group]
            sizes = [tuple(t.shape[-2:]) for t in tensors]
            pixels = self.prep(tensors, self.device)
        else:
            images = [Image.open(io.BytesIO(items[i][0])).convert("RGB") for i in group]
            sizes = [(im.height, im.width) for im in images]
        if self.processor is not None and self.prep is None:
            inputs = self.processor(images=images, input_boxes=padded, return_tensors="pt")
            pixels, boxes = inputs["pixel_values"], inputs["input_boxes"]
        else:
            if self.prep is None:
                pixels = torch.from_numpy(np.stack([preprocess(im, self.size) for im in images]))
            boxes = torch.tensor([scale_boxes(b, w, h, self.size) for b, (h, w) in zip(padded, sizes)])
        with torch.inference_mode():
            out = self.net(pixel_values=pixels.to(self.device, self.net.dtype),
                           input_boxes=boxes.to(self.device, torch.float32), multimask_output=False)
        logits, scores = out.pred_masks.float(), out.iou_scores.float().cpu()
        logits = logits if self.prep is not None else logits.cpu()  # with prep, upsampled on the device
        for n, (i, (h, w), b) in enumerate(zip(group, sizes, boxes_of)):
            k = len(b)
            if self.processor is not None and self.prep is None:
                masks = self.processor.post_process_masks([logits[n, :k]], [(h, w)])[0][:, 0].numpy()
            else:
                masks = upsample(logits[n, :k, 0], h, w)
            results[i] = ([encode_mask(m, scores[n, j, 0]) for j, m in enumerate(masks)], "", "")


class Sam2Handler(ModelHandler):
    """Records in, records out with ``masks`` (one per GT box); rejected records pass through.

    The model is found and loaded on the worker (``load_model``); on a GPU one copy is shared by
    the worker's processes. With a ``cache`` root, masks are looked up by model, image bytes and
    GT boxes first: only misses reach the model.
    """

    def __init__(self, model: ResolvedModel, batch_size: int = 4, device: str = "auto", cache: str | None = None,
                 preprocess: str = "torch"):
        super().__init__()
        self.model, self.batch_size, self.device, self.preprocess = model, batch_size, device, preprocess
        self.cache = StageCache(cache, STAGE, ".json", encode=encode_entries, decode=decode_entries)

    def load_model(self) -> LoadedSam2:
        import torch
        from transformers import Sam2Model

        quiet_transformers()
        where = device(self.device)
        dtype = torch.float16 if where == "cuda" else torch.float32
        with open_model(self.model, build_tiny_random) as (folder, identity):
            net = Sam2Model.from_pretrained(folder, dtype=dtype).to(where).eval()
            processor = None
            if torchvision_available():
                from transformers import Sam2Processor
                try:
                    processor = Sam2Processor.from_pretrained(folder)
                except OSError:  # a checkpoint without processor files: do the steps here
                    processor = None
        size = net.config.prompt_encoder_config.image_size
        size = size if isinstance(size, int) else size[0]
        # SAM2's processor: a square resize (bilinear), rescale, ImageNet mean and std
        prep = Prep(size, size, tuple(MEAN.tolist()), tuple(STD.tolist())) if self.preprocess == "torch" else None
        return LoadedSam2(net, processor, size, where, identity, prep)

    def share_model_across_processes(self) -> bool:
        return device(self.device) == "cuda"  # one copy per GPU; on CPU each process keeps its own

    def batch_elements_kwargs(self):
        return {"min_batch_size": 1, "max_batch_size": self.batch_size}

    def run_inference(self, batch: Sequence[Record], model: LoadedSam2, inference_args=None) -> Iterable[Record]:
        parts = model.key_parts()
        todo = [(content_key(STAGE, VERSION, *parts, json.dumps(r.gt_boxes), r.image or b""), r)
                for r in batch if r.rejection is None]
        misses = self.cache.lookup(todo, lambda r, masks: setattr(r, "masks", [dict(m) for m in masks]))
        keys = list(misses)  # records sharing a key share image and boxes
        found = model.masks([(misses[k][0].image, misses[k][0].gt_boxes) for k in keys], self.batch_size)
        done = []
        for key, (entries, reason, detail) in zip(keys, found):
            for record in misses[key]:
                if entries is None:
                    record.reject(STAGE, reason, detail)
                else:
                    record.masks = [dict(m) for m in entries]
            if entries is not None:
                done.append((key, entries))
        self.cache.save(done)
        return batch

    def get_metrics_namespace(self) -> str:
        return "groundcot.masks"
