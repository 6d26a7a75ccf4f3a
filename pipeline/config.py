"""Job configuration: YAML validated into typed sections; errors name the key and the fix."""
from __future__ import annotations

import os
import typing
from pathlib import Path
from typing import Annotated, Literal, Optional, Union

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from groundcot.pipeline import configfile
from groundcot.pipeline.configfile import ConfigError, read_tree, training_config
from groundcot.transforms.critic import CriticConfig
from groundcot.transforms.dedup import NearDuplicates
from groundcot.transforms.mix import Mix
from groundcot.transforms.sources import SOURCES, get_source
from groundcot.transforms.styles import get_style
from groundcot.transforms.teach import configs as teacher_configs
from groundcot.transforms.teach import is_api


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


def source_union():
    """The ``sources:`` entry: one config model per registered source kind, told apart by ``kind``."""
    return Annotated[Union[tuple(s.Config for s in SOURCES.values())], Field(discriminator="kind")]


Source = source_union()


def union_members(union) -> tuple:
    """The models of a discriminated union type."""
    return typing.get_args(typing.get_args(union)[0])


def kind_of(model) -> str:
    return typing.get_args(model.model_fields["kind"].annotation)[0]


class ModelStage(Section):
    """A stage that runs a model: where it comes from, how it batches, where it runs."""

    fallback: Literal["none", "tiny_random"] = Field(
        "none", description="tiny_random: if the model cannot be loaded, use a tiny random model of the same "
                            "architecture (demo only; logged loudly and recorded in stats.json).")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto = cuda when available.")
    preprocess: Literal["torch", "processor"] = Field(
        "torch", description="torch: resize and normalise on the model's device (equal to the processor's within "
                             "one 8-bit level); processor: transformers' processor on the CPU.")


class Depth(ModelStage):
    enabled: bool = Field(True, description="Run Depth-Anything-V2; off: no depth in the CoT or output.")
    model: str = Field("depth-anything/Depth-Anything-V2-Small-hf", description="Hub id or local path.")
    batch_size: int = Field(8, ge=1, description="Images per forward pass.")


class Sif(Section):
    depth_input: bool = Field(True, description="Give sif rows the depth map as a second input image, labelled "
                              "as in SIF-50K (`Original image: <image>\\nDepth image: <image>\\n` then the "
                              "question); needs depth.enabled.")
    depth_colormap: str = Field("Spectral_r", description="How the depth image is drawn: a matplotlib colour map "
                                "(Spectral_r is Depth-Anything-V2's default rendering) or grey.")

    @model_validator(mode="after")
    def _known_colormap(self):
        from groundcot.schemas.depth import check_colormap

        check_colormap(self.depth_colormap)
        return self


class Masks(ModelStage):
    enabled: bool = Field(False, description="Run SAM2 on each GT box (needed for aperture segment crops).")
    model: str = Field("facebook/sam2.1-hiera-tiny", description="Hub id or local path of a SAM2 checkpoint.")
    batch_size: int = Field(4, ge=1, description="Images per forward pass (all of an image's boxes go together).")


class Crops(Section):
    frame: Literal["original", "qwen2_5_vl"] = Field(
        "original", description="mgpo: the pixel frame of its region: the image's own size, or the size "
                                "Qwen2.5-VL resizes it to (multiples of 28 within min/max_pixels).")
    min_pixels: int = Field(3136, ge=784, description="qwen2_5_vl frame: least pixels.")
    max_pixels: int = Field(12845056, ge=784, description="qwen2_5_vl frame: most pixels.")
    min_side: int = Field(28, ge=1, description="Crops grow around their centre to at least this many pixels a side.")
    max_aspect: float = Field(4.0, ge=1, description="Crops are widened so that their aspect ratio stays below this.")


class Images(Section):
    min_side: int = Field(28, ge=1, description="Images with a side shorter than this are rejected "
                                                "(`image_too_small`).")
    max_aspect: float = Field(50.0, ge=1, description="Images whose long side is more than this many times the "
                                                      "short side are rejected (`image_extreme_aspect`).")
    max_pixels: int = Field(89_478_485, ge=1, description="Images with more pixels are rejected "
                            "(`image_too_large`), read from the file's header before decoding (decompression "
                            "bombs). Pillow itself refuses files over 178,956,970 pixels (also `image_too_large`).")


