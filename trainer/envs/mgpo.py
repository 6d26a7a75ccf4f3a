"""MGPO's environment: one ``crop`` of the model's box (pixels of the frame it sees) from the
full-resolution image. As MGPO's rollout (xinyu1205/verl, branch mgpo,
``verl/workers/rollout/vllm_rollout/vllm_rollout_spmd.py``): a box that is not inside the frame,
not more than 28 px a side or with an aspect ratio of 100 or more gets the whole image back
instead, with the question again; the crop is the box scaled to the original image."""
from __future__ import annotations

from groundcot.trainer.envs.base import Environment
from groundcot.trainer.rewards.mgpo import usable
from groundcot.transforms.crops import crop
from groundcot.transforms.styles import get_style


class MgpoEnv(Environment):
    style = "mgpo"

    def reset(self, **row) -> None:
        super().reset(**row)
        frame = row.get("frame")
        self.frame = tuple(int(v) for v in frame) if frame is not None and len(frame) else self.image.size

    def crop(self, bbox_2d: list[int], label: str = "") -> list:
        """Crop the key region from the full-resolution image.

        Args:
            bbox_2d: The region as [x1, y1, x2, y2], integer pixels of the image as you see it.
            label: What the region shows.
        """
        self._spend()
        style, question = get_style(self.style), self.row.get("question", "")
        if not usable(bbox_2d, self.frame):
            self.failed += 1  # MGPO's fallback: not an error, the whole image again
            return self._returns(self.image, style.prompt(style.full_image_prompt, question=question))
        piece, _ = crop(self.image, bbox_2d, frame=self.frame, min_side=self.min_side, max_aspect=self.max_aspect)
        return self._returns(piece, style.prompt(style.crop_prompt, question=question))
