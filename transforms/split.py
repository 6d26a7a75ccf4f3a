"""The held-out split: a record goes to ``test`` by its image's content, never by its path.

``image_identity`` is the one definition of "the same image": a perceptual hash (``imagehash.phash``), so
a copy re-encoded at another JPEG quality or size has the same identity or one a few bits away. The job
groups near-identical identities (``transforms/dedup.py``) and sets ``record.image_group`` to the group's;
``assign_split`` puts a record in ``test`` when a seeded hash of that group falls under
``split.test_fraction``, so every row of one image, from any source, in any encoding, lands in one split.
"""
from __future__ import annotations

import hashlib
import io

import imagehash
from PIL import Image

from groundcot.schemas.record import Record

STAGE = "split"
TEST = "test"
HELD_FROM = ("", "train")  # the source splits test_fraction re-assigns; val/test splits a source gives stay


def image_identity(data: bytes) -> str:
    """The image's perceptual hash (DCT hash, 64 bits) as 16 hex digits: the same picture in any format,
    at another JPEG quality or size, is at most a few bits away (``dedup.distance``). ``data`` is the
    image stage's output (already upright RGB)."""
    with Image.open(io.BytesIO(data)) as image:
        return str(imagehash.phash(image.convert("RGB")))


def in_test(identity: str, test_fraction: float, seed: int) -> bool:
    """Whether an image goes to the test split: a seeded hash of its identity, read as a number in [0, 1).

    >>> in_test("ab", 0.0, 0), in_test("ab", 1.0, 0)
    (False, True)
    """
    digest = hashlib.sha256(f"{seed}\x1f{identity}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < test_fraction


def assign_split(record: Record, test_fraction: float = 0.0, seed: int = 0, keep_source: bool = True) -> Record:
    """Set ``record.split`` by its image: test when held out, else train. With ``keep_source``, a split the
    source gave other than train (val, test) stays as it is."""
    if not test_fraction or (keep_source and record.split not in HELD_FROM):
        return record
    identity = record.image_group or image_identity(record.image)
    record.split = TEST if in_test(identity, test_fraction, seed) else "train"
    return record
