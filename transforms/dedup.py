"""Near-duplicate images across sources: one perceptual identity per group of near-identical images.

Every loaded record gets its image's perceptual hash (``split.image_identity``). The job's distinct
hashes are grouped (Hamming distance at most ``quality.near_duplicates.max_distance``) in one global
combine: hashes are 8-byte integers, and candidate pairs come from banding (a hash cut into
``max_distance + 1`` bands: two hashes that close agree on at least one band), so the work grows with
the number of distinct images, not its square. A group's identity is its smallest hash; every record
gets its group's (``record.image_group``), which the held-out split then uses, so near-duplicates never
straddle train and test. With ``enabled``, records asking the same question (normalised) of one group
are grouped by that key; the one with the smallest id is kept and the others are rejected as
``duplicate``.
"""
from __future__ import annotations

import re

import apache_beam as beam
from pydantic import BaseModel, ConfigDict, Field

from groundcot.schemas.record import Record
from groundcot.transforms.split import image_identity

STAGE = "dedup"
BITS = 64


class NearDuplicates(BaseModel):
    """``quality.near_duplicates``: how near two images must be to count as one."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = Field(False, description="Reject a record asking the same question (normalised) as "
                          "another on a near-identical image, from any source, as `duplicate` (the smallest "
                          "id is kept). The grouping itself also runs whenever split.test_fraction is set.")
    max_distance: int = Field(4, ge=0, le=16, description="Most differing bits of two 64-bit perceptual hashes "
                              "(imagehash.phash) of one image; a JPEG re-encoding or resize stays within 4.")


def distance(a: str, b: str) -> int:
    """Differing bits of two hex hashes.

    >>> distance("ff00", "ff01"), distance("0f", "f0")
    (1, 8)
    """
    return (int(a, 16) ^ int(b, 16)).bit_count()


def question_key(text: str) -> str:
    """A question as compared: lower case, words only.

    >>> question_key("  What colour is the Cat? "), question_key("what colour is the cat")
    ('what colour is the cat', 'what colour is the cat')
    """
    return " ".join(re.findall(r"\w+", text.lower()))


def bands(value: int, n: int) -> list[tuple[int, int]]:
    """``value`` cut into ``n`` (band number, bits) pieces covering all 64 bits."""
    edges = [round(i * BITS / n) for i in range(n + 1)]
    return [(i, (value >> lo) & ((1 << (hi - lo)) - 1)) for i, (lo, hi) in enumerate(zip(edges, edges[1:]))]


def groups(hashes, max_distance: int) -> dict[str, str]:
    """hash -> the smallest hash of its group (hashes joined by distances up to ``max_distance``), for
    the hashes whose group has another member (a lone hash is its own group).

    >>> groups(["ff00ff00ff00ff00", "ff00ff00ff00ff01", "0000000000000000", "ff00ff00ff00ff03"], 1)
    {'ff00ff00ff00ff01': 'ff00ff00ff00ff00', 'ff00ff00ff00ff03': 'ff00ff00ff00ff00'}
    """
    values = sorted({int(h, 16) for h in hashes})
    parent = {v: v for v in values}

    def root(v):
        while parent[v] != v:
            parent[v] = parent[parent[v]]
            v = parent[v]
        return v

    buckets: dict[tuple[int, int], list[int]] = {}
    for v in values:
        for band in bands(v, max_distance + 1):
            buckets.setdefault(band, []).append(v)
    for members in buckets.values():
        for i, a in enumerate(members):
            for b in members[i + 1:]:
                if (a ^ b).bit_count() <= max_distance and root(a) != root(b):
                    low, high = sorted((root(a), root(b)))
                    parent[high] = low  # the smaller hash stays the root: a deterministic identity
    width = BITS // 4
    return {f"{v:0{width}x}": f"{root(v):0{width}x}" for v in values if root(v) != v}


def fingerprint(record: Record) -> Record:
    record.image_group = image_identity(record.image)
    return record


class _Hashes(beam.CombineFn):
    """The job's distinct hashes as integers, then their groups."""

    def __init__(self, max_distance: int):
        self.max_distance = max_distance

    def create_accumulator(self):
        return set()

    def add_input(self, acc, value):
        acc.add(int(value, 16))
        return acc

    def merge_accumulators(self, accs):
        return set().union(*accs)

    def extract_output(self, acc):
        return groups((f"{v:016x}" for v in acc), self.max_distance)


def keep_smallest(_, records) -> list[Record]:
    """Records of one (image group, question): the smallest id kept, the others rejected as duplicates."""
    ordered = sorted(records, key=lambda r: (r.id, r.style))
    for copy in ordered[1:]:
        copy.reject(STAGE, "duplicate", f"{copy.source_id}: the question of {ordered[0].id} ({ordered[0].source}) "
                                        f"on a near-identical image {copy.image_group}")
    return ordered


class Grouped(beam.PTransform):
    """Records -> (records with ``image_group`` set, duplicates rejected when ``drop``; ``(key, 1)`` counts of
    the distinct image groups per source for the job's counts)."""

    def __init__(self, cfg: NearDuplicates, stage):
        super().__init__()
        self.cfg, self.stage = cfg, stage

    def expand(self, records):
        records = records | "Fingerprint" >> beam.ParDo(self.stage("fingerprint", fingerprint))
        live = records | "Live" >> beam.Filter(lambda r: r.rejection is None)
        found = (live | "Hashes" >> beam.Map(lambda r: r.image_group)
                 | "Distinct" >> beam.Distinct()
                 | "Group" >> beam.CombineGlobally(_Hashes(self.cfg.max_distance)))

        def regroup(record, joined):
            record.image_group = joined.get(record.image_group, record.image_group)
            return record

        records = records | "Regroup" >> beam.Map(regroup, beam.pvalue.AsSingleton(found))
        if self.cfg.enabled:
            fresh, rejected = records | "Rejected" >> beam.Partition(lambda r, _: int(r.rejection is not None), 2)
            kept = (fresh
                    | "ByQuestion" >> beam.Map(lambda r: ((r.image_group, question_key(r.question)), r))
                    | "SameQuestion" >> beam.GroupByKey()
                    | "KeepSmallest" >> beam.FlatMapTuple(keep_smallest))
            records = (kept, rejected) | "Merge" >> beam.Flatten()
        distinct = (records
                    | "Images" >> beam.FlatMap(lambda r: [] if r.rejection else [(r.source, r.image_group)])
                    | "DistinctPerSource" >> beam.Distinct()
                    | "CountImages" >> beam.MapTuple(lambda source, _: (f"{source}\tdistinct_images\t\t", 1)))
        return records, distinct
