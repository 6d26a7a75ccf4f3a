import numpy as np
import pytest
from PIL import Image

from groundcot.transforms.crops import NEUTRAL, crop, crop_box, to_image_frame


def test_frames():
    assert to_image_frame([0.25, 0.5, 0.5, 1.0], None, 400, 200) == [100, 100, 200, 200]
    # a box on the 448x224 image a model saw -> the 1000x500 original
    assert to_image_frame([112, 56, 224, 112], (448, 224), 1000, 500) == [250, 125, 500, 250]


def test_small_box_grows_around_its_centre_to_the_minimum():
    assert crop_box([50, 50, 60, 55], 200, 100) == (41, 38, 69, 66)  # 28x28 around (55, 52.5)


def test_minimum_crop_is_shifted_inside_at_the_edge():
    assert crop_box([0, 0, 4, 4], 200, 100) == (0, 0, 28, 28)
    assert crop_box([195, 95, 200, 100], 200, 100) == (172, 72, 200, 100)


def test_aspect_ratio_is_capped():
    x1, y1, x2, y2 = crop_box([10, 40, 190, 50], 200, 100, max_aspect=4.0)  # 180 x 10 box
    assert (x2 - x1) / (y2 - y1) <= 4.0 + 1e-9 and y1 <= 40 and y2 >= 50


def test_crop_never_exceeds_the_image():
    assert crop_box([-20, -20, 500, 300], 200, 100) == (0, 0, 200, 100)
    assert crop_box([0, 0, 10, 10], 20, 20, min_side=28) == (0, 0, 20, 20)  # image smaller than the minimum


def test_rectangle_crop_from_a_frame():
    image = Image.new("RGB", (100, 50), (0, 0, 255))
    image.paste((255, 0, 0), (50, 0, 100, 50))
    out, rect = crop(image, [0.5, 0.0, 1.0, 1.0])
    assert rect == (50, 0, 100, 50) and out.size == (50, 50) and out.getpixel((10, 10)) == (255, 0, 0)


def test_mask_crop_blanks_outside_and_crops_to_the_mask():
    image = Image.new("RGB", (60, 60), (200, 10, 10))
    mask = np.zeros((60, 60), dtype=bool)
    mask[10:40, 20:50] = True
    mask[10:20, 20:30] = False  # a notch: outside the mask but inside its box
    out, rect = crop(image, [0, 0, 1, 1], mask=mask)
    assert rect == (20, 10, 50, 40)
    assert out.getpixel((15, 15)) == (200, 10, 10) and out.getpixel((2, 2)) == NEUTRAL
    with pytest.raises(ValueError):
        crop(image, [0, 0, 1, 1], mask=np.zeros((60, 60), dtype=bool))
