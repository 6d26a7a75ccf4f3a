"""The source registry: built-ins, sources registered at run time or through entry points, and the
card's provenance coming only from the run's own sources."""
from importlib.metadata import EntryPoint
from typing import Literal

import pytest

from groundcot.pipeline.config import ConfigError, load_config, sync_sources
from groundcot.runs.card import licenses, provenance, shown_path
from groundcot.transforms.sources import (
    GROUP,
    SOURCES,
    Provenance,
    Source,
    SourceBase,
    SourceError,
    discover,
    get_source,
    register,
    source_kinds,
)


class MineConfig(SourceBase):
    kind: Literal["mine"]
    colour: str = "red"


class Mine(Source):
    kind, Config = "mine", MineConfig
    provenance = Provenance("mit", "mine: MIT.", ("me/mine",))


@pytest.fixture
def mine():
    register(Mine)
    yield
    SOURCES.pop("mine")
    sync_sources()


def test_the_built_ins_are_registered():
    assert source_kinds() == ["viscot", "viscot_llava", "tallyqa", "gqa", "flickr30k", "grounded"]
    with pytest.raises(SourceError, match="no source of kind 'nope' .*known: viscot, viscot_llava"):
        get_source("nope")


def test_a_registered_source_is_accepted_by_config_validation(tmp_path, mine):
    job = tmp_path / "job.yaml"
    job.write_text("sources: [{kind: mine, path: a.jsonl, image_root: imgs, colour: blue}]\n")
    (src,) = load_config(str(job)).sources
    assert isinstance(src, MineConfig) and src.colour == "blue" and src.path == str(tmp_path / "a.jsonl")
    job.write_text("sources: [{kind: mine, path: a.jsonl, image_root: imgs, shade: blue}]\n")
    with pytest.raises(ConfigError, match=r"sources\.0\.shade: unknown key \(known: colour, "):
        load_config(str(job))


def test_an_unknown_kind_names_the_key_and_the_known_kinds(tmp_path):
    job = tmp_path / "job.yaml"
    job.write_text("sources: [{kind: mine, path: a.jsonl, image_root: imgs}]\n")
    with pytest.raises(ConfigError, match=r"sources\.0\.kind: .*'grounded'") as err:
        load_config(str(job))
    assert "\n" not in str(err.value)


def test_entry_points_add_sources_and_a_broken_one_is_one_line_naming_it():
    good = EntryPoint(name="mine", value=f"{__name__}:Mine", group=GROUP)
    assert isinstance(discover([good])["mine"], Mine) and "mine" not in SOURCES
    broken = EntryPoint(name="broken", value="no_such_package.sources:Thing", group=GROUP)
    with pytest.raises(SourceError, match=r"^entry point broken = no_such_package.sources:Thing \(groundcot.sources\)"
                                          r": ModuleNotFoundError"):
        discover([good, broken])
    not_a_source = EntryPoint(name="odd", value="json:dumps", group=GROUP)
    with pytest.raises(SourceError, match="entry point odd .*is not a groundcot Source"):
        discover([not_a_source])


def test_a_source_config_must_carry_its_kind():
    class Wrong(Source):
        kind, Config = "wrong", MineConfig

    with pytest.raises(SourceError, match=r"source wrong: its Config must subclass SourceBase with kind: "
                                          r"Literal\['wrong'\]"):
        register(Wrong, {})
    with pytest.raises(SourceError, match="kind already taken"):
        register(type("Other", (Mine,), {}), {"mine": Mine()})


GROUNDED = {"kind": "grounded", "path": "/data/mine/rows.jsonl", "image_root": "/data/mine/images",
            "card": {"name": "my-vqa", "license": "cc-by-4.0", "source_datasets": ["me/my-vqa"]}}
VISCOT = {"kind": "viscot", "path": "/data/viscot/*_cot_train.jsonl", "image_root": "/data/cot/{dataset}"}


def test_the_card_takes_provenance_only_from_the_runs_own_sources():
    # one's own data whose sub-dataset happens to be called flickr30k claims nothing of Flickr30k
    (own,) = provenance([GROUNDED], {"grounded": {"flickr30k", "gqa"}})
    assert own == Provenance("cc-by-4.0", "my-vqa: cc-by-4.0", ("me/my-vqa",))
    assert licenses([own]) == ("cc-by-4.0", {}, ["my-vqa: cc-by-4.0"])
    # VisCoT's rows from Flickr30k carry Flickr30k's terms, and cite it
    (viscot,) = provenance([VISCOT], {"viscot": {"cub", "flickr30k"}})
    license_id, extra, notes = licenses([viscot])
    assert license_id == "other" and extra == {"license_name": "mixed-source-terms"}
    assert any("non-commercial" in n for n in notes) and any("plummer2015" in c for c in viscot.citations)
    assert licenses(provenance([GROUNDED, VISCOT], {}))[0] == "other"
    unknown = provenance([{"kind": "gone", "path": "x"}], {})[0]  # a plugin not installed where the card is made
    assert unknown.license is None and unknown.datasets == ()


def test_the_card_shows_local_paths_by_name_only():
    assert shown_path("/data/mine/rows.jsonl") == "rows.jsonl"
    assert shown_path(["/a/b/", "gs://bucket/x/*.json"]) == "b, gs://bucket/x/*.json"
