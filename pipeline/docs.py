"""Markdown reference tables generated from the code; README.md embeds them verbatim.

    python -m pipeline.docs            # print the tables
    python -m pipeline.docs --write    # refresh them in README.md, between <!-- name --> markers
"""
from __future__ import annotations

import json
import typing

from pydantic import BaseModel

from pipeline.config import JobConfig, Source
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


def _rows(prefix: str, model: type[BaseModel]) -> list[str]:
    rows = []
    for name, field in model.model_fields.items():
        key = f"{prefix}.{field.alias or name}"
        inner = field.annotation
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            rows += _rows(key, inner)
        else:
            rows.append(f"| `{key}` | {_default(field)} | {field.description} |")
    return rows


def config_table() -> str:
    rows = ["| key | default | meaning |", "|---|---|---|"]
    for member in typing.get_args(typing.get_args(Source)[0]):  # one block per source kind
        kind = typing.get_args(member.model_fields["kind"].annotation)[0]
        rows += _rows(f"sources[kind={kind}]", member)
    for name, field in JobConfig.model_fields.items():
        if name != "sources":
            rows += _rows(field.alias or name, field.annotation)
    return "\n".join(rows)


def tables() -> dict[str, str]:
    return {"config": config_table(), "columns": columns_table(), "rejected": columns_table(REJECTED_COLUMNS)}


def refresh(text: str) -> str:
    """``text`` with every ``<!-- name -->...<!-- /name -->`` block replaced by its table."""
    for name, table in tables().items():
        start, end = f"<!-- {name} -->", f"<!-- /{name} -->"
        head, _, rest = text.partition(start)
        _, _, tail = rest.partition(end)
        text = f"{head}{start}\n{table}\n{end}{tail}"
    return text


if __name__ == "__main__":
    import sys
    from pathlib import Path

    if "--write" in sys.argv:
        readme = Path(__file__).resolve().parent.parent / "README.md"
        readme.write_text(refresh(readme.read_text()))
    else:
        print(*tables().values(), sep="\n\n")
