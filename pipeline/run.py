"""Run a job: check it, run the graph into a staging folder, write stats.json, publish."""
from __future__ import annotations

import contextlib
import difflib
import json
import logging
import os
import platform
import time
import uuid
from collections import Counter, defaultdict
from importlib import metadata

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.runners.runner import create_runner

from groundcot.pipeline import progress
from groundcot.runs.card import write_card
from groundcot.pipeline.config import ConfigError, JobConfig, check_worker_paths, echo, on_cluster
from groundcot.pipeline.graph import build
from groundcot.pipeline.offline import unlistable
from groundcot.pipeline.outputs import OutputFolder
from groundcot.transforms.cache import cache_stats
from groundcot.transforms.depth import resolve_depth_model
from groundcot.transforms.masks import resolve_sam2_model
from groundcot.transforms.models import ResolvedModel
from groundcot.transforms.secrets import SecretError
from groundcot.transforms.secrets import check as check_secret
from groundcot.transforms.sources import patterns
from groundcot.transforms.teach.client import check_endpoint

log = logging.getLogger("groundcot")
PACKAGES = ("groundcot", "apache-beam", "transformers", "torch", "datasets", "pyarrow", "pillow", "numpy", "openai")
# Reasons that say the job could not reach something, not that the data is bad: a run whose
# every record ends with one of them has made nothing, and says so.
INFRA_REASONS = ("missing_image", "missing_annotation", "teacher_connection_error", "teacher_timeout",
                 "teacher_rate_limited", "teacher_server_error", "teacher_budget_exhausted", "teacher_http_", "teacher_bad_reply")


class EmptyRun(RuntimeError):
    """The run made nothing worth publishing (see ``check_not_empty``)."""


class CountsUnreadable(RuntimeError):
    """The driver could not read back what the workers counted (see ``cross_check``)."""


UNREADABLE_HINT = ("the driver cannot read what the workers wrote there (a worker-local output path?); write to a "
                   "bucket URL or a folder listed in runner.shared_paths")


def pipeline_options(cfg: JobConfig) -> tuple[object, PipelineOptions]:
    """The runner and its options; ``local`` is Beam's in-process FnApiRunner (works offline).

    Called before anything else runs, so a runner that cannot be used here is one ConfigError line.
    """
    extra = dict(cfg.runner.options)
    name = cfg.runner.name
    if name == "local":
        from apache_beam.runners.portability.fn_api_runner import FnApiRunner

        mode = "multi_processing" if cfg.runner.workers > 1 else "in_memory"
        return FnApiRunner(), _options(direct_num_workers=cfg.runner.workers, direct_running_mode=mode, **extra)
    known = StandardOptions.KNOWN_RUNNER_NAMES
    if name not in known and "." not in name:  # Beam itself would accept any case, then fail far from here
        close = difflib.get_close_matches(name, ["local", *known], n=1, cutoff=0.6)
        hint = f"did you mean {close[0]}? " if close else ""
        raise ConfigError(f"runner.name: unknown runner {name!r}; {hint}use local, one of {', '.join(known)}, "
                          "or a runner's full dotted class name")
    try:
        runner = create_runner(name)
    except (ImportError, ValueError, AttributeError) as err:
        raise ConfigError(f"runner.name: {name} cannot be used here: {err}".replace("\n", " ")) from None
    return runner, _options(runner=name, **extra)


def _options(**values) -> PipelineOptions:
    """Beam's options; a key no registered option class knows is a ConfigError, not silently dropped."""
    options = PipelineOptions(flags=[], **values)
    unknown = sorted(set(values) - set(options.get_all_options(retain_unknown_options=False)))
    if unknown:
        raise ConfigError(f"runner.options: Beam knows no option {', '.join(unknown)} (see the runner's "
                          "pipeline options for the names)")
    return options


def read_counts(out: str) -> dict[tuple[str, str, str, str], int]:
    """The outcome counts the job wrote under ``out/_counts``, read through ``FileSystems``.

    A finished job always writes at least one (maybe empty) file there; finding none means the
    driver cannot see the job's output location.
    """
    counts: Counter = Counter()
    try:
        found = FileSystems.match([f"{out}/_counts/*"])[0].metadata_list
    except (OSError, ValueError) as err:
        raise CountsUnreadable(f"cannot list the outcome counts in {out}/_counts ({err}): {UNREADABLE_HINT}"
                               .replace("\n", " ")) from None
    if not found:
        raise CountsUnreadable(f"the job finished but {out}/_counts holds no counts file: {UNREADABLE_HINT}")
    for meta in found:
        with FileSystems.open(meta.path) as handle:
            for line in handle.read().decode().splitlines():
                source, kind, reason, style, n = json.loads(line)
                counts[(source, kind, reason, style)] += n
    return counts


