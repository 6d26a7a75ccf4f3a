"""Flickr30k Entities reader: ``Sentences/<id>.txt`` + ``Annotations/<id>.xml`` -> phrase grounding.

One record per (image, phrase chain), from its first mention (or per mention with
``all_mentions``). The question asks where the phrase is, the answer is the phrase, and
the GT boxes are all of the chain's boxes. Coordinates in the XML are 1-based: 1 is
subtracted, as the official tools do. Chains with no box (``nobndbox``/``scene``) are
rejected with ``phrase_not_boxed``; ``notvisual`` phrases (chain 0) are not groundable
and make no record.
"""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Literal, Optional

import apache_beam as beam
from pydantic import Field

from groundcot import prompts
from groundcot.schemas.record import Record, stable_id
from groundcot.transforms.images import resolve
from groundcot.transforms.sources.base import Provenance, Source, SourceBase
from groundcot.transforms.sources.common import decode_line, read_lines, require_text
from groundcot.transforms.sources.jsonstream import BadEncoding

SOURCE = "flickr30k"
CITATION = ("@inproceedings{plummer2015flickr30k,\n  title={Flickr30k Entities: Collecting Region-to-Phrase "
            "Correspondences for Richer Image-to-Sentence Models},\n  author={Plummer, Bryan A. and Wang, Liwei and "
            "Cervantes, Chris M. and Caicedo, Juan C. and Hockenmaier, Julia and Lazebnik, Svetlana},\n"
            "  booktitle={ICCV},\n  year={2015}\n}")
PROVENANCE = Provenance(
    None, ("Flickr30k Entities: the Flickr30k images may be used only under Flickr's terms of use, for "
           "non-commercial research and education; the annotations follow the same terms."),
    ("Flickr30k Entities",),
    (CITATION,))
_PHRASE = re.compile(r"\[/EN#(\d+)/(\S+) ([^\]]+)\]")


@dataclass
class Phrase:
    chain: str
    types: list[str]
    text: str
    sentence: str
    sentence_index: int


def parse_sentences(text: str) -> list[Phrase]:
    phrases = []
    for i, line in enumerate(s for s in text.splitlines() if s.strip()):
        plain = _PHRASE.sub(lambda m: m.group(3), line).strip()
        for m in _PHRASE.finditer(line):
            phrases.append(Phrase(m.group(1), m.group(2).split("/"), m.group(3).strip(), plain, i))
    return phrases


def parse_annotation(xml_text: str) -> tuple[int, int, dict[str, list[list[float]]]]:
    """(width, height, chain id -> pixel boxes, 0-based)."""
    root = ET.fromstring(xml_text)
    width, height = int(root.findtext("size/width")), int(root.findtext("size/height"))
    boxes: dict[str, list[list[float]]] = {}
    for obj in root.iter("object"):
        box = obj.find("bndbox")
        names = [n.text.strip() for n in obj.findall("name") if n.text]
        for name in names:
            boxes.setdefault(name, [])
        if box is not None:
            xyxy = [float(box.findtext(k)) - 1 for k in ("xmin", "ymin", "xmax", "ymax")]
            for name in names:
                boxes[name].append(xyxy)
    return width, height, boxes


def _read(path: str) -> str:
    from apache_beam.io.filesystems import FileSystems

    with FileSystems.open(path) as handle:
        data = handle.read()
    try:
        return data.decode("utf-8-sig")  # a byte order mark is skipped
    except UnicodeDecodeError as err:
        raise BadEncoding(f"{path}: not UTF-8: byte 0x{data[err.start]:02x} at byte {err.start}") from None


