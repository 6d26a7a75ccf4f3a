"""Markdown reference tables generated from the code; README.md embeds them verbatim.

    python -m groundcot.pipeline.docs            # print the tables
    python -m groundcot.pipeline.docs --write    # refresh them in README.md, between <!-- name --> markers
"""
from __future__ import annotations

import ast
import json
from pathlib import Path

from pydantic import BaseModel

from groundcot.pipeline.config import JobConfig, Source, Teacher, kind_of, union_members
from groundcot.schemas.columns import COMMON, REJECTED_COLUMNS, TRAIN_COLUMNS
from groundcot.transforms.styles import STYLES


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


def configs_table() -> str:
    """Which columns each style's config (``data/<style>/``) has."""
    rows = ["| config | columns |", "|---|---|", f"| every style | {', '.join(f'`{c}`' for c in COMMON)} |"]
    rows += [f"| `{name}` | + {', '.join(f'`{c}`' for c in TRAIN_COLUMNS if c in style.columns)} |"
             for name, style in STYLES.items()]
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
    unions = {"sources": Source, "teacher": Teacher}
    for name, field in JobConfig.model_fields.items():
        key = field.alias or name
        if key in unions:  # one block per kind
            for member in union_members(unions[key]):
                rows += _rows(f"{key}[kind={kind_of(member)}]", member)
        elif isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            rows += _rows(key, field.annotation)
        else:
            rows.append(f"| `{key}` | {_default(field)} | {field.description} |")
    return "\n".join(rows)


def train_table() -> str:
    """Keys of `groundcot train` configs (GRPO's defaults where they differ from SFT's are in jobs/)."""
    from groundcot.trainer.config import GrpoJob

    rows = ["| key | default | meaning |", "|---|---|---|"]
    for name, field in GrpoJob.model_fields.items():
        inner = field.annotation
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            rows += _rows(name, inner)
        else:
            rows.append(f"| `{name}` | {_default(field)} | {field.description} |")
    return "\n".join(rows)


def _summary(path: Path) -> str:
    """The first sentence of a module's docstring, on one line."""
    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    return " ".join(doc.split("\n\n")[0].split()).replace("``", "`").replace(":class:", "").replace("|", "\\|")


def layout_table() -> str:
    """One row per package of the installed layout: its role (its docstring) and its modules."""
    root = Path(__file__).resolve().parent.parent
    rows = ["| package | role | modules |", "|---|---|---|"]
    layers = ("schemas", "prompts", "transforms", "runs", "pipeline", "trainer", "jobs")  # imports flow this way

    def order(init: Path):
        parts = init.parent.relative_to(root).parts
        return (layers.index(parts[0]) if parts and parts[0] in layers else len(layers), parts)

    for init in sorted(root.rglob("__init__.py"), key=order):
        folder = init.parent.relative_to(root)
        if not folder.parts or folder.parts[0] in ("tests", "bench", "build", "dist") or any(
                part.startswith(".") for part in folder.parts):
            continue
        modules = sorted(p.stem for p in init.parent.glob("*.py") if p.name != "__init__.py")
        texts = len(list(init.parent.glob("*.txt")))
        names = ", ".join([f"`{m}`" for m in modules] + ([f"{texts} `.txt` templates"] if texts else [])) or "data files"
        rows.append(f"| `{'/'.join(folder.parts)}/` | {_summary(init)} | {names} |")
    return "\n".join(rows)


def tables() -> dict[str, str]:
    return {"config": config_table(), "columns": columns_table(), "rejected": columns_table(REJECTED_COLUMNS),
            "configs": configs_table(),
            "train": train_table(), "layout": layout_table()}


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
