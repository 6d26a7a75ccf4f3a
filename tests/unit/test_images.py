import io
from dataclasses import replace

from PIL import Image

from groundcot.schemas.record import Record
from groundcot.transforms.images import load_image, resolve

from support import png_bytes


def record(path="a.png", width=64, height=48, boxes=((10, 10, 30, 30),), labels=()):
    return Record(id="viscot-x", source="viscot", source_id="x", dataset="toy", split="train", question="q",
                  answer="a", image_path=path, width=width, height=height, gt_boxes=[list(b) for b in boxes],
                  labels=list(labels))


def test_good_png_passes_through_unchanged(image_root):
    data = png_bytes()
    (image_root / "a.png").write_bytes(data)
    out = load_image(record(), str(image_root))
    assert out.rejection is None and out.image == data  # bytes passed through


def test_good_jpeg_passes_through_unchanged(image_root):
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (10, 200, 30)).save(buffer, format="JPEG", quality=80)
    (image_root / "a.jpg").write_bytes(buffer.getvalue())
    out = load_image(record("a.jpg"), str(image_root))
    assert out.rejection is None and out.image == buffer.getvalue()  # never re-encoded


def test_missing_image(image_root):
    out = load_image(record("nope.png"), str(image_root))
    assert out.rejection.reason == "missing_image" and "nope.png" in out.rejection.detail


def test_corrupt_image(image_root):
    (image_root / "a.png").write_bytes(png_bytes()[:60])
    out = load_image(record(), str(image_root))
    assert out.rejection.reason == "corrupt_image"
    (image_root / "a.png").write_bytes(b"not an image at all")
    assert load_image(record(), str(image_root)).rejection.reason == "corrupt_image"


def test_size_mismatch(image_root):
    (image_root / "a.png").write_bytes(png_bytes(64, 48))
    out = load_image(record(width=48, height=64), str(image_root))
    assert out.rejection.reason == "size_mismatch"
    assert "declared 48x64" in out.rejection.detail and "64x48" in out.rejection.detail
    assert out.image is None  # rejected records drop their payload


def test_box_partly_outside_is_clipped(image_root):
    (image_root / "a.png").write_bytes(png_bytes())
    out = load_image(record(boxes=[(50, 40, 90, 70), (-5, -5, 10, 10)], labels=["x", "y"]), str(image_root))
    assert out.rejection is None
    assert out.gt_boxes == [[50, 40, 64, 48], [0, 0, 10, 10]]
    assert out.labels == ["x", "y"]


def test_box_wholly_outside_is_rejected(image_root):
    (image_root / "a.png").write_bytes(png_bytes())
    out = load_image(record(boxes=[(100, 100, 120, 120)]), str(image_root))
    assert out.rejection.reason == "box_outside_image"


def test_empty_box_is_rejected_and_dropped_when_others_remain(image_root):
    (image_root / "a.png").write_bytes(png_bytes())
    assert load_image(record(boxes=[(10, 10, 10, 30)]), str(image_root)).rejection.reason == "empty_box"
    out = load_image(record(boxes=[(10, 10, 10, 30), (1, 1, 5, 5)], labels=["a", "b"]), str(image_root))
    assert out.gt_boxes == [[1, 1, 5, 5]] and out.labels == ["b"]


def test_exif_orientation_is_applied(image_root):
    upright = Image.new("RGB", (40, 80), (0, 0, 255))
    upright.paste((255, 0, 0), (0, 0, 40, 10))  # red band at the top
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    upright.transpose(Image.Transpose.ROTATE_90).save(buffer, format="JPEG", exif=exif, quality=95)
    (image_root / "r.jpg").write_bytes(buffer.getvalue())
    out = load_image(record("r.jpg", 40, 80, boxes=[(0, 0, 40, 10)]), str(image_root))
    assert out.rejection is None
    stored = Image.open(io.BytesIO(out.image))
    assert stored.size == (40, 80) and stored.format == "PNG"
    r, g, b = stored.getpixel((20, 3))
    assert r > 200 and b < 60  # the red band is at the top again


