"""stats.json: the outcome counts the job wrote, summed per source and style, checked against
Beam's counters (named ``<stage>.<outcome>``), with the teacher's ledger, the cache and the versions."""
from __future__ import annotations

import functools
import json
import logging
import platform
from collections import Counter, defaultdict
from importlib import metadata

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from groundcot.pipeline.config import JobConfig
from groundcot.transforms.teach import STAGE as TEACHER
from groundcot.transforms.teach import is_api

log = logging.getLogger("groundcot")
NAMESPACE = "groundcot"
WORKER_PACKAGES = ("groundcot", "apache-beam", "torch")  # what a worker must share with the driver
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
    """Totals per source and per style, and written rows per split. A record rejected before styles were
    made counts once (style ""); every other record counts once per style, written or rejected."""
    by_source: dict = defaultdict(lambda: {"in": 0, "written": 0, "rejected": 0, "rejected_by_reason": Counter(),
                                           "filtered": 0, "filtered_by_reason": Counter()})
    by_style: dict = defaultdict(lambda: {"written": 0, "rejected": 0, "rejected_by_reason": Counter()})
    by_split: dict = defaultdict(lambda: {"written": 0, "by_source": Counter(), "by_style": Counter()})
    distinct: Counter = Counter()
    mix: dict = defaultdict(lambda: {"wanted": 0, "available": 0, "kept": 0, "kept_by_source": Counter()})
    for (source, kind, reason, style), n in counts.items():
        if kind == "distinct_images":  # image groups (near-identical images as one): per source, "" for all
            distinct[source] += n
            continue
        if kind.startswith("mix_"):  # reason holds the mix group
            what = kind.removeprefix("mix_")
            mix[reason][what] += n
            if what == "kept":
                mix[reason]["kept_by_source"][source] += n
            continue
        if kind == "split":  # a written row's split (reason holds its name)
            by_split[reason]["written"] += n
            by_split[reason]["by_source"][source] += n
            by_split[reason]["by_style"][style] += n
            continue
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
        "by_split": {s: {"written": e["written"], "by_source": dict(sorted(e["by_source"].items())),
                         "by_style": dict(sorted(e["by_style"].items()))} for s, e in sorted(by_split.items())},
        "distinct_images": {"all": distinct.pop("", 0), "by_source": dict(sorted(distinct.items()))}
        if distinct else None,
        "mix": {g: {**e, "kept_by_source": dict(sorted(e["kept_by_source"].items()))} for g, e in sorted(mix.items())},
        "elapsed_s": round(elapsed, 2),
        "records_per_s": round(total["in"] / elapsed, 1) if elapsed > 0 else None,
    }


def cross_check(stats: dict, counters: dict[str, int], staging: str) -> None:
    """The counts read back agree with Beam's committed counters, where the runner reports them.

    Every record that reached the image stage (the readers' rejections too) was counted in, and every
    row validate (and the critic) passed was written: fewer read back means the counts file did not
    hold what the job did.
    """
    loaded = sum(n for k, n in counters.items()
                 if k == "image.ok" or k.startswith(("image.rejected.", "read.rejected.")))
    passed = counters.get("validate.ok", 0) - sum(n for k, n in counters.items() if k.startswith("critic.rejected."))
    if stats["records_in"] < loaded or stats["written"] < passed:
        raise CountsUnreadable(
            f"the counts read back from {staging}/_counts say {stats['records_in']} records in and "
            f"{stats['written']} written, but Beam's counters show {loaded} records through the image stage and "
            f"{passed} rows validated: {UNREADABLE_HINT}")


def job_metrics(result):
    """The job's metrics as they are now. Beam's portable result (also Flink's and Spark's) keeps its
    first answer (``portable_runner.PipelineResult.metrics`` caches it), which is empty while the job
    runs: that cache is dropped so each call asks the job service again."""
    if hasattr(result, "_metrics"):
        result._metrics = None
    return result.metrics().query()


def beam_counters(result, committed_only: bool = False) -> dict[str, int]:
    """groundcot's counters summed over steps: committed values, else attempted ones (unless ``committed_only``)."""
    totals: Counter = Counter()
    try:
        for c in job_metrics(result)["counters"]:
            if c.key.metric.namespace.startswith("groundcot"):
                totals[c.key.metric.name] += c.committed or (0 if committed_only else c.attempted) or 0
    except Exception as err:  # noqa: BLE001 - some runners cannot report metrics
        log.warning("Beam counters unavailable on this runner: %s", err)
    return dict(sorted(totals.items()))


def versions() -> dict[str, str]:
    """Python's and PACKAGES' versions, read once per process (each read parses every METADATA file)."""
    return dict(_versions())


@functools.lru_cache(maxsize=1)
def _versions() -> tuple[tuple[str, str], ...]:
    found = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return tuple(found.items())


def is_ledger(name: str) -> bool:
    """A counter of the teacher's ledger (``teacher.<x>``), not one of its stage outcomes
    (``teacher.ok``, ``teacher.rejected.<reason>``).

    >>> [is_ledger(n) for n in ("teacher.requests", "teacher.quality.sif.reasked", "teacher.ok",
    ...                         "teacher.rejected.teacher_timeout", "validate.ok")]
    [True, True, False, False, False]
    """
    return name.startswith(f"{TEACHER}.") and name != f"{TEACHER}.ok" and not name.startswith(f"{TEACHER}.rejected.")


def here() -> str:
    """This process's versions of WORKER_PACKAGES, as one string: "groundcot=0.1.0 apache-beam=2.77.0 ..."."""
    found = versions()
    return " ".join(f"{name}={found[name]}" for name in WORKER_PACKAGES)


