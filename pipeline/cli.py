"""The `groundcot` command line. What a command writes is always -o/--out.

    groundcot generate CONFIG [-o DIR] [--limit N] [--set KEY=VALUE ...] [--overwrite] [--allow-empty] [--check]
                       [--dry-run [FILE]]
    groundcot demo [-o DIR] [--overwrite]
    groundcot train {sft,grpo} CONFIG [-o DIR] [--set KEY=VALUE ...]
    groundcot export RUN --format {trl,llamafactory,verl} [-o DIR] [--style S ...] [--rl-depth-image]
    groundcot eval MODEL --run RUN [--split test] [--style S ...] [-o DIR] [--base-url URL] [--limit N] [--compare EVAL]
    groundcot tiny-model DIR [--kind {qwen25vl,llava}]
    groundcot publish RUN --repo-id USER/NAME [--private] [--revision R] [--dry-run]
    groundcot inspect RUN [-o DIR] [--per-style N] [--seed S]
    groundcot teacher {try,submit,status,collect} CONFIG ...
    groundcot prompts list | show NAME

CONFIG is a YAML file, or the name of a job bundled with groundcot (jobs/train_sft.yaml,
train_sft.yaml or train_sft) when no such file exists. Errors are one line.

exit codes (every command):
  0    done
  1    the run failed after it started (a worker, the disk, the Hub; a run that made nothing)
  2    usage or config error, or a check before the start failed (a bad argument or key; a file,
       folder, model, variable or endpoint it names that is not there); nothing was run or written
  130  interrupted (Ctrl-C)
"""
from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import warnings
from pathlib import Path, PurePath

log = logging.getLogger("groundcot")
EXPORT_FORMATS = ("trl", "llamafactory", "verl")
RUN_FAILED, USAGE, INTERRUPTED = 1, 2, 130

# An example for every command's --help (a command's own lines, under "example:").
EXAMPLES = {
    "generate": "groundcot generate jobs/demo.yaml -o out/demo --limit 20 --set teacher.reask=false\n"
                "  groundcot generate my_job.yaml --check",
    "demo": "groundcot demo -o out/demo --overwrite",
    "train": "groundcot train sft train_sft -o out/sft --set train.max_steps=10",
    "export": "groundcot export out/demo --format trl -o out/demo-trl --style sif",
    "tiny-model": "groundcot tiny-model models/tiny-qwen",
    "publish": "groundcot publish out/demo --repo-id me/groundcot-demo --dry-run",
    "inspect": "groundcot inspect out/demo --per-style 4   # then open out/demo/report/index.html",
    "teacher": "groundcot teacher try my_job.yaml --records 2",
    "try": "groundcot teacher try my_job.yaml --records 2 --set teacher.request.temperature=0.2",
    "submit": "groundcot teacher submit my_job.yaml -o out/run",
    "status": "groundcot teacher status my_job.yaml -o out/run",
    "collect": "groundcot teacher collect my_job.yaml -o out/run",
    "prompts": "groundcot prompts list\n  groundcot prompts show teacher_system > system.txt",
    "list": "groundcot prompts list",
    "show": "groundcot prompts show teacher_system > system.txt",
}


class Parser(argparse.ArgumentParser):
    """argparse, with a usage error as one line (exit 2) and an example under every command's help."""

    def __init__(self, *args, **kwargs):
        name = kwargs.get("prog", "").split()[-1] if kwargs.get("prog") else ""
        if name in EXAMPLES and "epilog" not in kwargs:
            kwargs["epilog"] = f"example:\n  {EXAMPLES[name]}"
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        self.exit(USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n".replace("\n", " ").rstrip()
                  + "\n")


def at_least_one(text: str) -> int:
    """An argparse type: an integer of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 (got {value})")
    return value


# Beam logs a failed step's error with its traceback, then raises it again: groundcot's last line names it
RAISED_AGAIN = "apache_beam.runners.common"


def _shown(record: logging.LogRecord) -> bool:
    """groundcot's lines; other libraries' errors, but not one that Beam raises again."""
    if record.name.startswith("groundcot"):
        return True
    return record.levelno >= logging.ERROR and not (record.name == RAISED_AGAIN and record.exc_info)


def _setup_logging() -> None:
    """groundcot's INFO lines; other libraries only at ERROR."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger().handlers[0].addFilter(_shown)
    warnings.filterwarnings("ignore", module="apache_beam")


def bundled_jobs() -> Path:
    """The folder of the job configs installed with groundcot."""
    from groundcot import jobs

    return Path(jobs.__file__).parent


