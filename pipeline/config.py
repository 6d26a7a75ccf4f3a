"""Job configuration: YAML validated into typed sections; errors name the key and the fix."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Literal, Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Source(Section):
    kind: Literal["viscot"] = Field(description="Reader: viscot (metadata files `<ds>_cot_train.jsonl`).")
    path: str = Field(description="File or glob of the source's annotation files.")
    image_root: str = Field(description="Folder (or bucket prefix) the records' image paths are relative "
                                        "to; `{dataset}` stands for the record's sub-dataset.")
    limit: Optional[int] = Field(None, ge=1, description="Keep only the N records with the smallest ids.")


class Depth(Section):
    enabled: bool = Field(True, description="Run Depth-Anything-V2; off: no depth in the CoT or output.")
    model: str = Field("depth-anything/Depth-Anything-V2-Small-hf", description="Hub id or local path.")
    fallback: Literal["none", "tiny_random"] = Field(
        "none", description="tiny_random: if the model cannot be loaded, use a random tiny model "
                            "(demo only; logged loudly and recorded in stats.json).")
    batch_size: int = Field(8, ge=1, description="Images per forward pass.")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto = cuda when available.")


class Expand(Section):
    steps: int = Field(5, ge=1, description="Expansion steps from the GT to the full image.")
    distractor_prob: float = Field(0.5, ge=0, le=1, description="Chance of a distractor step.")
    distractor_scale: float = Field(1.2, gt=0, description="Distractor size relative to the expanded target.")
    distractor_jitter: float = Field(0.1, ge=0, lt=1, description="Relative jitter of distractor size and place.")
    seed: int = Field(0, description="With the record id, fixes every random choice.")


class Teacher(Section):
    kind: Literal["template"] = Field("template", description="template: offline deterministic baseline.")


class Validate(Section):
    min_hiou: float = Field(0.5, ge=0, le=1, description="Reject when the last area's HIoU vs GT is lower.")
    box_tol: float = Field(0.01, ge=0, description="Max per-coordinate gap between a CoT box and its chain box.")
    depth_tol: float = Field(0.1, ge=0, description="Max relative error of a stated depth vs the map.")


class Output(Section):
    dir: str = Field("out", description="Output folder or bucket prefix.")
    num_shards: int = Field(0, ge=0, description="Parquet shards; 0 lets the runner choose (no shuffle).")
    row_group_size: int = Field(256, ge=1, description="Rows per Arrow record batch written.")
    buffer_mb: int = Field(32, ge=1, description="Rows buffered per writer before a Parquet row group is "
                                                 "flushed: bounds the writer's memory.")


class Runner(Section):
    name: str = Field("local", description="local (in-process, offline) or a Beam runner: "
                                           "DataflowRunner, FlinkRunner, SparkRunner, ...")
    workers: int = Field(1, ge=1, description="local only: worker processes.")
    log_every_s: float = Field(10.0, ge=0, description="Progress log interval per worker (0 = off).")
    options: dict[str, object] = Field(default_factory=dict, description="Extra Beam pipeline options.")


class JobConfig(Section):
    sources: list[Source] = Field(min_length=1)
    depth: Depth = Depth()
    expand: Expand = Expand()
    teacher: Teacher = Teacher()
    validate_: Validate = Field(Validate(), alias="validate")
    output: Output = Output()
    runner: Runner = Runner()

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


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


def _resolve_paths(cfg: JobConfig, base: Path) -> None:
    """Local relative paths are relative to the config file; URLs are left alone."""
    def fix(p: str) -> str:
        return p if "://" in p or os.path.isabs(p) else str((base / p).resolve())

    for src in cfg.sources:
        src.path, src.image_root = fix(src.path), fix(src.image_root)


def load_config(path: str, overrides: list[str] = ()) -> JobConfig:
    """Read YAML, apply ``key=value`` overrides (dotted keys, YAML values), validate."""
    try:
        tree = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(f"{path}: cannot read config: {err}".replace("\n", " ")) from err
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ConfigError(f"--set {item!r}: expected key=value")
        try:
            _set(tree, key.strip(), yaml.safe_load(raw))
        except (IndexError, ValueError, TypeError, AttributeError) as err:
            raise ConfigError(f"--set {item!r}: no such key ({err})") from err
    try:
        cfg = JobConfig.model_validate(tree)
    except ValidationError as err:
        parts = []
        for e in err.errors():
            loc = ".".join(str(x) for x in e["loc"]).replace("validate_", "validate")
            got = "" if e["type"] == "missing" else f" (got {e['input']!r})"
            parts.append(f"{loc}: {e['msg']}{got}")
        raise ConfigError(f"{path}: " + "; ".join(parts)) from None
    _resolve_paths(cfg, Path(path).resolve().parent)
    return cfg


def echo(cfg: JobConfig) -> dict:
    """The config as plain data for stats.json."""
    return cfg.model_dump(mode="json", by_alias=True)
