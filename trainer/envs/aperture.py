"""TikArt's aperture environment: ``zoom`` (a rectangle crop) and ``segment`` (a SAM2 mask crop) of a
box normalised to [0, 1], both from the full-resolution image with the pipeline's crop code; the mask
comes from the pipeline's SAM2 stage (``transforms.masks``) prompted with the box."""
from __future__ import annotations

from functools import lru_cache

from groundcot.trainer.envs.base import Environment
from groundcot.transforms.crops import crop, png, to_image_frame
from groundcot.transforms.styles import get_style


def check_box(box) -> list[float]:
    if not (isinstance(box, (list, tuple)) and len(box) == 4 and all(isinstance(v, (int, float)) for v in box)):
        raise ValueError(f"box {box!r}: not 4 numbers")
    x1, y1, x2, y2 = (float(v) for v in box)
    if not (0 <= x1 < x2 <= 1 and 0 <= y1 < y2 <= 1):
        raise ValueError(f"box {box!r}: not x1 < x2, y1 < y2 within [0, 1]")
    return [x1, y1, x2, y2]


@lru_cache(maxsize=2)
def sam2(model: str, fallback: str, device: str):
    """The pipeline's SAM2 (``transforms.masks``), loaded once per process."""
    from groundcot.transforms.masks import Sam2Handler, resolve_sam2_model

    return Sam2Handler(resolve_sam2_model(model, fallback), device=device).load_model()


class ApertureEnv(Environment):
    style = "aperture"

    def __init__(self, segment_model: str = "facebook/sam2.1-hiera-tiny", segment_fallback: str = "none",
                 segment_device: str = "auto", **settings):
        super().__init__(**settings)
        self.segment_model = (segment_model, segment_fallback, segment_device)

    def reset(self, **row) -> None:
        super().reset(**row)
        self.actions = []  # (tool, box, pixel rectangle) of each call that returned a crop

    def _crop(self, action: str, box, mask=None) -> list:
        piece, rect = crop(self.image, box, mask=mask, min_side=self.min_side, max_aspect=self.max_aspect)
        self.actions.append((action, box, rect))
        style = get_style(self.style)
        return self._returns(piece, style.prompt(style.observe_prompt, action=action))

    def zoom(self, box: list[float]) -> list:
        """See a rectangle of the image up close.

        Args:
            box: [x1, y1, x2, y2], normalised to [0, 1].
        """
        self._spend()
        try:
            box = check_box(box)
        except ValueError as err:
            self._fail(str(err))
        return self._crop("zoom", box)

    def segment(self, box: list[float]) -> list:
        """See only the object in a box: its SAM2 mask, the rest greyed out.

        Args:
            box: [x1, y1, x2, y2] around the object, normalised to [0, 1].
        """
        from groundcot.schemas.codecs import decode_mask

        self._spend()
        try:
            box = check_box(box)
            pixels = to_image_frame(box, None, self.image.width, self.image.height)
            entries, reason, detail = sam2(*self.segment_model).masks([(png(self.image), [pixels])], 1)[0]
            if entries is None:
                raise ValueError(f"segment failed: {reason} {detail}")
            mask = decode_mask(entries[0])
            if not mask.any():
                raise ValueError(f"segment: SAM2 found nothing in {box}")
        except ValueError as err:
            self._fail(str(err))
        return self._crop("segment", box, mask)