class Expand(Section):
    steps: int = Field(5, ge=1, description="Expansion steps from the GT to the full image.")
    distractor_prob: float = Field(0.5, ge=0, le=1, description="Chance of a distractor step.")
    distractor_scale: float = Field(1.2, gt=0, description="Distractor size relative to the expanded target.")
    distractor_jitter: float = Field(0.1, ge=0, lt=1, description="Relative jitter of distractor size and place.")
    seed: int = Field(0, description="With the record id, fixes every random choice.")


Teacher = Annotated[Union[teacher_configs()], Field(discriminator="kind")]


class PromptText(Section):
    """A replacement for one prompt: inline text, or a file (relative to the config file)."""

    file: Optional[str] = Field(None, description="A text file holding the prompt (relative to the config file).")
    text: Optional[str] = Field(None, description="The prompt itself (filled in from `file` when the config loads).")

    @model_validator(mode="before")
    @classmethod
    def _inline(cls, data):
        return {"text": data} if isinstance(data, str) else data

    @model_validator(mode="after")
    def _one_of(self):
        if (self.file is None) == (self.text is None):
            raise ValueError("give the prompt's text, or {file: path}")
        return self


class Validate(Section):
    min_hiou: float = Field(0.5, ge=0, le=1, description="Reject when the last area's HIoU vs GT is lower.")
    box_tol: float = Field(0.01, ge=0, description="Max per-coordinate gap between a CoT box and its chain box.")
    depth_tol: float = Field(0.1, ge=0, description="Max relative error of a stated depth vs the map.")


class Split(Section):
    test_fraction: float = Field(0.0, ge=0, lt=1, description="Share of images held out as the test split, "
                                 "chosen by a seeded hash of each image's decoded pixels: every row of one image, "
                                 "from any source, lands in the same split (0: the sources' splits as given).")
    seed: int = Field(0, description="Changes which images are held out.")
    keep_source: bool = Field(True, description="Keep a split a source gives other than train (val, test) and "
                              "re-assign only train rows; false: the image hash decides every row.")


class Quality(Section):
    near_duplicates: NearDuplicates = Field(NearDuplicates(), description="Near-identical images across "
                                            "sources (perceptual hash): the held-out split's identity, and "
                                            "duplicates rejected when enabled.")
    critic: CriticConfig = Field(CriticConfig(), description="A VLM grading every validated trace.")
    min_score: Optional[float] = Field(None, ge=0, le=1, description="Reject rows the critic scores below "
                                       "this as `low_quality`, its reason kept (needs critic.enabled).")

    @model_validator(mode="after")
    def _needs_critic(self):
        if self.min_score is not None and not self.critic.enabled:
            raise ValueError("min_score needs critic.enabled")
        return self


class Output(Section):
    dir: str = Field("out", description="Output folder or bucket prefix.")
    num_shards: int = Field(0, ge=0, description="Parquet shards; 0 lets the runner choose (no shuffle).")
    row_group_size: int = Field(256, ge=1, description="Rows per Arrow record batch written.")
    buffer_mb: int = Field(32, ge=1, description="Rows buffered per writer before a Parquet row group is "
                                                 "flushed: bounds the writer's memory.")


class Runner(Section):
    name: str = Field("local", description="local (in-process, offline), dask (a dask.distributed cluster: "
                                           "options.dask_client_address) or a Beam runner: DataflowRunner, "
                                           "FlinkRunner, SparkRunner, PortableRunner, ...")
    workers: int = Field(1, ge=1, description="local only: worker processes.")
    log_every_s: float = Field(10.0, ge=0, description="Progress line interval: the local runner's line when "
                               "not on a terminal (on one it is redrawn every second), and on cluster runners "
                               "the driver's line from Beam's counters and each worker's per-stage lines (0 = off).")
    options: dict[str, object] = Field(default_factory=dict, description="Extra Beam pipeline options, by "
                                       "flag name (dask_client_address, sdk_worker_parallelism) or Beam's "
                                       "attribute name.")
    shared_paths: list[str] = Field(default_factory=list, description="Local folders the workers see at the "
                                    "same path as the submitting machine (an NFS mount, a baked-in folder). On "
                                    "Dataflow, Flink, Spark and portable non-LOOPBACK runners every source, "
                                    "image root, cache and output path must be a bucket URL or lie under one.")


