"""Run a job: check it, run the graph into a staging folder, write stats.json, publish."""
from __future__ import annotations

import contextlib
import json
import logging
import time
import uuid

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from groundcot.pipeline import progress
from groundcot.pipeline.config import JobConfig, echo, on_cluster
from groundcot.pipeline.graph import build
from groundcot.pipeline.outputs import OutputFolder
from groundcot.pipeline.preflight import count_records, prepare
from groundcot.pipeline.stats import (
    EmptyRun,
    beam_counters,
    check_not_empty,
    critic_stats,
    cross_check,
    is_ledger,
    mix_stats,
    quality,
    read_counts,
    summarise,
    teacher_stats,
    versions,
)
from groundcot.runs.card import write_card
from groundcot.transforms.cache import cache_stats
from groundcot.transforms.models import ResolvedModel

log = logging.getLogger("groundcot")


def run(cfg: JobConfig, out: str | None = None, overwrite: bool = False, allow_empty: bool = False) -> dict:
    """Run the job, publish what it wrote into ``out`` and return its ``stats.json``.

    The job writes into a staging folder under ``out``; only a finished run that made something
    (or ``allow_empty``) replaces the previous run's files. See ``pipeline/outputs.py``.
    """
    out_key = "output.dir" if out in (None, cfg.output.dir) else "--out"
    out = (out or cfg.output.dir).rstrip("/")
    runner, options, models = prepare(cfg, out, out_key, overwrite)
    run_id = uuid.uuid4().hex
    folder = OutputFolder(out, run_id, overwrite)
    with folder as staging:
        log.info("run %s writes into %s until it finishes", run_id, staging)
        stats = run_graph(cfg, staging, models, runner, options, run_id)
        if not allow_empty:
            try:
                check_not_empty(stats)
            except EmptyRun as err:
                folder.keep_staging = True
                raise EmptyRun(f"{err}; nothing published, {out} is as it was (this run's outputs: "
                               f"{staging}); pass --allow-empty to publish such a run") from None
        write_card(staging)  # README.md + figures/: the folder is Hub-ready
        folder.publish()
    return stats


def run_graph(cfg: JobConfig, staging: str, models: dict[str, ResolvedModel], runner, options,
              run_id: str) -> dict:
    """Run the Beam job into ``staging`` and write its ``stats.json`` there."""

    started = time.monotonic()
    p = beam.Pipeline(runner=runner, options=options)
    total, every = count_records(cfg), cfg.runner.log_every_s
    # workers share this disk on local runners: they count into the live line's folder
    with contextlib.nullcontext() if on_cluster(cfg.runner) else progress.Live(total, every) as live:
        build(p, cfg, staging, models, run_id=run_id, progress_dir=live and live.folder)
        result = p.run()
        if live is None:  # a cluster job: the same figures from Beam's counters
            progress.follow(result, lambda: beam_counters(result), total, every)
        result.wait_until_finish()
    stats = summarise(read_counts(staging), list(cfg.styles), time.monotonic() - started)
    counters = beam_counters(result)
    cross_check(stats, beam_counters(result, committed_only=True), staging)
    stats.update({
        "run_id": run_id,
        "teacher": {**teacher_stats(cfg, counters), "quality": quality(stats, counters)},
        "cache": cache_stats(counters),
        "critic": critic_stats(cfg, stats, counters), "mix": mix_stats(cfg, stats),
        **{f"{stage}_model": None if stage not in models else {
            "requested": models[stage].requested, "fallback_tiny_random": models[stage].fallback,
            "reason": models[stage].reason} for stage in ("depth", "masks")},
        "counters": {k: v for k, v in counters.items() if not is_ledger(k)},
        "config": echo(cfg), "versions": versions(),
    })
    with FileSystems.create(f"{staging}/stats.json") as handle:
        handle.write(json.dumps(stats, indent=2).encode())
    return stats
