"""What every reader shares: several file patterns, JSON-stream reading, filter marks."""
from __future__ import annotations

import os

import apache_beam as beam

from groundcot.schemas.record import Record, stable_id
from groundcot.transforms.jsonstream import JsonError, JsonItemsSource


def patterns(path: str | list[str]) -> list[str]:
    return [path] if isinstance(path, str) else list(path)


def read_each(pbegin, paths, label: str, make_read):
    """Apply ``make_read(pattern)`` to every pattern and flatten the results."""
    parts = [pbegin | f"{label}{i}" >> make_read(p) for i, p in enumerate(patterns(paths))]
    return parts[0] if len(parts) == 1 else parts | f"{label}Merge" >> beam.Flatten()


def read_json_items(pbegin, paths, label: str, container: str, required: tuple[str, ...]):
    """(file_name, offset, item) for every item of huge JSON documents, split by byte range."""
    return read_each(pbegin, paths, label,
                     lambda p: beam.io.Read(JsonItemsSource(p, container, required)))


def unreadable(source: str, file_name: str, offset: int, error: JsonError) -> Record:
    """A rejected record standing for input that could not be parsed."""
    name = os.path.basename(file_name)
    record = Record(id=stable_id(source, name, offset), source=source, source_id=f"{name}@{offset}")
    return record.reject("read", error.reason, f"{name}: {error.detail}")


def select_dataset(record: Record, include: list[str] | None, exclude: list[str]) -> Record:
    """Mark records of sub-datasets not selected as filtered (counted, not rejected)."""
    if record.rejection is None and (record.dataset in exclude or (include and record.dataset not in include)):
        record.reject("filter", "dataset_not_selected", record.dataset)
    return record
