"""Styles are plugins: one class found through the registry or the ``groundcot.styles`` entry points."""
import ast
from importlib.metadata import EntryPoint

import pytest
from test_styles import record, styled

from groundcot import prompts
from groundcot.pipeline.config import ConfigError, load_config
from groundcot.schemas.cot import CotError
from groundcot.schemas.record import Record
from groundcot.transforms import styles as registry
from groundcot.transforms.sink import ParquetRowsSink, to_row
from groundcot.transforms.styles import STYLES, Style, StyleError, columns_of, get_style, run_columns, style_names
from groundcot.transforms.styles.base import answer_problem, text_part
from groundcot.transforms.validate import check

from support import REPO

DEMO = str(REPO / "jobs" / "demo.yaml")


class Short(Style):
    """A one-word answer; its prompts come with it (groundcot ships none by these names)."""

    name = "short"
    reward_parts = ("answer",)
    columns = ("chain",)
    card_text = "One word."
    teacher_prompt, train_prompt = "short_teacher", "short_train"
    prompt_texts = {"short_teacher": "Answer in one word.", "short_train": "$question Answer in one word."}

    def template(self, record: Record) -> list[str]:
        return [f"<answer>{record.answer}</answer>"]

    def request(self, record, prefix):
        return prefix.then([text_part(self.prompt(self.teacher_prompt))])

    def answer(self, record: Record) -> str:
        text = record.turns[0].strip()
        if not (text.startswith("<answer>") and text.endswith("</answer>")):
            raise CotError("not_answer", text[:60])
        return text[len("<answer>"):-len("</answer>")]

    def check(self, record, checks):
        return answer_problem(record, self.answer(record))


@pytest.fixture
def short(monkeypatch):
    monkeypatch.setitem(STYLES, "short", registry.register(Short, {}))  # checked, its prompts registered
    return STYLES["short"]


def entry(name: str, value: str) -> EntryPoint:
    return EntryPoint(name, value, registry.GROUP)


def test_an_entry_point_adds_a_style_after_the_built_ins(monkeypatch):
    monkeypatch.setattr(registry, "entry_points", lambda group: [entry("short", f"{__name__}:Short")])
    found = registry.discover()
    assert list(found) == ["sif", "mgpo", "aperture", "textual", "short"] and isinstance(found["short"], Short)


def test_an_installed_package_registers_a_style_through_its_metadata(tmp_path, monkeypatch):
    """What ``pip install`` leaves: the module and a dist-info with the entry point, on sys.path."""
    (tmp_path / "tiny_style.py").write_text("from test_style_plugins import Short\n\n\nclass Tiny(Short):\n"
                                            "    name = 'tiny'\n")
    info = tmp_path / "tiny_style-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: tiny-style\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[groundcot.styles]\ntiny = tiny_style:Tiny\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    found = registry.discover()
    assert list(found)[-1] == "tiny" and found["tiny"].prompt("short_teacher") == "Answer in one word."
    assert "short_teacher" in prompts.names() and "short_train" in prompts.hashes()  # listed, hashed on the card


@pytest.mark.parametrize("value, says", [
    ("no_such_module_xyz:Thing", "cannot load: ModuleNotFoundError"),
    (f"{__name__}:entry", "not a groundcot Style"),
    ("groundcot.transforms.styles.sif:Sif", "the name 'sif' is taken"),
])
def test_a_broken_plugin_is_one_error_naming_its_entry_point(monkeypatch, value, says):
    monkeypatch.setattr(registry, "entry_points", lambda group: [entry("bad", value)])
    with pytest.raises(StyleError) as err:
        registry.discover()
    assert f"entry point 'bad' ({value}) of groundcot.styles" in str(err.value) and says in str(err.value)


def test_a_style_may_only_own_columns_a_record_fills():
    class Odd(Short):
        name, columns = "odd", ("chain", "points", "question")

    with pytest.raises(StyleError, match=r"style 'odd' \(Odd\): columns \['points', 'question'\] are not own"):
        registry.register(Odd, {})


def test_unknown_style_names_the_known_ones(short):
    assert get_style("short") is short and style_names()[-1] == "short"
    with pytest.raises(StyleError, match="unknown style 'nope'; known: sif, mgpo, aperture, textual, short"):
        get_style("nope")


def test_config_accepts_a_registered_style_and_names_an_unknown_one(short):
    assert load_config(DEMO, ["styles=[sif, short]"]).styles == ["sif", "short"]
    with pytest.raises(ConfigError, match="styles.1: .*unknown style 'nope'; known: .*short"):
        load_config(DEMO, ["styles=[sif, nope]"])


def test_a_registered_style_is_written_checked_and_trained_with_its_own_columns_and_prompts(short):
    r = styled(record(), "short")
    assert check(r) is None and r.turns == ["<answer>red</answer>"]
    row = to_row(r)
    assert list(row) == list(columns_of("short")) and "chain" in row and "crops" not in row
    assert ParquetRowsSink("short", 8, 1).schema.names == list(columns_of("short"))
    assert row["messages"][0]["content"][1]["text"] == "What colour is the ball? Answer in one word."
    assert set(run_columns(["sif", "short"])) == set(columns_of("sif"))
    wrong = styled(record(), "short")
    wrong.turns = ["red"]
    assert check(wrong) == ("grammar_not_answer", "red")


def literal_names(node) -> set[str]:
    items = node.keys if isinstance(node, ast.Dict) else node.elts
    return {i.value for i in items if isinstance(i, ast.Constant) and isinstance(i.value, str)}


def test_the_style_list_is_written_once():
    """No module outside transforms/styles/ lists the built-in styles (a tuple, list, set or dict of their names)."""
    names = set(style_names()[:4])
    found = []
    for path in sorted(REPO.rglob("*.py")):
        rel = path.relative_to(REPO).as_posix()
        if rel.startswith(("tests/", "transforms/styles/", ".")) or "/." in rel:
            continue
        for node in ast.walk(ast.parse(path.read_text(), rel)):
            if isinstance(node, (ast.Tuple, ast.List, ast.Set, ast.Dict)) and len(literal_names(node) & names) >= 2:
                found.append(f"{rel}:{node.lineno}")
    assert found == []
