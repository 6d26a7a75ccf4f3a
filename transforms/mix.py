"""Mixtures: so many records per source, style and difficulty bucket, chosen by seeded sampling before
the model stages (depth, masks, the teacher, the critic), so no model call is paid for a record the mix
then drops.

The mix counts records, or rows (a record in one style) when a group names a ``style``: then every
(record, style) is a unit of its own. Each unit falls in the first ``mix.groups`` entry it matches (by
``source``, ``style`` and ``difficulty``); a unit no group matches is ``outside_mix``. A group asks a
``count`` or a ``share`` (shares of ``mix.total``, or of the most units the sources allow at those
shares). In a group, units are ranked by a seeded hash of their id (and style) and the lowest ranks are
kept; the rest are ``mix_full``. A record none of whose units is kept is rejected before the model
stages; a record some of whose styles are dropped carries the rest (``record.mix_styles``) and its
dropped styles are rejected right after the styles are made (``drop_styles``), before the teacher.

How it scales: only (group, rank) pairs, 7 bytes of rank each, travel to the grouping step; units are
counted per group by a combiner, and each group's threshold is read off its ranks keeping only the
ranks it wants; what comes back to the records is one threshold per group (a side input), so the
images never move.
"""
from __future__ import annotations

import hashlib
import heapq
import math
from typing import Literal, Optional

import apache_beam as beam
from apache_beam.metrics import Metrics
from pydantic import BaseModel, ConfigDict, Field, model_validator

from groundcot.schemas.record import Record
from groundcot.transforms.stage import NAMESPACE

STAGE = "mix"
BUCKETS = ("easy", "medium", "hard")
OUTSIDE = "-"


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Group(Section):
    source: Optional[str] = Field(None, description="Records of this source kind (any if unset).")
    style: Optional[str] = Field(None, description="Rows of this style (any if unset); a group naming a style "
                                 "makes the mix count rows (record x style), not records.")
    difficulty: Optional[Literal["easy", "medium", "hard"]] = Field(None, description="Records of this bucket "
                                                                    "(any if unset).")
    share: Optional[float] = Field(None, gt=0, description="Relative share of the mix.")
    count: Optional[int] = Field(None, ge=0, description="Exactly this many records or rows (fewer if the "
                                 "sources hold fewer).")

    @model_validator(mode="after")
    def _one(self):
        if (self.share is None) == (self.count is None):
            raise ValueError("give a group either share or count")
        return self

    def label(self) -> str:
        """The group's name in stats.json and the card, e.g. ``source=viscot,difficulty=hard`` (``all``)."""
        named = (("source", self.source), ("style", self.style), ("difficulty", self.difficulty))
        return ",".join(f"{k}={v}" for k, v in named if v) or "all"

    def matches(self, source: str, style: str | None, difficulty: str) -> bool:
        return self.source in (None, source) and self.style in (None, style) and self.difficulty in (None, difficulty)


class Mix(Section):
    groups: list[Group] = Field(default_factory=list, description="The mix, one entry per (source, style, "
                                "difficulty) group; a record (or row) goes to the first entry it matches. Empty: "
                                "no mix, every record.")
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
        labels = [g.label() for g in self.groups]
        if len(set(labels)) < len(labels):
            raise ValueError(f"groups: two groups select the same records ({labels})")
        if self.small_area >= self.large_area:
            raise ValueError("small_area must be below large_area")
        return self

    def per_style(self) -> bool:
        """Whether the mix counts rows (a group names a style) rather than records."""
        return any(g.style for g in self.groups)


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


def units(record: Record, mix: Mix, styles: list[str]) -> list[tuple[str | None, str, int]]:
    """The record's units as (style or None, group label or OUTSIDE, seeded rank): one per style when the mix
    counts rows, else one."""
    level = difficulty(record, mix.small_area, mix.large_area)
    found = []
    for style in (styles if mix.per_style() else [None]):
        label = next((g.label() for g in mix.groups if g.matches(record.source, style, level)), OUTSIDE)
        found.append((style, label, rank(record.id if style is None else f"{record.id}\x1f{style}", mix.seed)))
    return found


