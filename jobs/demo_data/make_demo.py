"""Draw the demo images and write their VisCoT-metadata annotations (deterministic).

    python jobs/demo_data/make_demo.py      # rewrites images/ and metadata/ here

Scenes with distinct objects and signs with text; one JPEG stored sideways with an EXIF
orientation tag, one greyscale PNG, one box spilling past the edge (clipped), and one
record whose box lies wholly outside its image (rejected: box_outside_image).
"""
from __future__ import annotations

import json
import random
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

HERE = Path(__file__).parent
SKY, GRASS = (170, 205, 235), (120, 170, 90)


def font(size: int):
    return ImageFont.load_default(size=size)


def background(w: int, h: int, horizon: float = 0.55) -> Image.Image:
    im = Image.new("RGB", (w, h), SKY)
    ImageDraw.Draw(im).rectangle([0, int(h * horizon), w, h], fill=GRASS)
    return im


def ball(d, box, colour):
    d.ellipse(box, fill=colour, outline=(40, 40, 40))
    return box


def tree(d, x, y, s):
    d.rectangle([x + s * 0.4, y + s * 0.6, x + s * 0.6, y + s * 1.2], fill=(110, 70, 40))
    d.ellipse([x, y, x + s, y + s * 0.8], fill=(40, 120, 50))
    return [x, y, x + s, y + s * 1.2]


def house(d, x, y, s, colour):
    d.rectangle([x, y + s * 0.4, x + s, y + s], fill=colour, outline=(60, 60, 60))
    d.polygon([(x - s * 0.1, y + s * 0.4), (x + s / 2, y), (x + s * 1.1, y + s * 0.4)], fill=(150, 50, 40))
    d.rectangle([x + s * 0.4, y + s * 0.65, x + s * 0.6, y + s], fill=(90, 60, 30))
    return [x - s * 0.1, y, x + s * 1.1, y + s]


def car(d, x, y, s, colour):
    d.rectangle([x, y + s * 0.2, x + s * 1.6, y + s * 0.6], fill=colour, outline=(30, 30, 30))
    d.rectangle([x + s * 0.3, y, x + s * 1.2, y + s * 0.25], fill=colour, outline=(30, 30, 30))
    for cx in (x + s * 0.35, x + s * 1.25):
        d.ellipse([cx - s * 0.15, y + s * 0.45, cx + s * 0.15, y + s * 0.75], fill=(20, 20, 20))
    return [x, y, x + s * 1.6, y + s * 0.75]


def sign(d, box, text, bg, fg=(255, 255, 255), size=22):
    d.rectangle(box, fill=bg, outline=(30, 30, 30), width=3)
    d.text(((box[0] + box[2]) / 2, (box[1] + box[3]) / 2), text, fill=fg, font=font(size), anchor="mm")
    post = [(box[0] + box[2]) / 2 - 3, box[3], (box[0] + box[2]) / 2 + 3, box[3] + 40]
    d.rectangle(post, fill=(90, 90, 90))
    return list(box)