def summarise(counts: dict, styles: list[str], elapsed: float) -> dict:
    """Totals per source and per style. A record rejected before styles were made counts once
    (style ""); every other record counts once per style, written or rejected."""
    by_source: dict = defaultdict(lambda: {"in": 0, "written": 0, "rejected": 0, "rejected_by_reason": Counter(),
                                           "filtered": 0, "filtered_by_reason": Counter()})
    by_style: dict = defaultdict(lambda: {"written": 0, "rejected": 0, "rejected_by_reason": Counter()})
    for (source, kind, reason, style), n in counts.items():
        entry = by_source[source]
        entry[kind] += n
        if kind in ("rejected", "filtered"):
            entry[f"{kind}_by_reason"][reason] += n
        if kind in ("written", "rejected"):
            by_style[style or "before_styles"][kind] += n
            if kind == "rejected":
                by_style[style or "before_styles"]["rejected_by_reason"][reason] += n
    total = {k: sum(s[k] for s in by_source.values()) for k in ("in", "written", "rejected", "filtered")}
    reasons = sum((s["rejected_by_reason"] for s in by_source.values()), Counter())
    made = total["in"] - by_style["before_styles"]["rejected"]  # records that reached the styles
    balanced = all(made == by_style[s]["written"] + by_style[s]["rejected"] for s in styles)
    return {
        "records_in": total["in"], "written": total["written"], "rejected": total["rejected"],
        "rejected_by_reason": dict(reasons.most_common()),
        "balanced": balanced and made >= 0,
        "filtered_out": total["filtered"],  # left out by source filters; not part of records_in
        "by_source": {s: {**e, "rejected_by_reason": dict(e["rejected_by_reason"]),
                          "filtered_by_reason": dict(e["filtered_by_reason"])} for s, e in by_source.items()},
        "by_style": {s: {**e, "rejected_by_reason": dict(e["rejected_by_reason"])} for s, e in sorted(by_style.items())},
        "elapsed_s": round(elapsed, 2),
        "records_per_s": round(total["in"] / elapsed, 1) if elapsed > 0 else None,
    }


def cross_check(stats: dict, counters: dict[str, int], staging: str) -> None:
    """The counts read back agree with Beam's committed counters, where the runner reports them.

    Every record that reached the image stage was counted in, and every row validate passed was
    written: fewer read back means the counts file did not hold what the job did.
    """
    loaded = sum(n for k, n in counters.items() if k == "image.ok" or k.startswith("image.rejected."))
    passed = counters.get("validate.ok", 0)
    if stats["records_in"] < loaded or stats["written"] < passed:
        raise CountsUnreadable(
            f"the counts read back from {staging}/_counts say {stats['records_in']} records in and "
            f"{stats['written']} written, but Beam's counters show {loaded} records through the image stage and "
            f"{passed} rows validated: {UNREADABLE_HINT}")


def beam_counters(result, committed_only: bool = False) -> dict[str, int]:
    """groundcot's counters summed over steps: committed values, else attempted ones (unless ``committed_only``)."""
    totals: Counter = Counter()
    try:
        for c in result.metrics().query()["counters"]:
            if c.key.metric.namespace.startswith("groundcot"):
                totals[c.key.metric.name] += c.committed or (0 if committed_only else c.attempted) or 0
    except Exception as err:  # noqa: BLE001 - some runners cannot report metrics
        log.warning("Beam counters unavailable on this runner: %s", err)
    return dict(sorted(totals.items()))


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def teacher_stats(cfg: JobConfig, counters: dict[str, int]) -> dict:
    """The teacher's kind and, for API teachers, the ledger and an estimated cost."""
    info = {"kind": cfg.teacher.kind, "offline_baseline": cfg.teacher.kind == "template"}
    if cfg.teacher.kind == "template":
        return info
    ledger = {k[len("ledger."):]: v for k, v in counters.items()
              if k.startswith("ledger.") and not k.startswith("ledger.quality.")}  # quality: per style, below
    ledger["retries"] = max(0, ledger.get("attempts", 0) - ledger.get("requests", 0))
    info.update(model=cfg.teacher.model, ledger=dict(sorted(ledger.items())))
    t = cfg.teacher
    if t.price_prompt_per_mtok is not None and t.price_completion_per_mtok is not None:
        info["estimated_cost_usd"] = round(ledger.get("prompt_tokens", 0) / 1e6 * t.price_prompt_per_mtok
                                           + ledger.get("completion_tokens", 0) / 1e6 * t.price_completion_per_mtok, 6)
        info["max_cost_usd"] = t.max_cost_usd
    if ledger.get("requests"):
        info["image_tokens_per_call"] = round(ledger.get("image_tokens", 0) / ledger["requests"], 1)
    return info


def quality(stats: dict, counters: dict[str, int]) -> dict:
    """Per style: accepted on the first try, accepted after a re-ask, rejected by reason."""
    out = {}
    for style, entry in stats["by_style"].items():
        if style == "before_styles":
            continue
        fixed = counters.get(f"ledger.quality.{style}.accepted_after_reask", 0)
        out[style] = {"accepted_first_try": entry["written"] - fixed, "accepted_after_reask": fixed,
                      "reasked": counters.get(f"ledger.quality.{style}.reasked", 0),
                      "rejected": entry["rejected"], "rejected_by_reason": entry["rejected_by_reason"]}
    return out