def rank(unit_id: str, seed: int) -> int:
    """A seeded hash of the unit as a 56-bit number (Beam's integer coder takes signed 64-bit)."""
    return int.from_bytes(hashlib.sha256(f"{seed}\x1f{unit_id}".encode()).digest()[:7], "big")


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
    """A group's highest rank kept (-1: none); holds only the ``wanted`` lowest ranks while it reads them."""
    n = (wanted or {}).get(label, 0)
    return label, (heapq.nsmallest(n, ranks)[-1] if n else -1)


def choose(record: Record, mix: Mix, styles: list[str], cuts: dict[str, int]) -> Record:
    """Keep the record's units whose rank is within their group's threshold; reject it when none is kept,
    else name the styles kept when some were dropped (``mix_styles``). Counted ``mix.ok`` / ``mix.rejected.<reason>``."""
    if record.rejection is not None:
        return record
    record = _choose(record, mix, styles, cuts)
    Metrics.counter(NAMESPACE, f"{STAGE}.ok" if record.rejection is None
                    else f"{STAGE}.rejected.{record.rejection.reason}").inc()
    return record


def _choose(record: Record, mix: Mix, styles: list[str], cuts: dict[str, int]) -> Record:
    found = units(record, mix, styles)
    kept = [style for style, label, r in found if label != OUTSIDE and r <= cuts.get(label, -1)]
    if not kept:
        if all(label == OUTSIDE for _, label, _ in found):
            level = difficulty(record, mix.small_area, mix.large_area)
            return record.reject(STAGE, "outside_mix", f"{record.source_id}: no mix group matches source "
                                 f"{record.source}, difficulty {level}")
        return record.reject(STAGE, "mix_full", f"{record.source_id}: its groups are filled")
    record.mix_styles = None if kept == [None] or len(kept) == len(styles) else kept
    return record


def drop_styles(record: Record) -> Record:
    """After the styles are made: a row of a style the mix dropped for its record is rejected (``mix_full``)."""
    if record.rejection is None and record.mix_styles is not None and record.style not in record.mix_styles:
        record.reject(STAGE, "mix_full", f"{record.source_id}: the mix keeps its {', '.join(record.mix_styles)} "
                                         f"rows, not {record.style}")
    return record


class Sample(beam.PTransform):
    """Records -> (the mix's records, the others rejected; ``(key, n)`` counts: per group the units
    available, wanted and kept)."""

    def __init__(self, mix: Mix, styles: list[str]):
        super().__init__()
        self.mix, self.styles = mix, list(styles)

    def expand(self, records):
        mix, styles = self.mix, self.styles
        keyed = records | "Units" >> beam.FlatMap(lambda r: [] if r.rejection else [
            (label, rk) for _, label, rk in units(r, mix, styles) if label != OUTSIDE])
        available = (keyed | "Available" >> beam.combiners.Count.PerKey()
                     | "AvailableDict" >> beam.combiners.ToDict())
        wanted = available | "Targets" >> beam.Map(lambda found: targets(mix, found))
        cut = (keyed | "ByGroup" >> beam.GroupByKey()
               | "Thresholds" >> beam.MapTuple(threshold, beam.pvalue.AsSingleton(wanted)))
        chosen = records | "Choose" >> beam.Map(lambda r, cuts: choose(r, mix, styles, cuts), beam.pvalue.AsDict(cut))
        counts = ((available | "AvailableCounts" >> beam.FlatMap(
                      lambda found: [(f"\tmix_available\t{k}\t", n) for k, n in found.items()]),
                   wanted | "WantedCounts" >> beam.FlatMap(
                      lambda want: [(f"\tmix_wanted\t{k}\t", n) for k, n in want.items()])) | "MixCounts" >> beam.Flatten())
        kept = chosen | "Kept" >> beam.FlatMap(lambda r: [] if r.rejection else [
            (f"{r.source}\tmix_kept\t{label}\t", 1) for style, label, _ in units(r, mix, styles)
            if label != OUTSIDE and (r.mix_styles is None or style in r.mix_styles)])
        return chosen, (counts, kept) | "AllMixCounts" >> beam.Flatten()
