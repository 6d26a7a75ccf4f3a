"""What a VLM teacher is sent: one image per record with every chain step drawn and numbered,
a byte-identical shared prefix for all styles of a record, and the image token rules."""
import base64
import io
import json

import pytest
from PIL import Image

from groundcot.schemas.record import Record
from groundcot.transforms.expand import expand_record
from groundcot.transforms.styles import fan_out, plan
from groundcot.transforms.styles.pictures import COLOURS, numbered
from groundcot.transforms.styles.prefix import Pictures, shared
from groundcot.transforms.teach.api import ApiTeacher, OpenAIConfig
from groundcot.transforms.teach.tokens import image_cost, image_tokens

GREY = (128, 128, 128)


def png(w, h, colour=GREY) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (w, h), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def decoded(part: dict) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(part["image_url"]["url"].split(",", 1)[1]))).convert("RGB")


def test_numbered_boxes_pixel_exact():
    image = Image.new("RGB", (100, 80), GREY)
    steps = [[[0.0, 0.0, 1.0, 1.0]], [[0.5, 0.25, 0.9, 0.75]], [[0.1, 0.5, 0.3, 0.9], [0.6, 0.4, 0.7, 0.6]]]
    out = numbered(image, steps)
    red, blue, green = (rgb for _, rgb in COLOURS[:3])
    # step 1: the whole image, its 2-pixel outline along every edge
    assert out.getpixel((99, 40)) == out.getpixel((98, 40)) == red and out.getpixel((97, 40)) == GREY
    assert out.getpixel((40, 79)) == out.getpixel((40, 78)) == red
    # step 2: x 50..89, y 20..59 (pixels of [0.5, 0.25, 0.9, 0.75] on 100x80)
    for xy in [(50, 40), (51, 40), (89, 40), (88, 40), (70, 59), (70, 58), (70, 20)]:
        assert out.getpixel(xy) == blue, xy
    assert out.getpixel((52, 40)) == out.getpixel((87, 40)) == out.getpixel((70, 40)) == GREY  # inside: untouched
    # step 3: both of its boxes in its colour
    assert out.getpixel((10, 60)) == out.getpixel((29, 60)) == green  # left and right sides of box 1
    assert out.getpixel((60, 45)) == out.getpixel((69, 45)) == green  # of box 2
    assert out.getpixel((20, 60)) == GREY
    # each box carries its step's number: a filled tag at its top-left corner, the digit inked in it
    tag = [out.getpixel((x, y)) for x in range(52, 62) for y in range(22, 32)]
    assert tag.count(blue) > 20 and (255, 255, 255) in tag
    assert image.getpixel((70, 20)) == GREY  # the source image is left as it was


def record(rid="r1", w=120, h=90, question="What colour?"):
    r = Record(id=rid, source="t", source_id=rid, dataset="t", split="train", question=question,
               answer="red", image_path="x.png", width=w, height=h, gt_boxes=[[60, 30, 90, 70]], labels=["ball"],
               image=png(w, h))
    return expand_record(r, seed=3)


def teacher_cfg(**request) -> OpenAIConfig:
    """An API teacher's config; ``request``: its ``request`` section's values."""
    return OpenAIConfig(kind="openai", reask=False, limits={"max_concurrency": 2},
                        connection={"base_url": "http://127.0.0.1:9/v1", "model": "m", "api_key_env": None,
                                    "timeout_s": 1, "max_retries": 0},
                        request={"temperature": 0.0, "max_tokens": 64, "image_max_side": 64, "image_format": "png",
                                 **request})


def styled(r, styles=("sif", "textual", "mgpo", "aperture")):
    return [plan(twin) for twin in fan_out(r, list(styles))]


def test_all_styles_of_a_record_share_a_byte_identical_prefix_built_once():
    teacher = ApiTeacher(teacher_cfg(), {})
    r = record()
    requests = {t.style: teacher.prepare(t) for t in styled(r)}
    prefixes = {json.dumps(q.messages[:2]) for q in requests.values()}
    assert len(prefixes) == 1
    assert all(q.messages[2]["role"] == "user" for q in requests.values())  # the style's part comes after
    assert teacher.ledger.take() == {"prefix_built": 1, "prefix_reused": 3}
    system, picture = requests["sif"].messages[:2]
    assert "Correct answer: red" in system["content"]
    for i, step in enumerate(r.chain):  # the legend names every step's colour, tag and areas
        assert f"Step {i + 1} (" in system["content"] and f"outlined in {COLOURS[i][0]}, tagged {i + 1}" in system["content"]
    # the one image: the record's image downscaled to 64 px with every step numbered on it
    (part,) = picture["content"]
    sent = decoded(part)
    assert sent.size == (64, 48)
    expected = numbered(Image.open(io.BytesIO(r.image)).convert("RGB").resize((64, 48), Image.Resampling.LANCZOS),
                        [s.boxes for s in r.chain])
    assert sent.tobytes() == expected.tobytes()  # PNG: pixel-exact
    # only the crops a style needs
    images = {s: sum(p["type"] == "image_url" for m in q.messages[2:] for p in m["content"]) for s, q in requests.items()}
    assert images["sif"] == images["textual"] == 0 and images["mgpo"] == 1
    assert images["aperture"] == len(next(t for t in styled(r, ["aperture"])).actions)
    assert requests["mgpo"].sizes[0] == (64, 48) and len(requests["mgpo"].sizes) == 2


