"""Mixtures: so many records per source and difficulty bucket, chosen by seeded sampling before the
model stages (depth, masks, the teacher), so no model call is paid for a record the mix then drops.

Each record falls in the first ``mix.groups`` entry it matches (by ``source`` and ``difficulty``); a
record no group matches is rejected as ``outside_mix``. A group asks a ``count`` or a ``share`` (shares
of ``mix.total``, or of the most records the sources allow at those shares). In a group, records are
ranked by a seeded hash of their id and the lowest ranks are kept; the rest are rejected as
``mix_full``. Only ranks travel to the grouping step (8 bytes a record), and what comes back to the
records is one threshold per group, so the images never move.
"""
from __future__ import annotations

import hashlib
import math
from typing import Literal, Optional

import apache_beam as beam
from pydantic import BaseModel, ConfigDict, Field, model_validator

from groundcot.schemas.record import Record

STAGE = "mix"
BUCKETS = ("easy", "medium", "hard")
OUTSIDE = "-"


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Group(Section):
    source: Optional[str] = Field(None, description="Records of this source kind (any if unset).")
    difficulty: Optional[Literal["easy", "medium", "hard"]] = Field(None, description="Records of this bucket "
                                                                    "(any if unset).")
    share: Optional[float] = Field(None, gt=0, description="Relative share of the mix.")
    count: Optional[int] = Field(None, ge=0, description="Exactly this many records (fewer if the sources "
                                 "hold fewer).")

    @model_validator(mode="after")
    def _one(self):
        if (self.share is None) == (self.count is None):
            raise ValueError("give a group either share or count")
        return self

    def label(self) -> str:
        return ",".join(f"{k}={v}" for k, v in (("source", self.source), ("difficulty", self.difficulty)) if v) or "all"

    def matches(self, source: str, difficulty: str) -> bool:
        return self.source in (None, source) and self.difficulty in (None, difficulty)


class Mix(Section):
    groups: list[Group] = Field(default_factory=list, description="The mix, one entry per (source, difficulty) "
                                "group; a record goes to the first entry it matches. Empty: no mix, every record.")
    total: Optional[int] = Field(None, ge=1, description="Records wanted in all, split by the shares (unset: "
                                 "the most the sources allow at those shares).")
    seed: int = Field(0, description="Changes which records fill each group.")
    small_area: float = Field(0.05, gt=0, lt=1, description="A record whose GT boxes cover less than this share "
                              "of the image is hard.")
    large_area: float = Field(0.25, gt=0, lt=1, description="A record whose GT boxes cover more than this share "
                              "is easy (between the two: medium).")

    @model_validator(mode="after")
    def _kinds(self):
        shares = [g.share is not None for g in self.groups]
        if any(shares) and not all(shares):
            raise ValueError("groups: give every group a share or every group a count, not both")
        if self.total is not None and not any(shares):
            raise ValueError("total: goes with shares (the counts already say how many)")
        return self


def difficulty(record: Record, small_area: float = 0.05, large_area: float = 0.25) -> str:
    """The record's bucket from its GT boxes: the share of the image they cover, one bucket harder for
    every box past the second.

    >>> r = Record(id="a", source="s", source_id="a", width=100, height=100, gt_boxes=[[0, 0, 10, 10]])
    >>> difficulty(r), difficulty(Record(id="b", source="s", source_id="b", width=10, height=10,
    ...                                  gt_boxes=[[0, 0, 8, 8]]))
    ('hard', 'easy')
    """
    area = sum(max(0.0, x2 - x1) * max(0.0, y2 - y1) for x1, y1, x2, y2 in record.gt_boxes)
    share = area / max(1, record.width * record.height)
    level = 2 if share < small_area else 1 if share <= large_area else 0
    return BUCKETS[min(2, level + max(0, len(record.gt_boxes) - 2))]


