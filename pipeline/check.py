"""``groundcot generate CONFIG --check``: the checks a run makes before it starts, and its plan.

Nothing runs and the output folder is only looked at: the per-runner path checks, the runner
and its options, secrets, sources, the teacher's endpoint, the models, and whether the output
folder would be refused. Each failure raises the same one-line error a run would.
"""
from __future__ import annotations

from apache_beam.io.filesystems import FileSystems

from groundcot.pipeline.config import JobConfig, on_cluster
from groundcot.pipeline.outputs import is_local
from groundcot.pipeline.run import prepare
from groundcot.transforms.models import ResolvedModel
from groundcot.transforms.sources import patterns

JSONL_KINDS = {"viscot": lambda src: True, "tallyqa": lambda src: src.format == "boxed"}
MODEL_KINDS = {"hub": "Hub id, loaded by each worker from its HF cache or the Hub",
               "path": "local folder, which each worker must hold at that path",
               "bucket": "bucket folder, copied once to each worker"}
WORKER_OPTIONS = ("num_workers", "max_num_workers", "parallelism", "direct_num_workers")


def check_job(cfg: JobConfig, out: str, out_key: str = "output.dir", overwrite: bool = False) -> list[str]:
    """Run every check a run makes; return the plan's lines. Raises ConfigError, OutputRefused or RuntimeError."""
    _, _, models = prepare(cfg, out, out_key, overwrite)
    return plan(cfg, out, {stage: describe(getattr(cfg, stage).model, found) for stage, found in models.items()})


def describe(model: str, found: ResolvedModel) -> str:
    """Where a stage's model comes from, as the driver can tell."""
    if found.fallback:
        return f"TINY RANDOM fallback for {model} (demo only), because {found.reason}"
    return f"{model} ({MODEL_KINDS.get(found.kind, found.kind)})"


def count_records(cfg: JobConfig) -> int | None:
    """Records the sources give, when known without reading them: lines of local jsonl files, capped by limit."""
    total = 0
    for src in cfg.sources:
        if not JSONL_KINDS.get(src.kind, lambda s: False)(src):
            return None
        files = [m.path for p in patterns(src.path) for m in FileSystems.match([p])[0].metadata_list]
        if not all(is_local(f) for f in files):
            return None
        lines = 0
        for path in files:
            with open(path, "rb") as handle:
                lines += sum(1 for line in handle if line.strip())
        total += min(lines, src.limit) if src.limit else lines
    return total


def teacher_calls(cfg: JobConfig, records: int | None) -> str:
    if cfg.teacher.kind == "template":
        return "0 (template teacher: offline)"
    if records is None:
        return "unknown until read (records x styles; up to twice that with re-asks)"
    calls = records * len(cfg.styles)
    line = f"about {calls} ({records} records x {len(cfg.styles)} styles)"
    if cfg.teacher.reask:
        line += f"; up to {2 * calls} with re-asks"
    if cfg.teacher.judge:
        line += ", plus a judge call per reply it is asked about"
    if cfg.teacher.request_budget is not None:
        line += f"; capped at {cfg.teacher.request_budget} by teacher.request_budget (per worker process)"
    return line + "; replies already in the cache are not asked again"


def plan(cfg: JobConfig, out: str, models: dict[str, str]) -> list[str]:
    records = count_records(cfg)
    lines = ["all checks passed; nothing was run or written. The plan:", "sources:"]
    for i, src in enumerate(cfg.sources):
        limit = f", limit {src.limit}" if src.limit else ""
        lines.append(f"  {i}: {src.kind} {', '.join(patterns(src.path))} (images: {src.image_root}{limit})")
    lines.append(f"styles: {', '.join(cfg.styles)}")
    for stage in ("depth", "masks"):
        lines.append(f"{stage}: " + (f"on, {models[stage]}" if stage in models else "off"))
    teacher = cfg.teacher
    lines.append("teacher: template (offline baseline)" if teacher.kind == "template"
                 else f"teacher: {teacher.kind}, model {teacher.model} at {teacher.base_url}")
    lines.append(f"runner: {cfg.runner.name}, " + workers(cfg))
    lines.append(f"output: {out}")
    lines.append("records: " + ("unknown until read" if records is None
                                else f"{records} (lines of the jsonl sources; filters may drop some)"))
    lines.append(f"teacher calls: {teacher_calls(cfg, records)}")
    return lines


def workers(cfg: JobConfig) -> str:
    if cfg.runner.name == "local":
        return f"{cfg.runner.workers} worker process{'es' if cfg.runner.workers > 1 else ''}"
    given = {k: v for k, v in cfg.runner.options.items() if k in WORKER_OPTIONS}
    where = "workers see only bucket paths and runner.shared_paths" if on_cluster(cfg.runner) else "local workers"
    return (", ".join(f"{k}={v}" for k, v in given.items()) or "workers as the runner chooses") + f" ({where})"