class JobConfig(Section):
    sources: list[Source] = Field(min_length=1)
    styles: list[Annotated[str, AfterValidator(lambda name: get_style(name).name)]] = Field(
        ["sif"], min_length=1, description="Trajectory styles to write: one row per record per style.")
    depth: Depth = Depth()
    masks: Masks = Masks()
    images: Images = Images()
    crops: Crops = Crops()
    expand: Expand = Expand()
    teacher: Teacher = Field(default_factory=lambda: teacher_configs()[0](), description="Who writes the "
                             "trajectories: kind template (offline) or openai (an API, in sub-sections connection, "
                             "limits, request, cost, batch, judge).")
    prompts: dict[str, PromptText] = Field(default_factory=dict, description="Prompts replaced for this job: "
                                           "name -> text, or {file: path}; `groundcot prompts list` names them.")
    sif: Sif = Sif()
    validate_: Validate = Field(Validate(), alias="validate")
    split: Split = Split()
    quality: Quality = Quality()
    mix: Mix = Field(Mix(), description="How many records per source, style and difficulty bucket, sampled "
                     "before the model stages (transforms/mix.py).")
    output: Output = Output()
    runner: Runner = Runner()
    cache: Optional[str] = Field(
        None, description="Cache folder or bucket prefix for depth maps, masks and teacher replies (null: "
                          "off), keyed by model and input bytes: a killed, repeated or extended run recomputes "
                          "nothing already done. Teacher replies go to its `teacher` folder unless "
                          "`teacher.cache` is set. A local path is relative to the working directory.")

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @model_validator(mode="after")
    def _mix_names(self):
        kinds = {src.kind for src in self.sources}
        for i, group in enumerate(self.mix.groups):
            if group.source is not None and group.source not in kinds:
                raise ValueError(f"mix.groups.{i}.source: {group.source!r} is not a source of this job "
                                 f"({', '.join(sorted(kinds))})")
            if group.style is not None and group.style not in self.styles:
                raise ValueError(f"mix.groups.{i}.style: {group.style!r} is not a style of this job "
                                 f"({', '.join(self.styles)})")
        return self

    @model_validator(mode="after")
    def _critic_endpoint(self):
        critic = self.quality.critic
        if critic.enabled and critic.connection is None and not is_api(self.teacher):
            raise ValueError(f"quality.critic.connection: the {self.teacher.kind} teacher calls no endpoint; "
                             "give the critic one")
        if critic.enabled and critic.connection is not None and is_api(self.teacher) and self.teacher.batch.enabled:
            raise ValueError("quality.critic.connection: in batch mode the critic's requests join the teacher's "
                             "batch shards, which go to the teacher's endpoint; leave it unset (or set only "
                             "quality.critic.model)")
        return self


def sync_sources() -> None:
    """Rebuild JobConfig's ``sources`` if a source was registered since (a plugin or a test)."""
    field = JobConfig.model_fields["sources"]
    if {kind_of(m) for m in union_members(typing.get_args(field.annotation)[0])} != set(SOURCES):
        field.annotation = list[source_union()]
        JobConfig.model_rebuild(force=True)


def union_tags() -> set[str]:
    return {*SOURCES, *(kind_of(m) for m in union_members(Teacher))}


def _resolve_paths(cfg: JobConfig, base: Path) -> None:
    """Local relative paths are relative to the config file; URLs are left alone."""
    def fix(p):
        if p is None or isinstance(p, list):
            return p if p is None else [fix(x) for x in p]
        return p if "://" in p or os.path.isabs(p) else str((base / p).resolve())

    for src in cfg.sources:
        for key in get_source(src.kind).path_keys:
            setattr(src, key, fix(getattr(src, key)))


def validated(model: type[BaseModel], tree: dict, path: str):
    """``model`` built from ``tree`` (``configfile.validated``); a job config is checked for being a
    training config first, and against the sources registered now."""
    if model is JobConfig:
        sync_sources()
        if training_config(tree):
            raise ConfigError(f"{path} is a `groundcot train` config (it has data and output_dir, no sources); "
                              f"run it with `groundcot train sft {path}` (or grpo)")
    return configfile.validated(model, tree, path, union_tags)


def load_config(path: str, overrides: list[str] = ()) -> JobConfig:
    """Read, override and validate a job config; local paths resolve against its folder."""
    cfg = validated(JobConfig, read_tree(path, overrides), path)
    _resolve_paths(cfg, Path(path).resolve().parent)
    _read_prompts(cfg, Path(path).resolve().parent)
    return cfg


