"""Image preprocessing as torch ops on the model's device: the processors' PIL steps, GPU-fast.

transformers' processors resize and normalise each image with PIL on the CPU (about 24 ms for a
640x480 image with Depth-Anything-V2's processor), which on a GPU worker leaves the GPU waiting
for the CPU. Here the image is decoded once on the CPU (uint8, no copy) and everything after runs
as ``torch.nn.functional.interpolate`` and arithmetic on the device:

- size: the processor's (fixed height/width, or Depth-Anything's keep-aspect-ratio fit to a
  multiple of ``ensure_multiple_of``, as ``DPTImageProcessor`` computes it);
- resize: the processor's resample mode with ``antialias=True`` (PIL's filters), in PIL's two
  passes (width, then height), each rounded and clipped to 0..255 as PIL's 8-bit passes are;
- rescale and normalise with the processor's factor, mean and std.

Equal to the processor's tensors within ``TOLERANCE`` (one 8-bit level after normalisation, where
PIL's fixed-point weights round the other way; about 1% of values, the rest equal to float precision). ``plan_batches`` groups images by processed shape so
that a forward pass is as full as the shapes allow.
"""
from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

# PIL resample codes (and torchvision's names for them) -> F.interpolate modes ("nearest-exact" is
# PIL's nearest; torch's "nearest" is not)
MODES = {0: "nearest-exact", 2: "bilinear", 3: "bicubic", "bilinear": "bilinear", "bicubic": "bicubic"}
# max |torch - processor| per normalised value: one 8-bit level over the smallest std (ImageNet's 0.224)
TOLERANCE = 1.0 / 255 / 0.224 + 1e-4


@dataclass(frozen=True)
class Prep:
    """One processor's steps: target size and how it is fitted, resample mode, rescale, mean, std."""

    height: int
    width: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    mode: str = "bilinear"
    keep_aspect: bool = False
    multiple: int = 1
    rescale: float = 1 / 255

    def size(self, height: int, width: int) -> tuple[int, int]:
        """The processed (height, width) of an image: as ``DPTImageProcessor`` computes it."""
        sh, sw = self.height / height, self.width / width
        if self.keep_aspect:  # scale as little as possible: fit the side whose scale is nearer 1
            if abs(1 - sw) < abs(1 - sh):
                sh = sw
            else:
                sw = sh
        return multiple_of(sh * height, self.multiple), multiple_of(sw * width, self.multiple)

    def __call__(self, images: list, device: str = "cpu", dtype=None):
        """(N, 3, H, W) model input from uint8 (3, h, w) tensors whose processed sizes are equal."""
        import torch

        out = []
        for image in images:
            x = image.to(device, non_blocking=True).float()[None]
            out.append(self.resize(x, self.size(*x.shape[-2:])))
        batch = torch.cat(out)
        mean = torch.tensor(self.mean, device=batch.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=batch.device).view(1, -1, 1, 1)
        batch = (batch * self.rescale - mean) / std
        return batch if dtype is None else batch.to(dtype)


    def resize(self, x, size: tuple[int, int]):
        """(1, 3, h, w) float 0..255 -> (1, 3, *size) as PIL resizes 8-bit images: width then
        height, each pass rounded half up and clipped to 0..255 (bicubic overshoot included)."""
        import torch.nn.functional as F

        if self.mode == "nearest-exact":
            return F.interpolate(x, size=size, mode=self.mode) if tuple(x.shape[-2:]) != size else x
        for step in ((x.shape[-2], size[1]), size):  # PIL: the horizontal pass, then the vertical
            if tuple(x.shape[-2:]) != step:
                x = F.interpolate(x, size=step, mode=self.mode, antialias=True, align_corners=False)
                x = x.add_(0.5).floor_().clamp_(0, 255)
        return x


def multiple_of(value: float, multiple: int) -> int:
    """``value`` rounded to a multiple (DPT's ``constrain_to_multiple_of`` without bounds)."""
    x = round(value / multiple) * multiple
    return x if x > 0 else math.ceil(value / multiple) * multiple


def from_processor(processor) -> Prep | None:
    """The steps of a transformers image processor, or None where it does something else
    (padding, cropping, label reduction, another resample mode): then the processor runs."""
    p = getattr(processor, "image_processor", processor)
    size = p.size
    height, width = getattr(size, "height", None), getattr(size, "width", None)
    if isinstance(size, dict):
        height, width = size.get("height"), size.get("width")
    resample = getattr(p.resample, "value", p.resample)  # PILImageResampling, int or InterpolationMode
    mode = MODES.get(int(resample) if isinstance(resample, int) else resample)
    unsupported = (getattr(p, "do_pad", False) or getattr(p, "do_center_crop", False)
                   or getattr(p, "do_reduce_labels", False) or not p.do_resize or not p.do_rescale
                   or not p.do_normalize or mode is None or not height or not width)
    if unsupported:
        return None
    return Prep(height, width, tuple(p.image_mean), tuple(p.image_std), mode,
                bool(getattr(p, "keep_aspect_ratio", False)), int(getattr(p, "ensure_multiple_of", 1) or 1),
                float(p.rescale_factor))


def decode(data: bytes):
    """Image bytes -> uint8 (3, H, W) torch tensor (RGB, as the processors convert)."""
    import torch

    pixels = np.array(Image.open(io.BytesIO(data)).convert("RGB"))  # writable: torch shares it
    return torch.from_numpy(pixels).permute(2, 0, 1)


def plan_batches(shapes: list, batch_size: int) -> list[list[int]]:
    """Indices grouped by shape, in chunks of ``batch_size``: full batches first, then the rest.

    Given a buffer of several batches' worth of images, this is what fills forward passes:
    images of one processed shape stack, and a shape seen once waits for none.
    """
    groups: dict = {}
    for i, shape in enumerate(shapes):
        groups.setdefault(shape, []).append(i)
    full, rest = [], []
    for members in groups.values():
        for start in range(0, len(members), batch_size):
            chunk = members[start:start + batch_size]
            (full if len(chunk) == batch_size else rest).append(chunk)
    return full + rest
