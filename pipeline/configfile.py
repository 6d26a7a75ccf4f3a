"""Reading a config file: strict YAML, ``--set key=value`` overrides, and pydantic's errors as one
line naming each bad key (the job's config and the trainer's both read this way; it imports no stage,
so ``groundcot train`` and a config error start without Beam)."""
from __future__ import annotations

import difflib
import typing
from collections.abc import Callable
from pathlib import Path

import yaml
from pydantic import BaseModel, ValidationError

from groundcot.transforms.secrets import scrub_url


class ConfigError(ValueError):
    """A bad config, as one line naming the key."""


def _set(tree: dict, dotted: str, value) -> None:
    keys = dotted.split(".")
    node = tree
    for key in keys[:-1]:
        node = node[int(key)] if isinstance(node, list) else node.setdefault(key, {})
    last = keys[-1]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value


def _models_in(annotation) -> list[type[BaseModel]]:
    """The pydantic models inside a field's type (through Optional, list, unions, Annotated)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]


def known_keys(model: type[BaseModel], loc: list) -> list[str]:
    """The keys the section at ``loc`` (a pydantic error's path, union tags included) accepts."""
    current, mapping = [model], False
    for part in loc:
        if isinstance(part, int) or mapping:  # an item of a list, a name in a mapping (prompts)
            mapping = False
            continue
        tagged = [m for m in current if "kind" in m.model_fields and part in typing.get_args(
            m.model_fields["kind"].annotation)]
        fields = [field for m in current for name, field in m.model_fields.items() if part in (name, field.alias)]
        mapping = any(typing.get_origin(f.annotation) is dict for f in fields)
        current = tagged or [sub for field in fields for sub in _models_in(field.annotation)]
    return sorted({field.alias or name for m in current for name, field in m.model_fields.items()})


def describe(error: dict, model: type[BaseModel] | None = None, tags: set[str] = frozenset()) -> str:
    """One pydantic error as 'key: problem (got value)', keys as the user wrote them; an unknown
    key with the nearest known one ("did you mean").

    >>> from groundcot.pipeline.config import JobConfig
    >>> describe({"loc": ("depth", "batchsize"), "input": 4, "type": "extra_forbidden",
    ...           "msg": "Extra inputs are not permitted"}, JobConfig)
    'depth.batchsize: unknown key; did you mean batch_size? (got 4)'
    """
    loc, value = list(error["loc"]), error["input"]
    known = known_keys(model, loc[:-1]) if model is not None and error["type"] == "extra_forbidden" else []
    loc = [x for x in loc if x not in tags]  # discriminated unions put the kind (``tags``) into the path
    if error["type"].startswith("union_tag"):
        loc, value = loc + ["kind"], value.get("kind") if isinstance(value, dict) else value
    key = ".".join(str(x) for x in loc).replace("validate_", "validate")
    # a section's own check names its keys: not the whole section back (a missing or moved key has no value)
    quiet = error["type"] in ("missing", "moved") or (error["type"] == "value_error" and isinstance(value, dict))
    got = "" if quiet else f" (got {scrub_url(repr(value))})"
    message = error["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
    if known:
        close = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.6)
        message = f"unknown key; did you mean {close[0]}?" if close else f"unknown key (known: {', '.join(known)})"
    return f"{key}: {message}{got}" if key else f"{message}{got}"


def training_config(tree: dict) -> bool:
    """Whether a config tree is a ``groundcot train`` config (model, data, output_dir; no sources)."""
    return "sources" not in tree and {"data", "output_dir"} <= set(tree)


class _StrictLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key written twice in one mapping (YAML itself keeps the last)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} is written twice in one block (the second would silently win)",
                    key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def _yaml_error(path: str, err: yaml.YAMLError) -> str:
    """A YAML error as 'FILE:LINE:COLUMN: problem' (yaml names the text "<unicode string>" otherwise)."""
    mark = getattr(err, "problem_mark", None)
    where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else path
    problem = getattr(err, "problem", None) or str(err)
    context = getattr(err, "context", None)
    return f"{where}: {problem}" + (f" ({context})" if context and context not in problem else "")


def read_tree(path: str, overrides: list[str] = ()) -> dict:
    """Read YAML and apply ``key=value`` overrides (dotted keys, YAML values)."""
    try:
        tree = yaml.load(Path(path).read_text(), Loader=_StrictLoader) or {}
    except OSError as err:
        raise ConfigError(f"{path}: cannot read config: {err}".replace("\n", " ")) from err
    except yaml.YAMLError as err:
        raise ConfigError(_yaml_error(path, err).replace("\n", " ")) from None
    if not isinstance(tree, dict):
        raise ConfigError(f"{path}: a job config is a YAML mapping of sections (got {type(tree).__name__})")
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ConfigError(f"--set {item!r}: expected key=value")
        try:
            _set(tree, key.strip(), yaml.safe_load(raw))
        except (IndexError, ValueError, TypeError, AttributeError) as err:
            raise ConfigError(f"--set {item!r}: no such key ({err})") from err
    return tree


def validated(model: type[BaseModel], tree: dict, path: str, tags: Callable[[], set[str]] = set):
    """``model`` built from ``tree``, or one ConfigError line naming every bad key (``tags``: the kinds
    of its discriminated unions, left out of the keys named)."""
    try:
        return model.model_validate(tree)
    except ValidationError as err:
        tagged = tags()
        raise ConfigError(f"{path}: " + "; ".join(describe(e, model, tagged) for e in err.errors())) from None
