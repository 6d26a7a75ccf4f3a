"""The groundcot Beam graph, top to bottom.

  per source: read -> (limit) -> drop duplicates -> count in / count filtered -> load image  (then flattened)
  -> perceptual image groups, near-duplicates rejected   [if split.test_fraction or quality.near_duplicates.enabled]
  -> the mix: seeded sampling per source, style and difficulty   [if mix.groups]
  -> held-out split by image group        [if split.test_fraction]
  -> depth (RunInference, batched)        [if depth.enabled]
  -> SAM2 masks (RunInference, batched)   [if masks.enabled]
  -> reverse expansion -> one record per style (the styles the mix dropped rejected) -> style plan
  -> teacher -> validation -> critic [if quality.critic.enabled] -> sif depth image  [if sif.depth_input]
  -> Parquet shards | rejected JSONL | outcome and per-split counts -> OUT/_counts (read back for stats.json)
"""
from __future__ import annotations

import json
from functools import partial

import apache_beam as beam
from apache_beam.metrics import Metrics

from groundcot.pipeline.config import JobConfig, prompt_texts
from groundcot.pipeline.stats import NoteVersions
from groundcot.transforms.cache import with_teacher_cache
from groundcot.transforms.critic import client_config
from groundcot.transforms.dedup import Grouped
from groundcot.transforms.depth_image import attach_depth_image
from groundcot.transforms.expand import expand_record
from groundcot.transforms.images import load_image
from groundcot.transforms.mix import Sample, drop_styles
from groundcot.transforms.models import ResolvedModel
from groundcot.transforms.sink import WriteOutputs, split_name
from groundcot.transforms.sources import get_source
from groundcot.transforms.sources.common import DropDuplicates
from groundcot.transforms.split import assign_split
from groundcot.transforms.stage import NAMESPACE, Stage
from groundcot.transforms.styles import fan_out, plan
from groundcot.transforms.teach.dofn import Critique, Teach
from groundcot.transforms.validate import validate


def _limit(pcoll, n: int, label: str):
    """Keep the n records with the smallest ids: the same records on every run."""
    return (pcoll
            | f"{label}Smallest" >> beam.combiners.Top.Smallest(n, key=lambda r: r.id)
            | f"{label}Unpack" >> beam.FlatMap(lambda records: records))


def _arriving(stage: str):
    """Count the live records a model stage is given (``<stage>.records``): what it pays for."""
    def count(record):
        if record.rejection is None:
            Metrics.counter(NAMESPACE, f"{stage}.records").inc()
        return record
    return count


