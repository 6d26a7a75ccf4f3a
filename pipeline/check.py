"""``groundcot generate CONFIG --check``: the checks a run makes before it starts, and its plan.

Nothing runs and the output folder is only looked at: the per-runner path checks, the runner
and its options, secrets, sources, the teacher's endpoint, the models, and whether the output
folder would be refused. Each failure raises the same one-line error a run would.
"""
from __future__ import annotations

import re

from groundcot.pipeline.config import JobConfig, on_cluster
from groundcot.pipeline.offline import unlistable
from groundcot.pipeline.preflight import check_secrets, count_records, prepare
from groundcot.transforms.models import ResolvedModel
from groundcot.transforms.secrets import scrub_url
from groundcot.transforms.sources.common import patterns
from groundcot.transforms.styles import get_style
from groundcot.transforms.teach import is_api

MODEL_KINDS = {"hub": "Hub id, loaded by each worker from its HF cache or the Hub",
               "path": "local folder, which each worker must hold at that path",
               "bucket": "bucket folder, copied once to each worker"}
WORKER_OPTIONS = ("num_workers", "max_num_workers", "parallelism", "direct_num_workers")


def check_job(cfg: JobConfig, out: str, out_key: str = "output.dir", overwrite: bool = False) -> list[str]:
    """Run every check a run makes; return the plan's lines. Raises ConfigError, OutputRefused or RuntimeError."""
    _, _, models = prepare(cfg, out, out_key, overwrite, offline=True)
    return plan(cfg, out, {stage: describe(getattr(cfg, stage).model, found) for stage, found in models.items()})


def describe(model: str, found: ResolvedModel) -> str:
    """Where a stage's model comes from, as the driver can tell."""
    if found.fallback:
        return f"TINY RANDOM fallback for {model} (demo only), because {found.reason}"
    return f"{model} ({MODEL_KINDS.get(found.kind, found.kind)})"




def teacher_calls(cfg: JobConfig, records: int | None) -> str:
    if not is_api(cfg.teacher):
        return f"0 ({cfg.teacher.kind} teacher: offline)"
    if records is None:
        return "unknown until read (records x styles; up to twice that with re-asks)"
    calls = records * len(cfg.styles)
    line = f"about {calls} ({records} records x {len(cfg.styles)} styles)"
    if cfg.teacher.reask:
        line += f"; up to {2 * calls} with re-asks"
    if cfg.teacher.judge.enabled:
        line += ", plus a judge call per reply it is asked about"
    budget = cfg.teacher.limits.request_budget
    if budget is not None:
        line += f"; capped at {budget} by teacher.limits.request_budget (per worker process)"
    return line + "; replies already in the cache are not asked again"


TEXT_TOKENS = 900  # a generous bound on the text of one request (system text, legend, instruction)


def teacher_cost(cfg: JobConfig, records: int | None) -> list[str]:
    """Bounds on image tokens and cost per record, and for the job when the record count is known."""
    from groundcot.transforms.teach.tokens import image_tokens

    req, cost = cfg.teacher.request, cfg.teacher.cost
    side = req.image_max_side
    per_image = image_tokens(side, side, cost.image_token_rule)  # a square at the size cap: the most one costs
    own = cfg.expand.steps + 2 if req.images == "per_step" else 1  # per step: full, expansions, distractor, gt
    images = sum(own + get_style(s).crops_per_record for s in cfg.styles)  # plus the crops each style adds
    tokens = images * per_image
    lines = [(f"teacher images: {req.images} ({images} images per record over {len(cfg.styles)} styles), at most "
              f"{tokens} image tokens per record ({per_image} per image at most: {side}x{side} under "
              f"{cost.image_token_rule})")]
    if cost.price_prompt_per_mtok is None or cost.price_completion_per_mtok is None:
        return lines + ["teacher cost: unknown (set teacher.cost.price_prompt_per_mtok and "
                        "price_completion_per_mtok)"]
    calls = len(cfg.styles)
    per_record = ((tokens + calls * TEXT_TOKENS) * cost.price_prompt_per_mtok
                  + calls * req.max_tokens * cost.price_completion_per_mtok) / 1e6
    line = f"teacher cost: at most ${per_record:.4f} per record before re-asks"
    if records is not None:
        line += f", at most ${per_record * records:.2f} for {records} records ({records * tokens} image tokens)"
    if cost.max_cost_usd is not None:
        line += f"; calls stop at teacher.cost.max_cost_usd ${cost.max_cost_usd:g}"
    return lines + [line]


def plan(cfg: JobConfig, out: str, models: dict[str, str]) -> list[str]:
    records = count_records(cfg)
    lines = ["all checks passed; nothing was run or written. The plan:", "sources:"]
    for i, src in enumerate(cfg.sources):
        limit = f", limit {src.limit}" if src.limit else ""
        lines.append(f"  {i}: {src.kind} {', '.join(patterns(src.path))} (images: {src.image_root}{limit})")
    lines.append(f"styles: {', '.join(cfg.styles)}")
    if cfg.prompts:
        lines.append("prompts replaced: " + ", ".join(
            f"{name} ({entry.file or 'inline'})" for name, entry in sorted(cfg.prompts.items())))
    for stage in ("depth", "masks"):
        lines.append(f"{stage}: " + (f"on, {models[stage]}" if stage in models else "off"))
    teacher = cfg.teacher
    where = scrub_url(teacher.connection.base_url) if is_api(teacher) else ""
    lines.append(f"teacher: {teacher.kind}, model {teacher.connection.model} at {where}"
                 if is_api(teacher) else f"teacher: {teacher.kind}" + (
                     " (offline baseline)" if getattr(teacher, "offline_baseline", False) else ""))
    lines.append(f"runner: {cfg.runner.name}, " + workers(cfg))
    lines.append(f"output: {out}")
    lines += not_listed(cfg, out)
    lines.append("records: " + ("unknown until read" if records is None
                                else f"{records} (lines of the jsonl sources; filters may drop some)"))
    lines.append(f"teacher calls: {teacher_calls(cfg, records)}")
    if is_api(teacher):
        lines += teacher_limits(cfg)
        lines += teacher_cost(cfg, records)
        if teacher.batch.enabled:
            lines.append(f"teacher mode: batch (requests go to {out}/batch/requests-*.jsonl; nothing is called)")
    lines += quality_plan(cfg, records)
    return lines