def records_for_image(image_id: str | bytes, root: str, split: str, all_mentions: bool = False,
                      where: str = "") -> list[Record]:
    """All phrase-grounding records of one image (or one rejected record saying why none).

    ``image_id`` is a line of the split file (bytes as read, or text); ``where`` names its place there.
    """
    try:
        image_id = decode_line(image_id).strip() if isinstance(image_id, bytes) else image_id.strip()
    except BadEncoding as err:
        bad = Record(id=stable_id(SOURCE, where, image_id), source=SOURCE, source_id=where, dataset=SOURCE, split=split)
        return [bad.reject("read", "bad_encoding", f"{where}: {err}")]
    base = Record(id=stable_id(SOURCE, image_id), source=SOURCE, source_id=image_id, dataset=SOURCE, split=split,
                  image_path=f"{image_id}.jpg")
    sentences, annotation = resolve(f"{root}/Sentences", f"{image_id}.txt"), resolve(f"{root}/Annotations",
                                                                                     f"{image_id}.xml")
    if sentences is None or annotation is None or "/" in image_id:
        return [base.reject("read", "path_escapes_root", f"image id {image_id!r} is not a file name")]
    try:
        phrases = parse_sentences(_read(sentences))
        width, height, chains = parse_annotation(_read(annotation))
    except BadEncoding as err:
        return [base.reject("read", "bad_encoding", str(err)[:300])]
    except OSError as err:
        return [base.reject("read", "missing_annotation", f"{image_id}: {type(err).__name__}: {err}"[:300])]
    except (ET.ParseError, ValueError, TypeError) as err:
        return [base.reject("read", "bad_annotation", f"{image_id}: {err}"[:300])]
    out, seen = [], set()
    for p in phrases:
        if p.chain == "0" or "notvisual" in p.types or (not all_mentions and p.chain in seen):
            continue
        seen.add(p.chain)
        key = (image_id, p.chain, p.sentence_index) if all_mentions else (image_id, p.chain)
        question = prompts.render("flickr30k_question", phrase=p.text, sentence=p.sentence)
        record = Record(id=stable_id(SOURCE, *key), source=SOURCE, source_id="#".join(map(str, key)),
                        dataset=SOURCE, split=split, question=question, answer=p.text,
                        image_path=f"{image_id}.jpg", width=width, height=height, gt_boxes=chains.get(p.chain, []),
                        labels=[p.text] * len(chains.get(p.chain, [])))
        if not require_text(record).rejection and not record.gt_boxes:
            record.reject("read", "phrase_not_boxed", f"chain {p.chain} ({'/'.join(p.types)}) has no box")
        out.append(record)
    return out


class ReadFlickr30k(beam.PTransform):
    """Image ids from the split file, spread over workers, each read into its records."""

    def __init__(self, src, prompt_texts: dict[str, str] | None = None):
        super().__init__()
        self.src, self.prompt_texts = src, prompt_texts or {}  # the question is a prompt a job may replace

    def expand(self, pbegin):
        root, split_file = self.src.path.rstrip("/"), split_file_of(self.src)
        split, all_mentions = self.src.split, self.src.all_mentions
        return (read_lines(pbegin, split_file, "ReadSplit")
                | "Spread" >> beam.Reshuffle()
                | "ReadImage" >> beam.FlatMapTuple(prompts.Using(
                    self.prompt_texts, lambda name, offset, line: records_for_image(
                        line, root, split, all_mentions, where=f"{name.rsplit('/', 1)[-1]}@{offset}"))))


class Flickr30kConfig(SourceBase):
    kind: Literal["flickr30k"] = Field(description="Flickr30k Entities; `path` is the folder holding "
                                       "Sentences/, Annotations/ and the split files.")
    split: Literal["train", "val", "test"] = Field("train", description="Which split file's image ids to read.")
    split_file: Optional[str] = Field(None, description="Default: `<path>/<split>.txt`.")
    all_mentions: bool = Field(False, description="One record per mention instead of per phrase chain.")


def split_file_of(cfg) -> str:
    return cfg.split_file or f"{cfg.path.rstrip('/')}/{cfg.split}.txt"


class Flickr30k(Source):
    kind, Config, provenance = SOURCE, Flickr30kConfig, PROVENANCE
    path_keys = ("path", "image_root", "split_file")

    def read(self, cfg):
        return ReadFlickr30k(cfg, self.prompt_texts)

    def paths(self, cfg):  # path is a folder; the split file says what to read
        return {"split_file": [split_file_of(cfg)]}
