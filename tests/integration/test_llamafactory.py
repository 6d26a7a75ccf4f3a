"""The llamafactory export of the demo run read by LLaMA-Factory's own code (quoted at one commit in
tests/fixtures/llamafactory/, run by tests/support/llamafactory.py): its dataset_info.json parsing, its
local-file loading and sharegpt conversion, images resolved in media_dir (dataset_dir by default), and the
checks made before tokenising (an odd prompt and one response; as many ``<image>`` as images; each image opens)."""
import json
import shutil

import pytest

from groundcot.pipeline.cli import main
from groundcot.schemas.runs import read_run

from support.llamafactory import check_export


@pytest.fixture(scope="module")
def exported(demo_run_and_log, tmp_path_factory):
    out = tmp_path_factory.mktemp("llamafactory")
    assert main(["export", str(demo_run_and_log[0]), "--format", "llamafactory", "-o", str(out)]) == 0
    return out


def names(dataset_dir) -> list[str]:
    return list(json.loads((dataset_dir / "dataset_info.json").read_text()))


def test_every_style_of_the_demo_export_loads_in_llamafactory(demo_run, exported, tmp_path):
    data = check_export(exported, names(exported), tmp_path / "cache")
    run = read_run(str(demo_run), decode_images=False)
    assert len(data) == len(set(run["style"])) == 4
    assert sum(len(rows) for rows in data.values()) == len(run)
    per_row = [1 + bool(r["depth_image"]) + len(r["crops"]) for r in run]
    assert sum(len(r["_images"]) for rows in data.values() for r in rows) == sum(per_row)
    assert max(per_row) > 1  # depth images and crops are counted, not only the first image


def first_file(dataset_dir) -> tuple[str, list]:
    """The first style's file and its rows."""
    info = json.loads((dataset_dir / "dataset_info.json").read_text())
    file_name = next(iter(info.values()))["file_name"]
    return file_name, json.loads((dataset_dir / file_name).read_text())


def remove_an_image(dataset_dir):
    _, items = first_file(dataset_dir)
    (dataset_dir / items[0]["images"][-1]).unlink()


def drop_an_image_token(dataset_dir):
    file_name, items = first_file(dataset_dir)
    first = items[0]["messages"][0]
    first["content"] = first["content"].replace("<image>", "", 1)
    (dataset_dir / file_name).write_text(json.dumps(items))


def drop_the_answer(dataset_dir):
    file_name, items = first_file(dataset_dir)
    items[0]["messages"].pop()
    (dataset_dir / file_name).write_text(json.dumps(items))


@pytest.mark.parametrize(("breakage", "reason"), [
    (remove_an_image, "does not exist in `media_dir`"),
    (drop_an_image_token, "number of images does not match the number of <image> tokens"),
    (drop_the_answer, "Invalid message count"),
])
def test_a_broken_export_fails_llamafactorys_checks(exported, tmp_path, breakage, reason):
    broken = tmp_path / "export"
    shutil.copytree(exported, broken)
    breakage(broken)
    with pytest.raises(ValueError, match=reason):
        check_export(broken, names(broken), tmp_path / "cache")
