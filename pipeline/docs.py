"""Markdown reference tables generated from the code; README.md embeds them verbatim.

    python -m pipeline.docs      # prints the config and column tables
"""
from __future__ import annotations

import json

from pydantic import BaseModel

from pipeline.config import JobConfig
from schemas.columns import REJECTED_COLUMNS, TRAIN_COLUMNS


def _type(spec) -> str:
    if isinstance(spec, list):
        return f"list[{_type(spec[0])}]"
    if isinstance(spec, dict):
        return "{" + ", ".join(f"{k}: {_type(v)}" for k, v in spec.items()) + "}"
    return spec


def columns_table(columns=TRAIN_COLUMNS) -> str:
    rows = ["| column | type | meaning |", "|---|---|---|"]
    rows += [f"| `{name}` | `{_type(spec)}` | {doc} |" for name, (spec, doc) in columns.items()]
    return "\n".join(rows)


def _default(field) -> str:
    if field.is_required():
        return "required"
    value = field.get_default(call_default_factory=True)
    return "" if isinstance(value, BaseModel) else f"`{json.dumps(value)}`"


def config_table() -> str:
    rows = ["| key | default | meaning |", "|---|---|---|"]
    for name, field in JobConfig.model_fields.items():
        key = field.alias or name
        section = field.annotation
        inner = getattr(section, "__args__", (section,))[0] if key == "sources" else section
        prefix = "sources[]" if key == "sources" else key
        for sub, subfield in inner.model_fields.items():
            rows.append(f"| `{prefix}.{sub}` | {_default(subfield)} | {subfield.description} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(config_table(), columns_table(), columns_table(REJECTED_COLUMNS), sep="\n\n")