def check_secrets(cfg: JobConfig) -> tuple[str, bool] | None:
    """A required secret is set, or a secret reference is sound and, where this machine can, read
    (errors name the variable or reference, never a value). (plan line, readable here) or None."""
    ref = getattr(cfg.teacher, "api_key_secret", None)
    if ref:
        try:
            line = check_secret(ref, here=not on_cluster(cfg.runner))
        except SecretError as err:
            raise RuntimeError(f"teacher.api_key_secret: {err}") from None
        return line, "read here" in line
    env = getattr(cfg.teacher, "api_key_env", None)
    if env and not os.environ.get(env):
        raise RuntimeError(f"teacher.api_key_env: the environment variable {env} is not set")
    return (f"environment variable {env} (set here; each worker reads its own)", True) if env else None


def check_sources(cfg: JobConfig, offline: bool = False) -> None:
    """Every file pattern of every source matches at least one file (``offline``: bucket patterns this
    machine has no credentials for are left to the workers; see pipeline/offline.py)."""
    for i, src in enumerate(cfg.sources):
        wanted = {"path": patterns(src.path)}
        if src.kind == "flickr30k":  # path is a folder; the split file says what to read
            wanted = {"split_file": [src.split_file or f"{src.path.rstrip('/')}/{src.split}.txt"]}
        if src.kind == "gqa":
            wanted["scene_graphs"] = patterns(src.scene_graphs)
        for key, globs in wanted.items():
            for pattern in globs:
                if offline and unlistable(pattern):
                    continue
                try:
                    found = FileSystems.match([pattern])[0].metadata_list
                except (OSError, ValueError) as err:
                    raise ConfigError(f"sources.{i}.{key}: cannot list {pattern}: {err}") from None
                if not found:
                    raise ConfigError(f"sources.{i}.{key}: {pattern} matches no file")


def preflight(cfg: JobConfig, offline: bool = False) -> None:
    """Everything that can be checked before the job touches its output folder.

    The runner and config were checked when the options were built; here: secrets, sources and
    the teacher's endpoint. A failure here leaves the output folder as it was.
    """
    key = check_secrets(cfg)
    check_sources(cfg, offline)
    # after the secret it needs is set; a key only the workers can read: their first calls check it
    if cfg.teacher.kind == "openai" and cfg.teacher.mode == "live" and (key is None or key[1]):
        check_endpoint(cfg.teacher)


def check_output(out: str, out_key: str, overwrite: bool) -> None:
    """The output folder can be listed from here and would not be refused; reads it, writes nothing."""
    try:
        OutputFolder(out, "check", overwrite).refuse_foreign()
    except (OSError, ValueError) as err:  # a filesystem this machine lacks, no access
        raise ConfigError(f"{out_key}: cannot list {out}: {err}".replace("\n", " ")) from None


def check_not_empty(stats: dict) -> None:
    """A run that read nothing, or whose every record met one infrastructure failure, made nothing."""
    if stats["records_in"] == 0:
        raise EmptyRun(f"the sources gave 0 records ({stats['filtered_out']} filtered out)")
    reasons = stats["rejected_by_reason"]
    if stats["written"] == 0 and reasons and all(r.startswith(INFRA_REASONS) for r in reasons):
        raise EmptyRun(f"every one of {stats['records_in']} records was rejected with "
                       f"{', '.join(sorted(reasons))}: nothing could be made")


def prepare(cfg: JobConfig, out: str, out_key: str, overwrite: bool,
            offline: bool = False) -> tuple[object, PipelineOptions, dict]:
    """Every check a run makes before it touches ``out`` (``--check`` makes the same, ``offline``:
    skipping bucket paths it has no credentials for), then the runner, its options and the models
    the workers will load."""
    check_worker_paths(cfg, out, out_key)  # before the runner is built: needs none of its extras
    runner, options = pipeline_options(cfg)
    preflight(cfg, offline)
    if not (offline and unlistable(out)):
        check_output(out, out_key, overwrite)
    local = not on_cluster(cfg.runner)  # workers share this machine's disk and network
    models: dict[str, ResolvedModel] = {}
    if cfg.depth.enabled:
        models["depth"] = resolve_depth_model(cfg.depth.model, cfg.depth.fallback, local)
    if cfg.masks.enabled:
        models["masks"] = resolve_sam2_model(cfg.masks.model, cfg.masks.fallback, local)
    return runner, options, models


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
    from groundcot.pipeline.check import count_records  # check imports this module

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
        **{f"{stage}_model": None if stage not in models else {
            "requested": models[stage].requested, "fallback_tiny_random": models[stage].fallback,
            "reason": models[stage].reason} for stage in ("depth", "masks")},
        "counters": {k: v for k, v in counters.items() if not k.startswith("ledger.")},
        "config": echo(cfg), "versions": versions(),
    })
    with FileSystems.create(f"{staging}/stats.json") as handle:
        handle.write(json.dumps(stats, indent=2).encode())
    return stats