def test_a_new_record_gets_its_own_prefix():
    teacher = ApiTeacher(teacher_cfg(), {})
    a, b = (teacher.prepare(t) for t in [*styled(record("a"), ["sif"]), *styled(record("b", question="Which?"), ["sif"])])
    assert "Question: Which?" in b.messages[0]["content"] and "Question: Which?" not in a.messages[0]["content"]
    assert teacher.ledger.take() == {"prefix_built": 2}


def test_per_step_sends_one_image_per_chain_step():
    r = record()
    one, per = shared(r, Pictures(64, "png")), shared(r, Pictures(64, "png", per_step=True))
    assert len(one.sizes) == 1 and len(per.sizes) == len(r.chain) >= 3
    steps = [decoded(p) for p in per.messages[1]["content"] if p["type"] == "image_url"]
    assert len(steps) == len(r.chain)
    assert steps[0].getpixel((0, 24)) == (255, 0, 0)  # step 1 (the whole image) outlined in red on its own
    assert image_cost(per.sizes, "qwen2.5-vl")["image_tokens"] == len(r.chain) * image_cost(one.sizes, "qwen2.5-vl")[
        "image_tokens"]


@pytest.mark.parametrize(("w", "h", "rule", "tokens"), [
    (64, 48, "qwen2.5-vl", 4),  # smart_resize to 56x56: 2x2 patches of 28 px
    (1024, 768, "qwen2.5-vl", 37 * 27),  # 1036x756
    (28, 28, "qwen2.5-vl", 4),  # the 56x56 minimum
    (1024, 1024, "openai-tiles", 85 + 170 * 4),  # 768x768: 2x2 tiles
    (4096, 2048, "openai-tiles", 85 + 170 * 6),  # 2048x1024 -> 1536x768: 3x2 tiles
    (200, 100, "openai-tiles", 85 + 170),
])
def test_image_token_rules(w, h, rule, tokens):
    assert image_tokens(w, h, rule) == tokens


def test_image_cost_adds_up():
    assert image_cost([(64, 48), (1024, 768)], "qwen2.5-vl") == {"images": 2, "image_pixels": 64 * 48 + 1024 * 768,
                                                                 "image_tokens": 4 + 37 * 27}
    with pytest.raises(ValueError, match="unknown image token rule"):
        image_tokens(10, 10, "tiles?")


def test_rectangle_crops_are_sent_only_when_they_add_detail():
    """At full resolution a zoom crop's pixels are already in the shared image: the text points there."""
    r = record()  # 120x90
    full = ApiTeacher(teacher_cfg(image_max_side=1024), {})
    requests = {t.style: full.prepare(t) for t in styled(r, ["mgpo", "aperture"])}
    for style, request in requests.items():
        assert len(request.sizes) == 1, style  # the shared image only
    texts = [p["text"] for p in requests["aperture"].messages[2]["content"]]
    assert all("that region of the image above, as it is" in t for t in texts[1:])
    assert "already at full resolution" in requests["mgpo"].messages[2]["content"][0]["text"]
    always = ApiTeacher(teacher_cfg(image_max_side=1024, crop_min_zoom=1.0), {})
    assert len(always.prepare(styled(r, ["mgpo"])[0]).sizes) == 2


def test_qwen_resize_is_transformers_smart_resize():
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

    from groundcot.schemas.boxes import QWEN_MAX_PIXELS, QWEN_MIN_PIXELS, qwen_resize

    sizes = [(1, 1), (10, 13), (27, 29), (48, 64), (240, 320), (479, 641), (1080, 1920), (3000, 4000),
             (5000, 5000), (100, 7000), (8000, 60)]
    for h, w in sizes:
        assert qwen_resize(h, w) == smart_resize(h, w, factor=28, min_pixels=QWEN_MIN_PIXELS,
                                                 max_pixels=QWEN_MAX_PIXELS), (h, w)
        for low, high in ((4 * QWEN_MIN_PIXELS, 200_704), (QWEN_MIN_PIXELS, 1_003_520)):  # mgpo's crops.min/max_pixels
            assert qwen_resize(h, w, min_pixels=low, max_pixels=high) == smart_resize(
                h, w, factor=28, min_pixels=low, max_pixels=high), (h, w, low, high)