def build(p: beam.Pipeline, cfg: JobConfig, out: str, models: dict[str, ResolvedModel],
          run_id: str = "run", progress_dir: str | None = None) -> None:
    """Wire the whole job into pipeline ``p``, writing under ``out``; with ``progress_dir`` (local
    runner) the stages count into it for the live line instead of logging per stage."""
    every = 0.0 if progress_dir else cfg.runner.log_every_s
    stage = partial(Stage, progress_dir=progress_dir)  # every stage below counts there too
    per_source, inputs = [], []
    for i, src in enumerate(cfg.sources):
        label = f"S{i}{src.kind.capitalize()}"
        read = p | f"{label}Read" >> get_source(src.kind).with_prompts(prompt_texts(cfg)).read(src)
        records, filtered = read | f"{label}Filtered" >> beam.Partition(lambda r, _: int(r.filtered), 2)
        inputs.append(filtered | f"{label}CountFiltered" >> beam.Map(
            lambda r: (f"{r.source}\tfiltered\t{r.rejection.reason}\t", 1)))
        if src.limit:
            records = _limit(records, src.limit, label)
        records = records | f"{label}Dedupe" >> DropDuplicates()
        inputs.append(records | f"{label}CountIn" >> beam.Map(lambda r: (f"{r.source}\tin\t\t", 1)))
        per_source.append(records | f"{label}LoadImage" >> beam.ParDo(
            stage("image", partial(load_image, image_root=src.image_root, **cfg.images.model_dump()), every,
                  first=True)))
    records = per_source | "MergeSources" >> beam.Flatten()
    if cfg.split.test_fraction or cfg.quality.near_duplicates.enabled:
        records, distinct = records | "NearDuplicates" >> Grouped(cfg.quality.near_duplicates, stage)
        inputs.append(distinct)
    if cfg.mix.groups:
        records, mixed = records | "Mix" >> Sample(cfg.mix, cfg.styles)
        inputs.append(mixed)
    if cfg.split.test_fraction:
        records = records | "Split" >> beam.ParDo(stage("split", partial(assign_split, **cfg.split.model_dump())))
    if cfg.depth.enabled or cfg.masks.enabled:  # imported only here: Beam's RunInference imports torch
        from apache_beam.ml.inference.base import RunInference

        from groundcot.transforms.depth import DepthHandler
        from groundcot.transforms.masks import Sam2Handler
    if cfg.depth.enabled:
        records = records | "DepthArriving" >> beam.Map(_arriving("depth")) | "Depth" >> RunInference(
            DepthHandler(models["depth"], cfg.depth.batch_size, cfg.depth.device, cache=cfg.cache,
                         preprocess=cfg.depth.preprocess))
    if cfg.masks.enabled:
        records = records | "MasksArriving" >> beam.Map(_arriving("masks")) | "Masks" >> RunInference(
            Sam2Handler(models["masks"], cfg.masks.batch_size, cfg.masks.device, cache=cfg.cache,
                        preprocess=cfg.masks.preprocess))
    params = cfg.expand.model_dump()
    teacher = with_teacher_cache(cfg.teacher, cfg.cache)  # its replies go to the job's cache too
    records = (records
               | "Expand" >> beam.ParDo(stage("expand", partial(expand_record, **params)))
               | "FanOutStyles" >> beam.FlatMap(fan_out, list(cfg.styles)))
    if cfg.mix.per_style():
        records = records | "MixStyles" >> beam.ParDo(stage("mix_styles", drop_styles))
    records = (records
               | "PlanStyles" >> beam.ParDo(stage("styles", partial(plan, **cfg.crops.model_dump())))
               | "Teach" >> beam.ParDo(Teach(teacher, cfg.validate_.model_dump(), run_id, f"{out}/batch",
                                                  prompt_texts(cfg)))
               | "Validate" >> beam.ParDo(stage("validate", partial(
                   validate, **cfg.validate_.model_dump()), every)))
    if cfg.quality.critic.enabled:
        records = records | "Critic" >> beam.ParDo(Critique(
            client_config(cfg.quality.critic, cfg.teacher, cfg.cache), cfg.quality.min_score, run_id,
            f"{out}/batch", prompt_texts(cfg)))
    records = (records
               | "DepthImage" >> beam.ParDo(stage("depth_image", partial(attach_depth_image, **cfg.sif.model_dump()))))
    inputs.append(records | "CountSplits" >> beam.FlatMap(
        lambda r: [] if r.rejection else [(f"{r.source}\tsplit\t{split_name(r.split)}\t{r.style}", 1)]))
    records = records | "NoteVersions" >> beam.ParDo(NoteVersions())  # each worker's groundcot, Beam, torch
    outcomes = records | "Write" >> WriteOutputs(  # a Parquet writer per style of the job
        out, cfg.output.num_shards, cfg.output.row_group_size, cfg.output.buffer_mb, prompt_texts(cfg),
        styles=list(cfg.styles))
    ((outcomes, *inputs)
     | "MergeCounts" >> beam.Flatten()
     | "SumCounts" >> beam.CombinePerKey(sum)
     | "CountsToJson" >> beam.MapTuple(lambda key, n: json.dumps([*key.split("\t"), n]))
     | "WriteCounts" >> beam.io.WriteToText(f"{out}/_counts/counts", file_name_suffix=".jsonl"))
