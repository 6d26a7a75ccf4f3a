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