def quality_plan(cfg: JobConfig, records: int | None) -> list[str]:
    """What the quality stages and the mix will do; the critic's calls and a bound on their cost."""
    from groundcot.transforms.critic import client_config
    from groundcot.transforms.teach.tokens import image_tokens

    q, lines = cfg.quality, []
    if cfg.mix.groups:
        lines.append("mix: " + ", ".join(f"{g.label()} {'share ' + format(g.share, 'g') if g.share else g.count}"
                                         for g in cfg.mix.groups) + " (sampled before the model stages)")
    if q.near_duplicates.enabled or cfg.split.test_fraction:
        lines.append(f"near-duplicate images: perceptual hash, at most {q.near_duplicates.max_distance} bits apart"
                     + (" (duplicates rejected)" if q.near_duplicates.enabled else " (the split's identity only)"))
    if not q.critic.enabled:
        return lines
    api = client_config(q.critic, cfg.teacher, cfg.cache)
    calls = "unknown until read" if records is None else f"at most {records * len(cfg.styles)}"
    lines.append(f"critic: model {api.connection.model} at {scrub_url(api.connection.base_url)}; {calls} calls "
                 f"(one per validated row), min_score {q.min_score}"
                 + ("; batch mode: its requests join the teacher's shards" if api.batch.enabled else ""))
    cost, req = api.cost, api.request
    if cost.price_prompt_per_mtok is None or cost.price_completion_per_mtok is None:
        return lines + ["critic cost: unknown (set teacher.cost prices)"]
    trace = cfg.teacher.request.max_tokens if is_api(cfg.teacher) else TEXT_TOKENS  # the graded trace's length
    prompt = image_tokens(req.image_max_side, req.image_max_side, cost.image_token_rule) + TEXT_TOKENS + trace
    per_row = (prompt * cost.price_prompt_per_mtok + req.max_tokens * cost.price_completion_per_mtok) / 1e6
    line = f"critic cost: at most ${per_row * len(cfg.styles):.4f} per record ({len(cfg.styles)} rows)"
    if records is not None:
        line += f", at most ${per_row * len(cfg.styles) * records:.2f} for {records} records"
    return lines + [line]


def not_listed(cfg: JobConfig, out: str) -> list[str]:
    """The bucket paths --check could not list from here, and why (pipeline/offline.py)."""
    paths = [(f"sources.{i}.path", p) for i, src in enumerate(cfg.sources) for p in patterns(src.path)]
    skipped = [(key, path, why) for key, path in [*paths, ("output", out)] if (why := unlistable(path))]
    return [f"not listed from here ({why}): {key} {path}; the job reaches it with the credentials it runs with"
            for key, path, why in skipped]


def teacher_limits(cfg: JobConfig) -> list[str]:
    """Where each worker finds the key, and what the per-process limits add up to for the job."""
    t, key = cfg.teacher.limits, check_secrets(cfg)  # checked by prepare already; a secret is read once
    lines = [f"teacher key: {key[0] if key else 'none (teacher.connection.api_key_env: null)'}",
             (f"teacher limits: max_concurrency {t.max_concurrency} in flight per teacher DoFn instance (one per "
             f"worker thread running the teacher); request_budget {t.request_budget} calls per worker process")]
    procs, how = worker_processes(cfg)
    if procs is None:
        return lines + [f"teacher limits job-wide: each times {how}"]
    budget = "no cap" if t.request_budget is None else f"at most {t.request_budget * procs} calls"
    return lines + [(f"teacher limits job-wide: {procs} worker processes ({how}): {budget}; up to "
                    f"{t.max_concurrency * procs} in flight with one teacher thread per process, more with more)")]


def worker_processes(cfg: JobConfig) -> tuple[int | None, str]:
    """SDK worker processes of the job where the config fixes them, and how that was worked out."""
    opts = cfg.runner.options
    if cfg.runner.name == "local":
        return cfg.runner.workers, "runner.workers"
    if cfg.runner.name.rsplit(".", 1)[-1] == "DataflowRunner":
        key = "max_num_workers" if "max_num_workers" in opts else "num_workers"
        vcpus = re.search(r"-(\d+)$", str(opts.get("machine_type", "")))
        if key not in opts or not vcpus:
            return None, "the workers x SDK processes Dataflow starts (set num_workers and machine_type to know)"
        each = 1 if "no_use_multiple_sdk_containers" in str(opts.get("experiments", "")) else int(vcpus.group(1))
        return int(opts[key]) * each, f"{key} {opts[key]} x {each} SDK process{'es' * (each > 1)} per worker"
    return None, "the SDK worker processes the cluster starts (not known from the config)"


def workers(cfg: JobConfig) -> str:
    if cfg.runner.name == "local":
        return f"{cfg.runner.workers} worker process{'es' if cfg.runner.workers > 1 else ''}"
    given = {k: v for k, v in cfg.runner.options.items() if k in WORKER_OPTIONS}
    where = "workers see only bucket paths and runner.shared_paths" if on_cluster(cfg.runner) else "local workers"
    return (", ".join(f"{k}={v}" for k, v in given.items()) or "workers as the runner chooses") + f" ({where})"
