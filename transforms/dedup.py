"""Near-duplicate images across sources: one perceptual identity per group of near-identical images.

Every loaded record gets its image's perceptual hash (``split.image_identity``). Hashes within
``quality.near_duplicates.max_distance`` bits are joined into groups, whose identity is their smallest
hash; every record gets its group's (``record.image_group``), which the held-out split then uses, so
near-duplicates never straddle train and test. With ``enabled``, of the records asking the same
question (normalised) of one group, the one with the smallest id is kept and the others are rejected
as ``duplicate``.

How it scales: only hashes and ids are shuffled, never images. Candidate pairs come from banding (a
hash cut into ``max_distance + 1`` bands: two hashes that close agree on at least one band), grouped
per band value, so the pair work grows with the images sharing a band, not the square of all images.
Only the near pairs found (edges) meet in one place, where a union-find makes the groups; the side
input the records read holds just the hashes that have a near copy, and the duplicate step's side
input just the (group, question) keys asked more than once.
"""
from __future__ import annotations

import re
from itertools import pairwise

import apache_beam as beam
from apache_beam.metrics import Metrics
from pydantic import BaseModel, ConfigDict, Field

from groundcot.schemas.record import Record
from groundcot.transforms.split import image_identity
from groundcot.transforms.stage import NAMESPACE

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
    """``value`` cut into ``n`` (band number, bits) pieces covering all 64 bits.

    >>> bands(0xff00, 2)
    [(0, 65280), (1, 0)]
    """
    edges = [round(i * BITS / n) for i in range(n + 1)]
    return [(i, (value >> lo) & ((1 << (hi - lo)) - 1)) for i, (lo, hi) in enumerate(pairwise(edges))]


def near_pairs(members, max_distance: int, chunk: int = 512) -> list[tuple[str, str]]:
    """The pairs of hex hashes of one band bucket within ``max_distance`` bits (each pair smaller first),
    compared as numpy uint64 arrays ``chunk`` rows at a time.

    >>> near_pairs(["00ff", "00fe", "ff00", "00fc"], 1)
    [('00000000000000fc', '00000000000000fe'), ('00000000000000fe', '00000000000000ff')]
    """
    import numpy as np

    values = np.array(sorted({int(h, 16) for h in members}), dtype=np.uint64)
    found = []
    for start in range(0, len(values), chunk):
        block = values[start:start + chunk]
        close = np.bitwise_count(block[:, None] ^ values[None, :]) <= max_distance
        for i, j in zip(*np.nonzero(close)):
            if start + i < j:
                found.append((hexed(int(values[start + i])), hexed(int(values[j]))))
    return found


def components(pairs) -> dict:
    """value -> the smallest value of its connected group, for every value in a pair (union-find).

    >>> components([(3, 5), (5, 9), (20, 30)])
    {3: 3, 5: 3, 9: 3, 20: 20, 30: 20}
    """
    parent: dict[int, int] = {}

    def root(v):
        parent.setdefault(v, v)
        while parent[v] != v:
            parent[v] = parent[parent[v]]
            v = parent[v]
        return v

    for a, b in pairs:
        low, high = sorted((root(a), root(b)))
        parent[high] = low  # the smaller value stays the root: a deterministic identity
    return {v: root(v) for v in sorted(parent)}


def groups(hashes, max_distance: int) -> dict[str, str]:
    """hash -> the smallest hash of its group, for hashes with a near copy (in one process; the job
    does the same in Beam steps).

    >>> groups(["ff00ff00ff00ff00", "ff00ff00ff00ff01", "0000000000000000", "ff00ff00ff00ff03"], 1)
    {'ff00ff00ff00ff01': 'ff00ff00ff00ff00', 'ff00ff00ff00ff03': 'ff00ff00ff00ff00'}
    """
    buckets: dict[tuple[int, int], list[str]] = {}
    for h in set(hashes):
        for band in bands(int(h, 16), max_distance + 1):
            buckets.setdefault(band, []).append(h)
    pairs = [p for members in buckets.values() for p in near_pairs(members, max_distance)]
    return {v: r for v, r in components(pairs).items() if v != r}


def hexed(value: int) -> str:
    return f"{value:0{BITS // 4}x}"


def fingerprint(record: Record) -> Record:
    record.image_group = image_identity(record.image)
    return record