def group_of(record: Record, mix: Mix) -> str:
    level = difficulty(record, mix.small_area, mix.large_area)
    return next((g.label() for g in mix.groups if g.matches(record.source, level)), OUTSIDE)


def rank(record_id: str, seed: int) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}\x1f{record_id}".encode()).digest()[:8], "big")


def targets(mix: Mix, available: dict[str, int]) -> dict[str, int]:
    """group label -> records to keep, given how many each group holds.

    >>> m = Mix(groups=[Group(source="a", share=2), Group(source="b", share=1)])
    >>> targets(m, {"source=a": 50, "source=b": 10}), targets(m.model_copy(update={"total": 9}), {"source=a": 5})
    ({'source=a': 20, 'source=b': 10}, {'source=a': 5, 'source=b': 0})
    """
    if not mix.groups[0].share:
        return {g.label(): min(g.count, available.get(g.label(), 0)) for g in mix.groups}
    total_share = sum(g.share for g in mix.groups)
    total = mix.total if mix.total is not None else min(
        available.get(g.label(), 0) * total_share / g.share for g in mix.groups)
    return {g.label(): min(available.get(g.label(), 0), math.floor(total * g.share / total_share + 1e-9))
            for g in mix.groups}


def asked(mix: Mix) -> dict:
    """The mix as asked, for stats.json and the card."""
    return {"groups": {g.label(): {"share": g.share} if g.share else {"count": g.count} for g in mix.groups},
            "total": mix.total, "seed": mix.seed}


def threshold(label: str, ranks, wanted: dict[str, int] | None = None):
    """A group's highest rank kept (-1: none)."""
    n = (wanted or {}).get(label, 0)
    return label, (sorted(ranks)[n - 1] if n else -1)


class Sample(beam.PTransform):
    """Records -> (the mix's records, the others rejected; ``(key, n)`` counts: per group the records
    available, wanted and kept)."""

    def __init__(self, mix: Mix):
        super().__init__()
        self.mix = mix

    def expand(self, records):
        mix = self.mix
        ranked = records | "Rank" >> beam.Map(
            lambda r: (r, None if r.rejection else group_of(r, mix), rank(r.id, mix.seed)))
        keyed = ranked | "Keyed" >> beam.FlatMap(lambda t: [(t[1], t[2])] if t[1] not in (None, OUTSIDE) else [])
        grouped = keyed | "ByGroup" >> beam.GroupByKey()
        available = (grouped | "Available" >> beam.MapTuple(lambda label, ranks: (label, len(list(ranks))))
                     | "AvailableDict" >> beam.combiners.ToDict())
        wanted = available | "Targets" >> beam.Map(lambda found: targets(mix, found))
        cut = grouped | "Thresholds" >> beam.MapTuple(threshold, beam.pvalue.AsSingleton(wanted))

        def choose(item, cuts):
            record, label, r = item
            if label is None:
                return record
            if label == OUTSIDE:
                return record.reject(STAGE, "outside_mix", f"{record.source_id}: no mix group matches source "
                                     f"{record.source}, difficulty {difficulty(record, mix.small_area, mix.large_area)}")
            if r > cuts.get(label, -1):
                return record.reject(STAGE, "mix_full", f"{record.source_id}: group {label} is filled")
            return record

        chosen = ranked | "Choose" >> beam.Map(choose, beam.pvalue.AsDict(cut))
        counts = ((available | "AvailableCounts" >> beam.FlatMap(
                      lambda found: [(f"\tmix_available\t{k}\t", n) for k, n in found.items()]),
                   wanted | "WantedCounts" >> beam.FlatMap(
                      lambda want: [(f"\tmix_wanted\t{k}\t", n) for k, n in want.items()])) | "MixCounts" >> beam.Flatten())
        kept = chosen | "Kept" >> beam.FlatMap(
            lambda r: [] if r.rejection else [(f"{r.source}\tmix_kept\t{group_of(r, mix)}\t", 1)])
        return chosen, (counts, kept) | "AllMixCounts" >> beam.Flatten()
