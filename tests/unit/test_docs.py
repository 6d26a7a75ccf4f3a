from groundcot.pipeline.docs import refresh

from support import REPO

README = (REPO / "README.md").read_text()


def test_readme_embeds_the_generated_reference_tables():
    # regenerate with: python -m groundcot.pipeline.docs --write
    assert refresh(README) == README


def test_readme_has_exactly_the_two_setup_commands_and_ci_runs_the_test_one():
    blocks = README.split("```bash\n")[1:3]
    install, test = (b.split("```")[0].strip() for b in blocks)
    assert "constraints.txt" in install and "groundcot generate jobs/demo.yaml" in install
    assert test in (REPO / ".ci" / "run").read_text()


def readme_commands() -> list[str]:
    """The concrete ``groundcot ...`` lines of the README's bash blocks (not the usage lines)."""
    blocks = [b.split("```")[0] for b in README.split("```bash\n")[1:]]
    lines = [line.split(" # ")[0].strip() for b in blocks for line in b.splitlines()]
    return [line for line in lines if line.startswith("groundcot ") and not any(c in line for c in "[{")]


def test_every_readme_command_parses_with_the_cli():
    import shlex

    from groundcot.pipeline.cli import _parser

    commands = readme_commands()
    assert len(commands) >= 5 and any(c.startswith("groundcot train sft jobs/") for c in commands)
    for command in commands:
        _parser().parse_args(shlex.split(command)[1:])  # exits (fails the test) on an unknown flag
    for gone in ("--config", "--dest", "--styles"):
        assert gone not in README