class _Components(beam.CombineFn):
    """The near pairs of the whole job -> {hash: its group's hash} for hashes that have a near copy."""

    def create_accumulator(self):
        return set()

    def add_input(self, acc, pair):
        acc.add(pair)
        return acc

    def merge_accumulators(self, accs):
        return set().union(*accs)

    def extract_output(self, acc):
        return {v: r for v, r in components(acc).items() if v != r}


class _Smallest(beam.CombineFn):
    """(id, source) of one key's records -> (the smallest, how many)."""

    def create_accumulator(self):
        return None, 0

    def add_input(self, acc, item):
        return min(acc[0], item) if acc[0] else item, acc[1] + 1

    def merge_accumulators(self, accs):
        firsts = [a[0] for a in accs if a[0]]
        return (min(firsts) if firsts else None), sum(a[1] for a in accs)

    def extract_output(self, acc):
        return acc


def dedup_key(record: Record) -> tuple[str, str]:
    return record.image_group, question_key(record.question)


def reject_copy(record: Record, contested: dict) -> Record:
    """A record whose (image group, question) another record with a smaller id also has: ``duplicate``
    (counted ``dedup.ok`` / ``dedup.rejected.duplicate``)."""
    if record.rejection is not None:
        return record
    if (first := contested.get(dedup_key(record))) and first[0] != record.id:
        record.reject(STAGE, "duplicate", f"{record.source_id}: the question of {first[0]} ({first[1]}) on a "
                                          f"near-identical image (group {record.image_group})")
    Metrics.counter(NAMESPACE, f"{STAGE}.ok" if record.rejection is None else f"{STAGE}.rejected.duplicate").inc()
    return record


class Grouped(beam.PTransform):
    """Records -> (records with ``image_group`` set, duplicates rejected when enabled; ``(key, 1)`` counts
    of the distinct image groups per source and in all, for the job's counts)."""

    def __init__(self, cfg: NearDuplicates, stage):
        super().__init__()
        self.cfg, self.stage = cfg, stage

    def expand(self, records):
        k = self.cfg.max_distance
        records = records | "Fingerprint" >> beam.ParDo(self.stage("fingerprint", fingerprint))
        live = records | "Live" >> beam.Filter(lambda r: r.rejection is None)
        joined = (live | "Hashes" >> beam.Map(lambda r: r.image_group)
                  | "Distinct" >> beam.Distinct()
                  | "Bands" >> beam.FlatMap(lambda h: [(f"{i}:{bits:x}", h) for i, bits in bands(int(h, 16), k + 1)])
                  | "ByBand" >> beam.GroupByKey()
                  | "NearPairs" >> beam.FlatMapTuple(lambda _, members: near_pairs(members, k))
                  | "JoinGroups" >> beam.CombineGlobally(_Components()))

        def regroup(record, found):
            if record.rejection is None:
                record.image_group = found.get(record.image_group, record.image_group)
            return record

        records = records | "Regroup" >> beam.Map(regroup, beam.pvalue.AsSingleton(joined))
        images = records | "Images" >> beam.FlatMap(lambda r: [] if r.rejection else [(r.source, r.image_group)])
        per_source = (images | "DistinctPerSource" >> beam.Distinct()
                      | "CountPerSource" >> beam.MapTuple(lambda source, _: (f"{source}\tdistinct_images\t\t", 1)))
        overall = (images | "GroupsOnly" >> beam.Values() | "DistinctGroups" >> beam.Distinct()
                   | "CountAll" >> beam.Map(lambda _: ("\tdistinct_images\t\t", 1)))
        if self.cfg.enabled:
            contested = (records | "Grouped" >> beam.Filter(lambda r: r.rejection is None)
                         | "ByQuestion" >> beam.Map(lambda r: (dedup_key(r), (r.id, r.source)))
                         | "Smallest" >> beam.CombinePerKey(_Smallest())
                         | "Asked2x" >> beam.Filter(lambda kv: kv[1][1] > 1)
                         | "First" >> beam.MapTuple(lambda key, found: (key, found[0])))
            records = records | "Duplicates" >> beam.Map(reject_copy, beam.pvalue.AsDict(contested))
        return records, (per_source, overall) | "ImageCounts" >> beam.Flatten()