def _read_prompts(cfg: JobConfig, base: Path) -> None:
    """Fill each replaced prompt's text from its file and check it against the default's placeholders."""
    from apache_beam.io.filesystems import FileSystems

    from groundcot import prompts

    for name, entry in cfg.prompts.items():
        if entry.file is not None:
            entry.file = str(base / entry.file) if "://" not in entry.file else entry.file
            try:
                with FileSystems.open(entry.file) as handle:
                    entry.text = handle.read().decode("utf-8").strip()
            except (OSError, UnicodeDecodeError) as err:
                raise ConfigError(f"prompts.{name}.file: cannot read {entry.file}: {err}".replace("\n", " ")) from None
        if problem := prompts.check(name, entry.text):
            raise ConfigError(problem)


def prompt_texts(cfg: JobConfig) -> dict[str, str]:
    """The job's replaced prompts, name -> text (what the workers install)."""
    return {name: entry.text for name, entry in cfg.prompts.items()}


def echo(cfg: JobConfig) -> dict:
    """The config as plain data for stats.json."""
    return cfg.model_dump(mode="json", by_alias=True)


# --- where a runner's workers read and write ------------------------------------------------

CLUSTER_RUNNERS = ("DataflowRunner", "TestDataflowRunner", "FlinkRunner", "SparkRunner")


def on_cluster(runner: Runner) -> bool:
    """Whether the runner's workers may not see the submitting machine's disk.

    Dataflow, Flink and Spark, Dask given a scheduler (address or file; without one it starts a
    cluster on this machine), and the portable runner unless its environment is LOOPBACK (its
    default is DOCKER). The in-process runners share the driver's disk.
    """
    name = runner.name.rsplit(".", 1)[-1]
    if name in CLUSTER_RUNNERS:
        return True
    if name == "dask":
        return any(runner.options.get(k) for k in ("dask_client_address", "address", "dask_scheduler_file",
                                                   "scheduler_file"))
    return name == "PortableRunner" and str(runner.options.get("environment_type", "DOCKER")).upper() != "LOOPBACK"


def worker_paths(cfg: JobConfig, out: str, out_key: str = "output.dir") -> list[tuple[str, str]]:
    """(key, path) for every place the workers read or write."""
    found = []
    for i, src in enumerate(cfg.sources):
        for key in get_source(src.kind).path_keys:
            value = getattr(src, key)
            found += [(f"sources.{i}.{key}", p) for p in ([value] if isinstance(value, str) else value or [])]
    teacher_cache = cfg.teacher.cache if is_api(cfg.teacher) else None  # other teachers call no one
    found += [("cache", cfg.cache), ("teacher.cache", teacher_cache), (out_key, out)]
    return [(key, path) for key, path in found if path]


def under(path: str, folders: list[str]) -> bool:
    """Whether local ``path`` lies in one of ``folders``."""
    path = os.path.abspath(path)
    return any(os.path.commonpath([path, os.path.abspath(f)]) == os.path.abspath(f) for f in folders)


def local_path(path: str | None) -> str | None:
    """A local path made absolute against this working folder (a worker's is another); URLs as they are."""
    return path if not path or "://" in path else os.path.abspath(path)


def absolute_paths(cfg: JobConfig, out: str) -> str:
    """Make the cache, teacher cache, shared paths and output folder absolute on the driver, before the job
    is built (a cluster worker would read a relative path against its own folder); returns ``out`` so."""
    cfg.cache = local_path(cfg.cache)
    if getattr(cfg.teacher, "cache", None):
        cfg.teacher.cache = local_path(cfg.teacher.cache)
    cfg.runner.shared_paths = [local_path(p) for p in cfg.runner.shared_paths]
    cfg.output.dir = local_path(cfg.output.dir)
    return local_path(out)


def check_worker_paths(cfg: JobConfig, out: str, out_key: str = "output.dir") -> None:
    """On a cluster runner, every path is a bucket URL or under ``runner.shared_paths``; no tiny fallback.

    A ConfigError names the first key that fails. Nothing is read: this runs before the runner is built.
    """
    if not on_cluster(cfg.runner):
        return
    name, shared = cfg.runner.name, cfg.runner.shared_paths
    for key, path in worker_paths(cfg, out, out_key):
        if "://" not in path and not under(path, shared):
            raise ConfigError(f"{key}: {path} is a local path, which {name}'s workers cannot read; use a bucket "
                              "URL (gs://, s3://, ...) or list a folder they share in runner.shared_paths")
    for stage in ("depth", "masks"):
        section = getattr(cfg, stage)
        if section.enabled and section.fallback == "tiny_random":
            raise ConfigError(f"{stage}.fallback: tiny_random cannot be used on {name}: the random-weights stand-in "
                              "is for the offline demo on this machine, never for a cluster job; set "
                              f"{stage}.fallback=none and give {stage}.model as a model the workers can load")