def rows():
    """(file, dataset, image, [(question, answer, boxes)])"""
    rng = random.Random(7)
    out = []
    # 1-3: balls to count
    for i, (n, colour, name) in enumerate([(3, (220, 40, 40), "red"), (2, (40, 90, 220), "blue"),
                                          (4, (240, 200, 40), "yellow")]):
        im = background(320, 240)
        d = ImageDraw.Draw(im)
        boxes = []
        for k in range(n):
            x, y = 20 + k * 72 + rng.randint(0, 10), 150 + rng.randint(0, 40)
            boxes.append(ball(d, [x, y, x + 40, y + 40], colour))
        ball(d, [250, 30, 290, 70], (250, 250, 250))  # a white ball in the sky: a distractor
        out.append(("scenes", f"balls_{i}.png", im, [(f"How many {name} balls are on the grass?", str(n), boxes)]))
    # 4-6: houses and trees
    for i, colour in enumerate([(230, 230, 200), (200, 120, 200), (120, 200, 220)]):
        im = background(320, 240, 0.6)
        d = ImageDraw.Draw(im)
        h = house(d, 40 + i * 30, 70, 90, colour)
        t = tree(d, 220, 60, 60)
        cname = {0: "cream", 1: "purple", 2: "light blue"}[i]
        out.append(("scenes", f"house_{i}.png", im, [
            ("What colour is the house?", cname, [h]),
            ("Is there a tree to the right of the house?", "Yes", [h, t])]))
    # 7-8: cars on a road (8 is portrait)
    for i, (w, hgt) in enumerate([(360, 240), (240, 360)]):
        im = background(w, hgt, 0.5)
        d = ImageDraw.Draw(im)
        d.rectangle([0, int(hgt * 0.7), w, int(hgt * 0.85)], fill=(80, 80, 80))
        c = car(d, 30, int(hgt * 0.62), 60, (200, 30, 30))
        g = car(d, w - 130, int(hgt * 0.66), 45, (30, 150, 60))
        out.append(("scenes", f"cars_{i}.png", im, [("What colour is the larger car?", "red", [c]),
                                                   ("What colour is the smaller car?", "green", [g])]))
    # 9-14: signs with text
    texts = [("STOP", (200, 20, 20)), ("EXIT 12", (20, 120, 60)), ("OPEN", (30, 60, 160)),
             ("CAFE", (120, 70, 30)), ("ONE WAY", (20, 20, 20)), ("PARKING", (30, 60, 160))]
    for i, (text, bg) in enumerate(texts):
        im = background(320, 240, 0.7)
        d = ImageDraw.Draw(im)
        x = 30 + (i * 47) % 150
        box = sign(d, [x, 50, x + 130, 110], text, bg)
        tree(d, 250 if x < 120 else 20, 90, 50)
        out.append(("signs", f"sign_{i}.png", im, [("What does the sign say?", text, [box])]))
    # 15: a sign photographed sideways: stored rotated with EXIF orientation 6 (upright 240x320)
    im = Image.new("RGB", (240, 320), SKY)
    d = ImageDraw.Draw(im)
    box = sign(d, [40, 60, 200, 120], "SALE", (200, 120, 0))
    out.append(("signs", "sign_exif.jpg", im, [("What does the sign say?", "SALE", [box])]))
    # 16: greyscale PNG; its sign box spills past the right edge (clipped on load)
    im = Image.new("L", (320, 240), 200)
    d = ImageDraw.Draw(im)
    d.rectangle([200, 60, 319, 120], fill=40)
    d.text((260, 90), "BUS", fill=255, font=font(22), anchor="mm")
    out.append(("signs", "sign_grey.png", im, [("What does the sign say?", "BUS", [[200, 60, 340, 120]])]))
    return out


def main() -> None:
    (HERE / "images").mkdir(exist_ok=True)
    (HERE / "metadata").mkdir(exist_ok=True)
    lines: dict[str, list[str]] = {"scenes": [], "signs": []}
    for group, name, im, qas in rows():
        path = HERE / "images" / group / name
        path.parent.mkdir(exist_ok=True)
        if name == "sign_exif.jpg":
            exif = Image.Exif()
            exif[0x0112] = 6  # rotate 90 degrees clockwise to display
            im.transpose(Image.Transpose.ROTATE_90).save(path, quality=90, exif=exif)
        elif name.endswith(".jpg"):
            im.save(path, quality=90)
        else:
            im.save(path, optimize=True)
        for q, a, boxes in qas:
            rec = {"question": q, "answer": a, "image": f"{group}/{name}", "width": im.width,
                   "height": im.height, "bboxs": [[round(v, 1) for v in b] for b in boxes],
                   "dataset": f"demo_{group}", "split": "train"}
            lines[group].append(json.dumps(rec))
    # one record whose box lies wholly outside its image: rejected with box_outside_image
    lines["signs"].append(json.dumps({"question": "What does the sign say?", "answer": "STOP",
                                      "image": "signs/sign_0.png", "width": 320, "height": 240,
                                      "bboxs": [[400, 300, 450, 350]], "dataset": "demo_signs",
                                      "split": "train"}))
    for group, group_lines in lines.items():
        (HERE / "metadata" / f"demo_{group}_cot_train.jsonl").write_text("\n".join(group_lines) + "\n")


if __name__ == "__main__":
    main()