def find_config(name: str) -> str | None:
    """``name`` if it is a file, else the bundled job it names, else None."""
    if Path(name).is_file():
        return name
    parts = PurePath(name).parts
    if len(parts) == 1 or (len(parts) == 2 and parts[0] == "jobs"):
        stem = parts[-1].removesuffix(".yaml").removesuffix(".yml")
        bundled = bundled_jobs() / f"{stem}.yaml"
        if bundled.is_file():
            log.info("%s is not a file here; using the bundled job %s", name, bundled)
            return str(bundled)
    return None


def no_config(name: str) -> str:
    names = ", ".join(sorted(p.stem for p in bundled_jobs().glob("*.yaml")))
    return f"{name}: no such file, and no bundled job of that name (bundled: {names})"


def resolve_config(name: str) -> str:
    """``name`` if it is a file, else the bundled job it names, else a ConfigError listing them."""
    from groundcot.pipeline.configfile import ConfigError

    if (found := find_config(name)) is None:
        raise ConfigError(no_config(name))
    return found


def _parser() -> argparse.ArgumentParser:
    from groundcot import __version__

    parser = Parser(prog="groundcot", description=__doc__, epilog=f"example:\n  {EXAMPLES['generate']}")
    parser.add_argument("--version", action="version", version=f"groundcot {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                help="one of these (each has its own --help, with an example)")
    sets = dict(dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                help="override a config value with a dotted key and a YAML value (repeatable)")

    gen = sub.add_parser("generate", help="run a job config and write a dataset")
    gen.add_argument("config", help="job YAML, e.g. jobs/demo.yaml (or a bundled job's name)")
    gen.add_argument("-o", "--out", help="output folder or bucket prefix (default: the config's output.dir)")
    gen.add_argument("--limit", type=at_least_one, help="at most N records per source (the N smallest ids)")
    gen.add_argument("--set", **sets)
    overwrite = dict(action="store_true", help="write into an output folder that holds files groundcot did not "
                                               "write (they are left alone)")
    gen.add_argument("--overwrite", **overwrite)
    gen.add_argument("--allow-empty", action="store_true",
                     help="publish a run that read 0 records, or whose every record failed on infrastructure "
                          "(missing images, an unreachable teacher); without it such a run exits 1")
    gen.add_argument("--check", action="store_true",
                     help="check the config, paths (per runner), sources, secrets, the teacher endpoint and "
                          "models, print the plan, and exit (0: all passed; 2: one line naming what failed, as the "
                          "run would fail before it starts); "
                          "nothing runs and nothing is written")
    gen.add_argument("--dry-run", nargs="?", const="groundcot-job.json", metavar="FILE",
                     help="build the job (on Dataflow: the job Dataflow would get) and write its graph and "
                          "options, secrets removed, to FILE (default: groundcot-job.json); submits nothing")

    demo = sub.add_parser("demo", help="run the bundled demo job on the bundled sample data (offline)")
    demo.add_argument("-o", "--out", help="output folder (default: out/demo)")
    demo.add_argument("--overwrite", **overwrite)

    train = sub.add_parser("train", help="fine-tune a VLM on groundcot rows (TRL + peft)")
    train.add_argument("method", choices=["sft", "grpo"],
                       help="sft: supervised fine-tuning on the rows' CoT; grpo: reinforcement learning with "
                            "the styles' rewards")
    train.add_argument("config", help="training YAML, e.g. jobs/train_sft.yaml (or a bundled job's name)")
    train.add_argument("-o", "--out", help="where the adapter, checkpoints and summary.json go "
                                           "(default: the config's output_dir)")
    train.add_argument("--set", **sets)

    exp = sub.add_parser("export", help="write a run's rows in the layout a trainer reads")
    exp.add_argument("run", help="the run's output folder (the one holding data/)")
    exp.add_argument("--format", required=True, choices=EXPORT_FORMATS,
                     help="trl: Hugging Face datasets for TRL's SFT/GRPO trainers; llamafactory: ShareGPT JSON with "
                          "a dataset_info.json; verl: Parquet prompts with reward_model ground truth")
    exp.add_argument("-o", "--out", help="where to write (default: RUN/exports/FORMAT)")
    exp.add_argument("--style", dest="styles", action="append", metavar="STYLE",
                     help="keep only this style (repeatable; default: all)")
    exp.add_argument("--rl-depth-image", action="store_true",
                     help="RL prompts (verl; trl's grpo/) show sif rows' depth image too (default: RGB only, "
                          "as in GRPO-SIF; the trainer's data.rl_depth_image)")

    ev = sub.add_parser("eval", help="score a model on a run's held-out rows with the reward code",
                        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=(
                            "example: groundcot eval out/sft --run out/demo --split test -o out/eval-sft "
                            "--compare out/eval-base"))
    ev.add_argument("model", help="a model folder, a LoRA adapter folder from `groundcot train`, or with --base-url "
                                  "the model name the endpoint serves")
    ev.add_argument("--run", required=True, help="the run's output folder (the one holding data/)")
    ev.add_argument("--split", default="test", help="which split's rows to answer (default: test)")
    ev.add_argument("--style", dest="styles", action="append", metavar="STYLE",
                    help="evaluate only this style (repeatable; default: all the run has)")
    ev.add_argument("-o", "--out", help="where eval.json, generations.jsonl, eval.html and eval.png go "
                                        "(default: RUN/eval/<model folder name>)")
    ev.add_argument("--base-url", help="an OpenAI-compatible endpoint serving MODEL, e.g. http://localhost:8000/v1")
    ev.add_argument("--api-key-env", default="OPENAI_API_KEY", help="with --base-url: the environment variable "
                                                                    "holding the key (default: OPENAI_API_KEY)")
    ev.add_argument("--limit", type=int, metavar="N", help="at most N rows per style")
    ev.add_argument("--max-new-tokens", type=int, default=512, metavar="N", help="tokens per turn (default: 512)")
    ev.add_argument("--max-turns", type=int, default=4, metavar="N", help="mgpo/aperture: turns per rollout")
    ev.add_argument("--compare", metavar="OTHER_EVAL", help="an earlier eval.json (or its folder): print both "
                                                            "side by side")

    tiny = sub.add_parser("tiny-model", help="write a tiny random VLM for offline smoke tests of `train`")
    tiny.add_argument("out", metavar="DIR", help="the folder to write the model and its processor to")
    tiny.add_argument("--kind", choices=("qwen25vl", "llava"), default="qwen25vl",
                      help="the architecture (default: qwen25vl, what the bundled training jobs expect)")

    pub = sub.add_parser("publish", help="upload a run to the Hugging Face Hub (card, configs, stats, job)")
    pub.add_argument("run", help="the run's output folder")
    pub.add_argument("--repo-id", required=True, metavar="USER/NAME", help="the dataset repo on the Hub")
    pub.add_argument("--private", action="store_true", help="create the repo private")
    pub.add_argument("--revision", help="branch to commit to (default: main)")
    pub.add_argument("--dry-run", action="store_true", help="print the files and sizes that would be pushed")

    ins = sub.add_parser("inspect", help="write a static HTML report of a run (opens from disk)")
    ins.add_argument("run", help="the run's output folder")
    ins.add_argument("-o", "--out", help="report folder (default: RUN/report)")
    ins.add_argument("--per-style", type=at_least_one, default=6, metavar="N", help="gallery rows per style")
    ins.add_argument("--seed", type=int, default=0, help="seed of the gallery's sample")

    teach = sub.add_parser("teacher", help="work with the teacher: try prompts, drive batch jobs")
    tsub = teach.add_subparsers(dest="action", required=True, help="what to do")
    tried = tsub.add_parser("try", help="run the teacher on N records and print each reply with its verdict")
    tried.add_argument("config", help="job YAML (or a bundled job's name)")
    tried.add_argument("--records", type=at_least_one, default=3, metavar="N",
                       help="records to try, per source (default: 3); each is asked once per style")
    tried.add_argument("--set", **sets)
    for action, what in (("submit", "upload the job's batch request shards and create the batches"),
                         ("status", "show the state of the job's batches"),
                         ("collect", "download finished batches' results into the response cache")):
        cmd = tsub.add_parser(action, help=what)
        cmd.add_argument("config", help="job YAML (or a bundled job's name)")
        cmd.add_argument("-o", "--out", help="the run folder the batch shards were written to "
                                             "(default: the config's output.dir)")
        cmd.add_argument("--set", **sets)

    prom = sub.add_parser("prompts", help="the default prompts a job's `prompts:` section can replace")
    psub = prom.add_subparsers(dest="action", required=True, help="what to do")
    psub.add_parser("list", help="each prompt's name, what it is for and its placeholders")
    shown = psub.add_parser("show", help="a prompt's default text, ready to copy into a file")
    shown.add_argument("name", help="the prompt's name, as `groundcot prompts list` shows it")
    return parser


def _prompts(args) -> int:
    from groundcot import prompts

    if args.action == "show":
        if args.name not in prompts.names():
            return _fail(f"no prompt {args.name!r} (known: {', '.join(prompts.names())})", 2)
        print(prompts.default(args.name))
        return 0
    for name in prompts.names():
        uses = ", ".join(f"${p}" for p in sorted(prompts.placeholders(name))) or "no placeholders"
        print(f"{name:<20} {prompts.describe(name)} [{uses}]")
    return 0


INTERRUPT_LINE = ("interrupted; the output folder is as it was (a partial run stays in its staging folder, "
                  "and the caches keep what was done)")
_interrupted = threading.Event()


def _on_sigint(signum, frame) -> None:
    """Ctrl-C: from now on nothing more is logged (a Beam stage that the interrupt reaches in its set-up
    logs it with a traceback, and may hand it on wrapped in another error), then KeyboardInterrupt."""
    _interrupted.set()
    logging.disable(logging.CRITICAL)
    raise KeyboardInterrupt


def _fail(message: str, code: int) -> int:
    if _interrupted.is_set():  # whatever error the interrupt surfaced as
        message, code = INTERRUPT_LINE, INTERRUPTED
    print(f"groundcot: {message}".replace("\n", " "), file=sys.stderr)
    return code


def _generate(config: str, out: str | None, limit: int | None, overrides: list[str], *,
              overwrite: bool = False, allow_empty: bool = False, check: bool = False,
              dry_run: str | None = None) -> int:
    from groundcot.pipeline.config import ConfigError, load_config
    from groundcot.pipeline.outputs import OutputRefused
    from groundcot.pipeline.preflight import CheckFailed
    from groundcot.pipeline.run import describe, run

    try:
        if limit is not None and limit < 1:
            raise ConfigError(f"--limit: must be at least 1 (got {limit}); leave it out to read everything")
        cfg = load_config(config, overrides)
        if limit is not None:
            for src in cfg.sources:
                src.limit = min(src.limit or limit, limit)
        if check:
            return _check(cfg, out, overwrite)
        if dry_run:
            print(f"the job, not submitted: {describe(cfg, out, dry_run)}")
            return 0
        out = out or cfg.output.dir
        stats = run(cfg, out, overwrite=overwrite, allow_empty=allow_empty)
    except ConfigError as err:
        return _fail(f"config error: {err}", USAGE)
    except (OutputRefused, CheckFailed) as err:  # found before anything ran, as --check finds it
        return _fail(str(err), USAGE)
    except RuntimeError as err:
        return _fail(str(err), RUN_FAILED)
    _report(stats, out)
    if not stats["balanced"]:
        log.error("stats do not add up: %d in; per style: %s", stats["records_in"], stats["by_style"])
        return 1
    return 0


def _check(cfg, out: str | None, overwrite: bool) -> int:
    """``--check``: print the plan (exit 0), or one line naming the first check that fails (exit 2, as
    the run would exit when the same check stops it)."""
    from groundcot.pipeline.check import check_job
    from groundcot.pipeline.config import ConfigError

    out_key = "output.dir" if out in (None, cfg.output.dir) else "--out"
    try:
        lines = check_job(cfg, (out or cfg.output.dir).rstrip("/"), out_key, overwrite)
    except ConfigError as err:
        return _fail(f"config error: {err}", USAGE)
    except RuntimeError as err:  # OutputRefused, CheckFailed: what a run would refuse to start with
        return _fail(str(err), USAGE)
    print("\n".join(lines))
    return 0


def _train(args) -> int:
    from groundcot.pipeline.configfile import ConfigError, read_tree, validated  # no job config: no Beam
    from groundcot.schemas.runs import RunNotFound
    from groundcot.trainer.config import GrpoJob, SftJob
    from groundcot.trainer.models import ModelMissing, check_model, with_device_precision

    try:
        config = resolve_config(args.config)
        tree = read_tree(config, args.overrides)
        if "sources" in tree:
            raise ConfigError(f"{config} is a `groundcot generate` job config (it has sources); run it with "
                              f"`groundcot generate {config}`")
        if args.out:
            tree["output_dir"] = args.out
        job = validated(SftJob if args.method == "sft" else GrpoJob, tree, config)
        check_model(job.model)  # before the data, torch's import and the libraries' minutes of Hub retries
        job = with_device_precision(job)
    except (ConfigError, ValueError) as err:
        return _fail(f"config error: {err}", USAGE)
    except ModelMissing as err:
        return _fail(str(err), USAGE)
    if args.method == "sft":
        from groundcot.trainer.sft import run_sft as run
    else:
        from groundcot.trainer.grpo import run_grpo as run
    try:
        summary = run(job)
    except RunNotFound as err:
        return _fail(f"data.runs: {err}", USAGE)
    except ModelMissing as err:
        return _fail(str(err), USAGE)
    log.info("trained %s for %d steps on %d rows -> %s", args.method, summary["global_step"], summary["rows"],
             job.output_dir)
    for name, value in summary["reward_means"].items():
        log.info("  %s %.4f", name, value)
    return 0


def _export(args) -> int:
    from groundcot.runs.export import export

    try:
        export(args.run, args.format, args.out, args.styles, args.rl_depth_image)
    except FileNotFoundError as err:  # the RUN argument names no run: a usage error, as for inspect
        return _fail(f"no run to export: {err}", USAGE)
    except ValueError as err:
        return _fail(f"nothing to export: {err}", RUN_FAILED)
    return 0


def _eval(args) -> int:
    from groundcot.schemas.runs import RunNotFound
    from groundcot.trainer import eval as E

    if args.limit is not None and args.limit < 1:
        return _fail(f"--limit: must be at least 1 (got {args.limit})", 2)
    try:
        other = E.read_eval(args.compare) if args.compare else None
        result = E.evaluate(args.model, args.run, args.out or E.default_out(args.run, args.model), args.split,
                            args.styles, args.limit, args.base_url, args.api_key_env, args.max_new_tokens,
                            args.max_turns)
    except RunNotFound as err:
        return _fail(f"--run: {err}", 1)
    except E.EvalError as err:
        return _fail(str(err), 2)
    print(json.dumps(result["styles"], indent=2))
    if other is not None:
        print(E.compare(result, other))
    return 0


def _report(stats: dict, out: str) -> None:
    log.info("done in %.1fs: %d records in, %d written, %d rejected -> %s",
             stats["elapsed_s"], stats["records_in"], stats["written"], stats["rejected"], out)
    for reason, n in stats["rejected_by_reason"].items():
        log.info("  rejected %-28s %d", reason, n)
    log.info("counters: %s", ", ".join(f"{k}={v}" for k, v in stats["counters"].items()))


# Commands whose code lives in their own module: ``main(args) -> exit code``.
MODULES = {"publish": "groundcot.runs.publish", "inspect": "groundcot.runs.inspect",
           "teacher": "groundcot.pipeline.teacher"}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _setup_logging()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _on_sigint)
    try:
        return _dispatch(args)
    except KeyboardInterrupt:
        # the pending teacher calls' tasks are dropped with the loop: no "Task was destroyed" lines
        logging.getLogger("asyncio").disabled = True
        return _fail(INTERRUPT_LINE, INTERRUPTED)
    except Exception:
        if _interrupted.is_set():  # the interrupt, wrapped by the runner
            return _fail(INTERRUPT_LINE, INTERRUPTED)
        raise


