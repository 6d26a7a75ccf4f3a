"""The ``groundcot`` command line."""
from __future__ import annotations

import argparse
import logging
import sys
import warnings

log = logging.getLogger("groundcot")


def _setup_logging() -> None:
    """groundcot's INFO lines; other libraries only at ERROR."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger().handlers[0].addFilter(
        lambda r: r.name.startswith("groundcot") or r.levelno >= logging.ERROR)
    warnings.filterwarnings("ignore", module="apache_beam")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="groundcot", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate", help="run a job config and write a dataset")
    gen.add_argument("config", help="job YAML, e.g. jobs/demo.yaml")
    gen.add_argument("--out", help="output folder or bucket prefix (overrides output.dir)")
    gen.add_argument("--limit", type=int, help="at most N records per source")
    gen.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                     help="override a config value, e.g. --set depth.enabled=false (repeatable)")
    train = sub.add_parser("train", help="fine-tune a VLM on groundcot rows (TRL + peft)")
    train.add_argument("method", choices=["sft", "grpo"])
    train.add_argument("--config", required=True, help="e.g. jobs/train_sft.yaml")
    train.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config value, e.g. --set train.max_steps=10 (repeatable)")
    exp = sub.add_parser("export", help="write a run's rows in the layout a trainer reads")
    exp.add_argument("out", help="the run's output folder (the one holding data/)")
    exp.add_argument("--format", required=True, choices=["trl", "llamafactory", "verl"])
    exp.add_argument("--dest", help="where to write (default: OUT/exports/FORMAT)")
    exp.add_argument("--styles", help="comma-separated styles to keep (default: all)")
    return parser


def _export(args) -> int:
    from groundcot.pipeline.export import export

    try:
        export(args.out, args.format, args.dest, args.styles.split(",") if args.styles else None)
    except FileNotFoundError as err:
        print(f"groundcot: no run to export in {args.out}: {err}", file=sys.stderr)
        return 1
    return 0


def _train(args) -> int:
    from groundcot.pipeline.config import ConfigError, read_tree, validated
    from groundcot.trainer.config import GrpoJob, SftJob

    try:
        job = validated(SftJob if args.method == "sft" else GrpoJob, read_tree(args.config, args.overrides), args.config)
    except ConfigError as err:
        print(f"groundcot: config error: {err}", file=sys.stderr)
        return 2
    if args.method == "sft":
        from groundcot.trainer.sft import run_sft as run
    else:
        from groundcot.trainer.grpo import run_grpo as run
    summary = run(job)
    log.info("trained %s for %d steps on %d rows -> %s", args.method, summary["global_step"], summary["rows"],
             job.output_dir)
    for name, value in summary["reward_means"].items():
        log.info("  %s %.4f", name, value)
    return 0


def _report(stats: dict, out: str) -> None:
    log.info("done in %.1fs: %d records in, %d written, %d rejected -> %s",
             stats["elapsed_s"], stats["records_in"], stats["written"], stats["rejected"], out)
    for reason, n in stats["rejected_by_reason"].items():
        log.info("  rejected %-28s %d", reason, n)
    log.info("counters: %s", ", ".join(f"{k}={v}" for k, v in stats["counters"].items()))


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _setup_logging()
    if args.command == "export":
        return _export(args)
    if args.command == "train":
        return _train(args)
    from groundcot.pipeline.config import ConfigError, load_config
    from groundcot.pipeline.run import run

    overrides = list(args.overrides)
    try:
        cfg = load_config(args.config, overrides)
        if args.limit:
            for src in cfg.sources:
                src.limit = min(src.limit or args.limit, args.limit)
    except ConfigError as err:
        print(f"groundcot: config error: {err}", file=sys.stderr)
        return 2
    out = args.out or cfg.output.dir
    try:
        stats = run(cfg, out)
    except RuntimeError as err:
        print(f"groundcot: {err}", file=sys.stderr)
        return 1
    _report(stats, out)
    if not stats["balanced"]:
        log.error("stats do not add up: %d in; per style: %s", stats["records_in"], stats["by_style"])
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