def test_greyscale_becomes_rgb(image_root):
    (image_root / "g.png").write_bytes(png_bytes(mode="L"))
    out = load_image(record("g.png"), str(image_root))
    assert Image.open(io.BytesIO(out.image)).mode == "RGB"


def test_paths_cannot_escape_the_root(image_root):
    assert resolve("/data/imgs", "../secret.png") is None
    assert resolve("/data/imgs", "/etc/passwd") is None
    assert resolve("/data/imgs", "a/../../b.png") is None
    assert resolve("gs://bucket/imgs/", "cub/x.jpg") == "gs://bucket/imgs/cub/x.jpg"
    out = load_image(record("../outside.png"), str(image_root))
    assert out.rejection.reason == "path_escapes_root"


def test_image_root_per_dataset(image_root):
    (image_root / "toy").mkdir()
    (image_root / "toy" / "a.png").write_bytes(png_bytes())
    out = load_image(record(), str(image_root) + "/{dataset}")
    assert out.rejection is None and out.image is not None


def test_a_dataset_value_cannot_escape_the_root(image_root):
    from groundcot.transforms.images import dataset_root

    assert dataset_root("/d/{dataset}/x", "toy") == "/d/toy/x" and dataset_root("/d", "../x") == "/d"
    for bad in ("..", ".", "../outside", "/abs", "a/b", "a\\b"):
        assert dataset_root("/d/{dataset}", bad) is None
        out = load_image(replace(record(), dataset=bad), str(image_root) + "/{dataset}")
        assert out.rejection.reason == "path_escapes_root"


def test_wide_modes_are_scaled_by_their_range():
    import numpy as np

    from groundcot.transforms.images import to_rgb

    ramp = np.linspace(0, 1, 11)[None, :]
    cases = [(Image.fromarray((ramp * 65535).astype(np.uint16)), "I;16"),
             (Image.fromarray((ramp * 4000 - 2000).astype(np.int32)), "I"),
             (Image.fromarray(ramp.astype(np.float32)), "F"),
             (Image.fromarray((ramp * 200).astype(np.float32)), "F")]
    for image, mode in cases:
        assert image.mode == mode
        grey = np.asarray(to_rgb(image))[0, :, 0]
        top = 200 if image.mode == "F" and image.getextrema()[1] > 1 else 255  # 0..255 floats stay as they are
        assert grey[0] == 0 and grey[-1] == top and 0.4 * top < grey[5] < 0.6 * top
    nan = Image.fromarray(np.array([[np.nan, 0.0, 1.0]], dtype=np.float32))
    assert list(np.asarray(to_rgb(nan))[0, :, 0]) == [0, 0, 255]


def test_a_float_tiff_past_one_is_scaled_by_its_own_range_not_16_bit(image_root):
    import numpy as np

    ramp = (np.linspace(0, 1, 11)[None, :] * 1000).astype(np.float32)  # a depth-like float TIFF, 0..1000
    buf = io.BytesIO()
    Image.fromarray(np.repeat(ramp, 40, axis=0).repeat(4, axis=1)).save(buf, format="TIFF")
    (image_root / "depth.tif").write_bytes(buf.getvalue())
    out = load_image(record(path="depth.tif", width=44, height=40, boxes=((0, 0, 10, 10),)), str(image_root))
    assert out.rejection is None
    grey = np.asarray(Image.open(io.BytesIO(out.image)))[0, ::4, 0]
    assert grey[0] == 0 and grey[-1] == 255 and 120 < grey[5] < 136  # was 0..4 against 0..65535


def test_size_limits_from_the_header(image_root):
    from groundcot.transforms.images import size_problem

    assert size_problem(28, 28, 28, 50, 10**6) is None and size_problem(1400, 28, 28, 50, 10**6) is None
    assert size_problem(27, 100, 28, 50, 10**6)[0] == "image_too_small"
    assert size_problem(1401, 28, 28, 50, 10**6)[0] == "image_extreme_aspect"
    assert size_problem(1001, 1000, 28, 50, 10**6)[0] == "image_too_large"
    (image_root / "a.png").write_bytes(png_bytes(64, 48))
    out = load_image(record(), str(image_root), max_pixels=64 * 48 - 1)
    assert out.rejection.reason == "image_too_large" and "64x48" in out.rejection.detail
