"""LLaMA-Factory's own dataset loading (quoted in tests/fixtures/llamafactory/) run over a folder such as
``groundcot export --format llamafactory`` writes: ``dataset_info.json`` through ``get_dataset_list``, each
file loaded as ``_load_single_dataset`` loads a local file, each row aligned by its converter, then the
checks its SFT processor and multimodal plugin make before tokenising.

LLaMA-Factory itself cannot be imported here (its mm_plugin needs torchaudio, and it pins
transformers<=5.6 and datasets<=4.0), so the quoted modules are loaded as the package ``quoted_llamafactory``.
The parts quoted are the same in llamafactory 0.9.5 on PyPI.
"""
from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import sys

import datasets

from support import FIXTURES

PACKAGE = FIXTURES / "llamafactory" / "llamafactory"
NAME = "quoted_llamafactory"
# ProcessorArguments' defaults (src/llamafactory/hparams/model_args.py)
IMAGE_PIXELS = {"image_max_pixels": 768 * 768, "image_min_pixels": 32 * 32}


def quoted(module: str):
    """The quoted ``llamafactory.<module>`` (e.g. ``data.parser``)."""
    if NAME not in sys.modules:
        spec = importlib.util.spec_from_file_location(NAME, PACKAGE / "__init__.py",
                                                      submodule_search_locations=[str(PACKAGE)])
        package = importlib.util.module_from_spec(spec)
        sys.modules[NAME] = package
        spec.loader.exec_module(package)
    return importlib.import_module(f"{NAME}.{module}")


class _Warnings(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def aligned(data_args, cache_dir) -> dict[str, datasets.Dataset]:
    """Each dataset of ``data_args.dataset`` as LLaMA-Factory's loader reads and aligns it. Raises
    ValueError on a warning it logs (a missing image, a bad role order, an odd turn count), naming the dataset."""
    parser, converter, logs = quoted("data.parser"), quoted("data.converter"), quoted("extras.logging")
    constants = quoted("extras.constants")
    out = {}
    for name, attr in zip(data_args.dataset, parser.get_dataset_list(data_args.dataset, data_args.dataset_dir)):
        # loader._load_single_dataset, the branch for a local file (load_from "file")
        if attr.load_from != "file":
            raise ValueError(f"{name}: loads from {attr.load_from}, not from a file in dataset_dir")
        local_path = os.path.join(data_args.dataset_dir, attr.dataset_name)
        if not os.path.isfile(local_path):
            raise ValueError(f"File {local_path} not found.")
        data_path = constants.FILEEXT2TYPE.get(os.path.splitext(local_path)[-1][1:], None)
        if data_path is None:
            raise ValueError(f"{name}: {attr.dataset_name}: not a type LLaMA-Factory loads")
        dataset = datasets.load_dataset(data_path, data_files=[local_path], split=attr.split, cache_dir=str(cache_dir))
        # converter.align_dataset
        warned = _Warnings()
        logs.add_handler(warned)
        try:
            convert = converter.get_dataset_converter(attr.formatting, attr, data_args)
            out[name] = dataset.map(convert, batched=False, remove_columns=list(next(iter(dataset)).keys()))
        finally:
            logs.remove_handler(warned)
        if warned.messages:
            raise ValueError(f"{name}: LLaMA-Factory warned: {warned.messages[0]}")
    return out


def check_row(row: dict, media_dir: str) -> None:
    """What LLaMA-Factory checks of an aligned row before it tokenises it for SFT; raises ValueError."""
    # processor/supervised.py drops a row that fails this ("Dropped invalid example")
    if len(row["_prompt"]) % 2 != 1 or len(row["_response"]) != 1:
        raise ValueError(f"dropped as invalid: {len(row['_prompt'])} prompt turns, {len(row['_response'])} responses")
    images = row["_images"] or []
    outside = [p for p in images if not (p.startswith(os.path.join(media_dir, "")) and os.path.isfile(p))]
    if outside:
        raise ValueError(f"image not found in media_dir {media_dir}: {outside[0]}")
    plugin = quoted("data.mm_plugin").MMPluginMixin()
    plugin._validate_messages(row["_prompt"] + row["_response"], images, [], [])
    plugin._regularize_images(images, **IMAGE_PIXELS)


def check_export(dataset_dir, names: list[str], cache_dir) -> dict[str, datasets.Dataset]:
    """The datasets named, read from ``dataset_dir`` as a training config's ``dataset: a,b`` and
    ``dataset_dir`` (``media_dir`` left to default) make LLaMA-Factory read them, and every row checked;
    raises ValueError naming the dataset and row that LLaMA-Factory would refuse or drop."""
    data_args = quoted("hparams.data_args").DataArguments(dataset=",".join(names), dataset_dir=str(dataset_dir))
    data = aligned(data_args, cache_dir)
    for name, rows in data.items():
        for i, row in enumerate(rows):
            try:
                check_row(row, data_args.media_dir)
            except (ValueError, OSError) as err:
                raise ValueError(f"{name} row {i}: {err}") from err
    return data
