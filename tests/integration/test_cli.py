"""The command line as a user meets it: help with an example everywhere, --version, one exit-code
table for every command, and one-line usage errors."""
import argparse
import signal
import subprocess
import sys
import time

import pytest

from groundcot import __version__
from groundcot.pipeline.cli import EXAMPLES, _parser, main

from support import REPO

COMMANDS = [["generate"], ["demo"], ["train"], ["export"], ["tiny-model"], ["publish"], ["inspect"], ["teacher"],
            ["teacher", "try"], ["teacher", "submit"], ["teacher", "status"], ["teacher", "collect"], ["prompts"],
            ["prompts", "list"], ["prompts", "show"]]


def parsers(parser):
    """The parser and every command's parser below it."""
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from parsers(sub)


def help_of(args, capsys) -> str:
    with pytest.raises(SystemExit) as done:
        main([*args, "--help"])
    assert done.value.code == 0
    return capsys.readouterr().out


def test_every_help_has_an_example_and_every_argument_a_description(capsys):
    top = help_of([], capsys)
    assert "``" not in top and "exit codes (every command):" in top
    for code in ("0    done", "1    the run failed", "2    usage or config error", "130  interrupted"):
        assert code in top
    assert set(EXAMPLES) == {args[-1] for args in COMMANDS}
    for args in COMMANDS:
        text = help_of(args, capsys)
        assert f"example:\n  {EXAMPLES[args[-1]].splitlines()[0]}" in text, args
    for parser in parsers(_parser()):  # every argument says what it is
        for action in parser._actions:
            assert action.help, (parser.prog, action.dest)
    assert "sft: supervised fine-tuning" in help_of(["train"], capsys)
    assert "trl: Hugging Face datasets" in help_of(["export"], capsys)
    assert "records to try" in help_of(["teacher", "try"], capsys)


def test_version(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out == f"groundcot {__version__}\n"


@pytest.mark.parametrize("args, says", [
    (["inspect", "RUN", "--per-style", "-3"], "argument --per-style: must be at least 1 (got -3)"),
    (["generate", "demo", "--limit", "0"], "argument --limit: must be at least 1 (got 0)"),
    (["teacher", "try", "demo", "--records", "x"], "argument --records: expected a whole number, got 'x'"),
    (["export", "RUN"], "the following arguments are required: --format"),
    (["frobnicate"], "argument COMMAND: invalid choice: 'frobnicate'"),
])
def test_a_usage_error_is_one_line_and_exit_2(args, says, capsys):
    with pytest.raises(SystemExit) as done:
        main(args)
    err = capsys.readouterr().err
    assert done.value.code == 2 and err.count("\n") == 1 and says in err and "Traceback" not in err


@pytest.mark.parametrize("command", [["export", "--format", "trl"], ["inspect"], ["publish", "--repo-id", "u/n",
                                                                                   "--dry-run"]])
def test_a_missing_run_folder_is_exit_2_for_every_command(command, tmp_path, capfd):
    missing = str(tmp_path / "nowhere")
    assert main([command[0], missing, *command[1:]]) == 2
    err = capfd.readouterr().err
    assert err == (f"groundcot: {command[0]}: {missing}: no such folder (RUN is a run's output folder, the one "
                   "holding data/ and stats.json)\n")


@pytest.mark.slow
def test_ctrl_c_during_generate_is_one_line_and_exit_130(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "groundcot", "generate", str(REPO / "jobs" / "demo.yaml"), "-o",
                             str(tmp_path / "out")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=tmp_path)
    deadline = time.monotonic() + 120
    lines = []
    while time.monotonic() < deadline:  # until the job runs (its progress line), then Ctrl-C
        line = proc.stderr.readline()
        lines.append(line)
        if "progress: " in line and "progress: starting" not in line or "run " in line and "writes into" in line:
            break
    time.sleep(0.5)  # mid-job: the demo's models and teacher take seconds more
    proc.send_signal(signal.SIGINT)
    _, rest = proc.communicate(timeout=120)
    err = "".join(lines) + rest
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "Task was destroyed" not in err and "KeyboardInterrupt" not in err
    assert err.strip().splitlines()[-1].startswith("groundcot: interrupted; the output folder is as it was")
