"""Run a job: check it, run the graph into a staging folder, write stats.json, publish."""
from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import time
import uuid

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import TestOptions
from google.protobuf import json_format

from groundcot import prompts
from groundcot.pipeline import progress
from groundcot.pipeline.config import JobConfig, absolute_paths, echo, on_cluster
from groundcot.pipeline.graph import build
from groundcot.pipeline.outputs import DiskFull, OutputFolder, disk_full
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
    worker_versions,
)
from groundcot.runs.card import write_card
from groundcot.runs.publish import known_secrets, scrub
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
    out = absolute_paths(cfg, out)  # checked as written, run as absolute: workers have other working folders
    run_id = uuid.uuid4().hex
    folder = OutputFolder(out, run_id, overwrite)
    # from the lock and the staging folder on: a disk that fills is one line, and nothing is published
    with _disk_full(out, "; nothing published, {out} is as it was"), folder as staging:
        log.info("run %s writes into %s until it finishes", run_id, staging)
        with prompts.restored():  # an in-process runner's steps install the job's prompts here
            stats = run_graph(cfg, staging, models, runner, options, run_id)
        if not allow_empty:
            try:
                check_not_empty(stats)
            except EmptyRun as err:
                folder.keep_staging = True
                raise EmptyRun(f"{err}; nothing published, {out} is as it was (this run's outputs, its "
                               f"rejections: groundcot inspect {staging}); pass --allow-empty to publish "
                               "such a run") from None
        write_card(staging)  # README.md + figures/: the folder is Hub-ready
        with _disk_full(out, " while publishing; run again once there is space"):
            folder.publish()
    return stats


@contextlib.contextmanager
def _disk_full(out: str, then: str):
    """A disk that fills (Beam's traceback is not shown: cli.py) ends the run with one line naming it."""
    try:
        yield
    except DiskFull:  # named already (publishing, inside the run's own)
        raise
    except (OSError, RuntimeError) as err:
        if (full := disk_full(err, out)) is None:
            raise
        raise DiskFull(full + then.format(out=out)) from None


SECRET_OPTION = re.compile(r"password|secret|token|credential|api_?key", re.IGNORECASE)


def redact(options: dict) -> dict:
    return {k: "<removed>" if SECRET_OPTION.search(k) else v for k, v in options.items()}


def describe(cfg: JobConfig, out: str | None, path: str) -> str:
    """Build the job as ``run`` would and write its description to the local file ``path`` without
    running or submitting it: the runner, its options and the graph (on Dataflow the job Dataflow
    would receive, from Beam's ``dry_run``). Options named like secrets, and the teacher key's value,
    are removed. Returns the file's absolute path."""
    out_key = "output.dir" if out in (None, cfg.output.dir) else "--out"
    out = (out or cfg.output.dir).rstrip("/")
    runner, options, models = prepare(cfg, out, out_key, overwrite=True, offline=True)
    out = absolute_paths(cfg, out)
    dataflow = type(runner).__name__ == "DataflowRunner"
    options.view_as(TestOptions).dry_run = dataflow  # before the pipeline: its checks then stay offline
    p = beam.Pipeline(runner=runner, options=options)
    build(p, cfg, f"{out}/.groundcot-staging/dry-run", models, run_id="dry-run")
    if dataflow:
        job = p.run().job
        graph = {"job": json.loads(job.json()), "pipeline": json_format.MessageToDict(job.proto_pipeline)}
    else:
        graph = {"pipeline": json_format.MessageToDict(p.to_runner_api())}
    config = echo(cfg)
    config["runner"]["options"] = redact(config["runner"]["options"])
    given = redact(options.get_all_options(drop_default=True, retain_unknown_options=True))
    text = json.dumps({"runner": cfg.runner.name, "config": config, "graph": graph, "options": given},
                      indent=1, default=str)
    key = os.environ.get(getattr(cfg.teacher, "api_key_env", None) or "", "")
    if len(key) >= 8:
        text = text.replace(key, "<removed>")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)
    return os.path.abspath(path)


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
        result.wait_until_finish()  # counters are read only now: a running job's are partial
    stats = summarise(read_counts(staging), list(cfg.styles), time.monotonic() - started)
    counters = beam_counters(result)
    cross_check(stats, beam_counters(result, committed_only=True), staging)
    stats.update({
        "run_id": run_id,
        "teacher": {**teacher_stats(cfg, counters), "quality": quality(stats, counters)},
        "cache": cache_stats(counters),
        "critic": critic_stats(cfg, counters), "mix": mix_stats(cfg, stats),
        **{f"{stage}_model": None if stage not in models else {
            "requested": models[stage].requested, "fallback_tiny_random": models[stage].fallback,
            "reason": models[stage].reason} for stage in ("depth", "masks")},
        "counters": {k: v for k, v in counters.items() if not is_ledger(k)},
        "config": scrub(config := echo(cfg), known_secrets(None, config)),
        "versions": versions(), "worker_versions": worker_versions(result),
    })
    with FileSystems.create(f"{staging}/stats.json") as handle:
        handle.write(json.dumps(stats, indent=2).encode())
    return stats