class NoteVersions(beam.DoFn):
    """Pass-through: each worker process records ``here()`` in a Beam string set, read back by
    ``worker_versions``."""

    def setup(self):
        self.seen = Metrics.string_set(NAMESPACE, "worker_versions")
        self.line = here()

    def start_bundle(self):
        self.seen.add(self.line)

    def process(self, item):
        yield item


def worker_versions(result) -> list[str]:
    """The distinct version lines the workers recorded (empty when the runner reports no metrics); a
    line other than the driver's own is logged as a mismatch."""
    lines: set[str] = set()
    try:
        for s in job_metrics(result).get("string_sets", ()):
            if s.key.metric.namespace == NAMESPACE and s.key.metric.name == "worker_versions":
                lines |= set(s.committed or s.attempted or ())
    except Exception:  # noqa: BLE001 - beam_counters has already said so
        return []
    driver = here()
    for line in sorted(lines - {driver}):
        log.warning("version mismatch: a worker runs %s, the driver %s", line, driver)
    return sorted(lines)


def teacher_stats(cfg: JobConfig, counters: dict[str, int]) -> dict:
    """The teacher's kind and, for API teachers, the ledger and an estimated cost."""
    info = {"kind": cfg.teacher.kind, "offline_baseline": getattr(cfg.teacher, "offline_baseline", False)}
    if not is_api(cfg.teacher):
        return info
    per_style = f"{TEACHER}.quality."  # in quality() below
    ledger = {k[len(TEACHER) + 1:]: v for k, v in counters.items() if is_ledger(k) and not k.startswith(per_style)}
    info.update(model=cfg.teacher.connection.model)
    return {**info, **spending(ledger, cfg.teacher.cost)}


def spending(ledger: dict[str, int], cost) -> dict:
    """A stage's API ledger (retries added), its estimated cost at the ``cost`` section's prices, image tokens per call."""
    ledger = {**ledger, "retries": max(0, ledger.get("attempts", 0) - ledger.get("requests", 0))}
    info: dict = {"ledger": dict(sorted(ledger.items()))}
    if cost.price_prompt_per_mtok is not None and cost.price_completion_per_mtok is not None:
        info["estimated_cost_usd"] = round(
            ledger.get("prompt_tokens", 0) / 1e6 * cost.price_prompt_per_mtok
            + ledger.get("completion_tokens", 0) / 1e6 * cost.price_completion_per_mtok, 6)
        info["max_cost_usd"] = cost.max_cost_usd
    if ledger.get("requests"):
        info["image_tokens_per_call"] = round(ledger.get("image_tokens", 0) / ledger["requests"], 1)
    return info


def quality(stats: dict, counters: dict[str, int]) -> dict:
    """Per style: accepted on the first try, accepted after a re-ask, rejected by reason."""
    out = {}
    for style, entry in stats["by_style"].items():
        if style == "before_styles":
            continue
        fixed = counters.get(f"{TEACHER}.quality.{style}.accepted_after_reask", 0)
        out[style] = {"accepted_first_try": entry["written"] - fixed, "accepted_after_reask": fixed,
                      "reasked": counters.get(f"{TEACHER}.quality.{style}.reasked", 0),
                      "rejected": entry["rejected"], "rejected_by_reason": entry["rejected_by_reason"]}
    return out


def critic_stats(cfg: JobConfig, counters: dict[str, int]) -> dict | None:
    """The critic's model, what it passed and rejected, its ledger (``critic.<x>`` counters) and cost; None when off."""
    from groundcot.transforms.critic import STAGE as CRITIC
    from groundcot.transforms.critic import client_config

    if not cfg.quality.critic.enabled:
        return None
    api = client_config(cfg.quality.critic, cfg.teacher, cfg.cache)
    prefix, rejected = f"{CRITIC}.", f"{CRITIC}.rejected."
    ledger = {k[len(prefix):]: v for k, v in counters.items()
              if k.startswith(prefix) and k != f"{CRITIC}.ok" and not k.startswith(rejected)}
    return {"model": api.connection.model, "min_score": cfg.quality.min_score, "passed": counters.get(f"{CRITIC}.ok", 0),
            "rejected_by_reason": {k[len(rejected):]: v for k, v in sorted(counters.items()) if k.startswith(rejected)},
            **spending(ledger, api.cost)}


def mix_stats(cfg: JobConfig, stats: dict) -> dict | None:
    """The mix asked for (the config) and obtained (per group: available, wanted, kept); None when no mix."""
    from groundcot.transforms.mix import asked

    return {"asked": asked(cfg.mix), "obtained": stats["mix"]} if cfg.mix.groups else None


def check_not_empty(stats: dict) -> None:
    """A run that wrote no row made nothing: it read nothing, or every record was rejected (the
    rejections are in the kept staging folder, or published with --allow-empty)."""
    if stats["records_in"] == 0:
        raise EmptyRun(f"the sources gave 0 records ({stats['filtered_out']} filtered out)")
    if stats["written"] > 0:
        return
    reasons = stats["rejected_by_reason"]
    if reasons.get("teacher_batch_pending"):  # a batch run's first pass: it wrote the batch's request shards
        return
    shown = ", ".join(f"{r} ({n})" for r, n in sorted(reasons.items()))
    if reasons and all(r.startswith(INFRA_REASONS) for r in reasons):
        raise EmptyRun(f"every one of {stats['records_in']} records was rejected with "
                       f"{', '.join(sorted(reasons))}: nothing could be made")
    raise EmptyRun(f"0 rows written: every one of {stats['records_in']} records was rejected ({shown})")