def _starting(config: str) -> None:
    """The first progress line, before the seconds of importing Beam (and the models' libraries)."""
    log.info("progress: starting: reading %s, loading Beam", config)


def _dispatch(args) -> int:
    run = getattr(args, "run", None)
    if run is not None and "://" not in run and not Path(run).is_dir():  # export, inspect, publish
        return _fail(f"{args.command}: {run}: no such folder (RUN is a run's output folder, the one holding "
                     "data/ and stats.json)", USAGE)
    if args.command in MODULES:
        import importlib

        return importlib.import_module(MODULES[args.command]).main(args)
    if args.command == "export":
        return _export(args)
    if args.command == "prompts":
        return _prompts(args)
    if args.command == "train":
        return _train(args)
    if args.command == "eval":
        return _eval(args)
    if args.command == "tiny-model":
        from groundcot.trainer.tiny import BUILDERS

        print(BUILDERS[args.kind](args.out))
        return 0
    if args.command == "demo":
        config = str(bundled_jobs() / "demo.yaml")
        _starting(config)
        return _generate(config, args.out, None, [], overwrite=args.overwrite)
    config = find_config(args.config)  # without importing Beam: the first line comes at once
    if config is None:
        return _fail(f"config error: {no_config(args.config)}", USAGE)
    _starting(config)
    return _generate(config, args.out, args.limit, args.overrides, overwrite=args.overwrite,
                     allow_empty=args.allow_empty, check=args.check, dry_run=args.dry_run)


if __name__ == "__main__":
    sys.exit(main())
