"""Every check a run makes before it touches its output folder (``--check`` makes the same):
the runner and its options, the per-runner paths, secrets, sources, the teacher's endpoint, the
output folder and the models; and what can be known of the input before reading it."""
from __future__ import annotations

import argparse
import difflib
import heapq
import os
import tempfile

from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.runners.runner import create_runner

from groundcot.pipeline import beam_patch
from groundcot.pipeline.config import ConfigError, JobConfig, check_worker_paths, on_cluster
from groundcot.pipeline.offline import unlistable
from groundcot.pipeline.outputs import OutputFolder, OutputRefused
from groundcot.transforms.critic import client_config
from groundcot.transforms.models import ResolvedModel
from groundcot.transforms.secrets import SecretError
from groundcot.transforms.secrets import check as check_secret
from groundcot.transforms.sources import get_source
from groundcot.transforms.teach import is_api
from groundcot.transforms.teach.connection import EndpointError, check_endpoint


def pipeline_options(cfg: JobConfig) -> tuple[object, PipelineOptions]:
    """The runner and its options; ``local`` is Beam's in-process FnApiRunner (works offline), ``dask``
    groundcot's Dask runner (``pipeline/dask_runner.py``), ``PortableRunner`` Beam's with
    ``sdk_worker_parallelism`` honoured by the embedded job server (``pipeline/portable.py``).

    Called before anything else runs, so a runner that cannot be used here is one ConfigError line.
    """
    name = cfg.runner.name
    if name == "dask":
        try:
            from groundcot.pipeline.dask_runner import DaskRunner
        except ImportError as err:
            raise ConfigError(f"runner.name: dask needs dask and distributed (pip install 'groundcot[dask]'): "
                              f"{err}") from None
        return DaskRunner(), _options(cfg.runner.options)
    if name == "local":
        from apache_beam.runners.portability.fn_api_runner import FnApiRunner

        mode = "multi_processing" if cfg.runner.workers > 1 else "in_memory"
        return FnApiRunner(), _options(cfg.runner.options, direct_num_workers=cfg.runner.workers,
                                       direct_running_mode=mode)
    if name == "PortableRunner":
        from groundcot.pipeline.portable import PortableRunner

        return PortableRunner(), _options(cfg.runner.options, runner=name)
    known = StandardOptions.KNOWN_RUNNER_NAMES
    if name not in known and "." not in name:  # Beam itself would accept any case, then fail far from here
        close = runner_like(name, ["local", "dask", *known])
        hint = f"did you mean {close}? " if close else ""
        raise ConfigError(f"runner.name: unknown runner {name!r}; {hint}use local, dask, one of {', '.join(known)}, "
                          "or a runner's full dotted class name")
    if name.rsplit(".", 1)[-1] == "DaskRunner":
        raise ConfigError(f"runner.name: {name} cannot run groundcot's graph (it drops tagged outputs, side "
                          "inputs and counters); use runner.name: dask")
    try:
        runner = create_runner(name)
    except (ImportError, ValueError, AttributeError) as err:
        raise ConfigError(f"runner.name: {name} cannot be used here: {err}".replace("\n", " ")) from None
    return runner, _options(cfg.runner.options, runner=name)


def runner_like(name: str, names: list[str]) -> str | None:
    """The runner ``name`` most likely means, ignoring case and a "Runner" suffix.

    >>> runner_like("spark", ["local", "SparkRunner"]), runner_like("Localrunner", ["local", "SparkRunner"])
    ('SparkRunner', 'local')
    """
    def bare(text: str) -> str:
        return text.lower().removesuffix("runner") or text.lower()

    by_bare = {bare(n): n for n in names}
    close = difflib.get_close_matches(bare(name), list(by_bare), n=1, cutoff=0.75)
    return by_bare[close[0]] if close else None


def beam_flags() -> tuple[dict[str, str], set[str]]:
    """Every registered option's flag name (``dask_client_address``) -> its attribute (``address``), and
    every attribute (those only a ``--no_x`` flag sets, such as ``pipeline_type_check``, included)."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    for cls in {str(c): c for c in PipelineOptions.__subclasses__()}.values():
        try:
            cls._add_argparse_args(parser)
        except argparse.ArgumentError:  # one class registered twice
            continue
    flags = {flag[2:]: action.dest for action in parser._actions for flag in action.option_strings
             if flag.startswith("--") and not isinstance(action, argparse._StoreFalseAction)}  # --no_x: not x
    return flags, {action.dest for action in parser._actions}


def _options(given: dict, **values) -> PipelineOptions:
    """Beam's options from ``runner.options`` (by flag name, ``dask_client_address``, or attribute name,
    ``address``) and ``values``; a key no registered option class knows is a ConfigError, not dropped."""
    flags, known = beam_flags()
    unknown = sorted(k for k in given if k not in known and k not in flags)
    if unknown:
        raise ConfigError(f"runner.options: Beam knows no option {', '.join(unknown)} (see the runner's "
                          "pipeline options for the names)")
    # Beam's construction-time type inference: half the time of building the graph, and groundcot's
    # stages carry no type hints to check (every element is pickled); runner.options can turn it on
    values.setdefault("pipeline_type_check", False)
    values.update({k if k in known else flags[k]: v for k, v in given.items()})
    return PipelineOptions(flags=[], **values)


def check_secrets(cfg: JobConfig) -> tuple[str, bool] | None:
    """A required secret is set, or a secret reference is sound and, where this machine can, read
    (errors name the variable or reference, never a value). (plan line, readable here) or None."""
    if not is_api(cfg.teacher):
        return None
    conn = cfg.teacher.connection
    if ref := conn.api_key_secret:
        try:
            line = check_secret(ref, here=not on_cluster(cfg.runner))
        except SecretError as err:
            raise RuntimeError(f"teacher.connection.api_key_secret: {err}") from None
        return line, "read here" in line
    env = conn.api_key_env
    if env and not os.environ.get(env):
        raise RuntimeError(f"teacher.connection.api_key_env: the environment variable {env} is not set")
    return (f"environment variable {env} (set here; each worker reads its own)", True) if env else None


def check_sources(cfg: JobConfig, offline: bool = False) -> None:
    """Every file pattern a source names (its ``paths``) matches at least one file (``offline``: bucket
    patterns this machine has no credentials for are left to the workers; see pipeline/offline.py)."""
    for i, src in enumerate(cfg.sources):
        for key, globs in get_source(src.kind).paths(src).items():
            for pattern in globs:
                if offline and unlistable(pattern):
                    continue
                try:
                    found = FileSystems.match([pattern])[0].metadata_list
                except (OSError, ValueError) as err:
                    raise ConfigError(f"sources.{i}.{key}: cannot list {pattern}: {err}") from None
                if not found:
                    raise ConfigError(f"sources.{i}.{key}: {pattern} matches no file")


IMAGE_SAMPLE = 8  # records per source whose images --check looks for
SAMPLE_MAX_BYTES = 256 << 20  # sources with more annotation bytes than this are not sampled
_sampled: list = []  # the in-process pipeline of sample_records keeps its records here


def _smallest(n: int) -> list:
    """Keep only the ``n`` records with the smallest ids in ``_sampled``; them."""
    _sampled[:] = heapq.nsmallest(n, _sampled, key=lambda r: r.id)
    return _sampled


def _keep(record, n: int) -> None:
    """Keep the ``n`` smallest ids seen so far (trimmed in steps: the sources are small enough to be sampled)."""
    _sampled.append(record)
    if len(_sampled) >= 4 * n:
        _smallest(n)


def sample_records(src, n: int = IMAGE_SAMPLE) -> list:
    """The ``n`` records with the smallest ids that the source gives (those ``limit: n`` would read),
    read by the source's own reader in an in-process pipeline (one fused stage: no combine)."""
    import apache_beam as beam
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner

    _sampled.clear()
    with beam.Pipeline(runner=FnApiRunner()) as p:
        _ = (p | "Read" >> get_source(src.kind).read(src)
             | "Keep" >> beam.Map(lambda r: None if r.filtered else _keep(r, n)))
    found = list(_smallest(n))
    _sampled.clear()
    return found


def check_images(cfg: JobConfig, offline: bool = False) -> None:
    """Some of each local source's first records have their image under ``image_root``: a root that
    matches no image fails here, not as a run of ``missing_image`` rejections."""
    from groundcot.transforms.images import dataset_root, resolve

    for i, src in enumerate(cfg.sources):
        globs = [g for gs in get_source(src.kind).paths(src).values() for g in gs]
        if not src.image_root or (offline and (unlistable(src.image_root) or any(map(unlistable, globs)))):
            continue
        files = [m for g in globs for m in FileSystems.match([g])[0].metadata_list]
        if sum(m.size_in_bytes for m in files) > SAMPLE_MAX_BYTES:
            continue
        wanted = []
        for record in sample_records(src):
            if record.image is None and record.image_path and not record.rejection:
                root = dataset_root(src.image_root, record.dataset)
                wanted.append(resolve(root, record.image_path) if root is not None else None)
        if wanted and not any(path and FileSystems.exists(path) for path in wanted):
            example = next((path for path in wanted if path), "")
            raise ConfigError(f"sources.{i}.image_root: none of the {len(wanted)} first records' images is under "
                              f"{src.image_root} (e.g. {example} does not exist)")


def check_batch_cache(cfg: JobConfig) -> None:
    """Batch mode needs a response cache: ``teacher collect`` puts the replies there for the next run."""
    if is_api(cfg.teacher) and cfg.teacher.batch.enabled and not (cfg.teacher.cache or cfg.cache):
        raise ConfigError("teacher.batch.enabled: batch mode needs a response cache (set cache or teacher.cache): "
                          "`groundcot teacher collect` imports the replies into it and the next generate reads them "
                          "from there")


def preflight(cfg: JobConfig, offline: bool = False) -> None:
    """Everything that can be checked before the job touches its output folder.

    The runner and config were checked when the options were built; here: secrets, sources and
    the teacher's endpoint. A failure here leaves the output folder as it was.
    """
    check_batch_cache(cfg)
    key = check_secrets(cfg)
    check_sources(cfg, offline)
    check_images(cfg, offline)
    # after the secret it needs is set; a key only the workers can read: their first calls check it
    if is_api(cfg.teacher) and not cfg.teacher.batch.enabled and (key is None or key[1]):
        check_endpoint(cfg.teacher.connection)
    check_critic(cfg)


def check_critic(cfg: JobConfig) -> None:
    """A critic with its own endpoint or model: its key is set and the endpoint serves the model (the
    teacher's endpoint and model were checked above; batch mode calls no one)."""
    critic = cfg.quality.critic
    if not critic.enabled or (critic.connection is None and critic.model is None):
        return
    api = client_config(critic, cfg.teacher, cfg.cache)
    conn, key = api.connection, "quality.critic.connection"
    if api.batch.enabled or conn.api_key_secret:  # a secret reference: the workers' first calls check it
        return
    if conn.api_key_env and not os.environ.get(conn.api_key_env):
        raise RuntimeError(f"{key}.api_key_env: the environment variable {conn.api_key_env} is not set")
    try:
        check_endpoint(conn, key_name=key)
    except EndpointError as err:
        raise EndpointError(str(err).replace("teacher endpoint", "critic endpoint", 1)) from None


def check_output(out: str, out_key: str, overwrite: bool) -> None:
    """The output folder can be listed from here, would not be refused and (on local disk) can be
    written: a file is created and removed in it, or in the folder it would be made in."""
    try:
        OutputFolder(out, "check", overwrite).refuse_foreign()
    except (OSError, ValueError) as err:  # a filesystem this machine lacks, no access
        raise ConfigError(f"{out_key}: cannot list {out}: {err}".replace("\n", " ")) from None
    if "://" in out:
        return
    there = os.path.abspath(out)
    while not os.path.exists(there):
        there = os.path.dirname(there)
    try:
        if not os.path.isdir(there):
            raise NotADirectoryError(f"{there} is a file")
        with tempfile.TemporaryFile(dir=there):
            pass
    except OSError as err:
        raise ConfigError(f"{out_key}: cannot write in {there} ({err.strerror or err})") from None


class CheckFailed(RuntimeError):
    """A check before the run failed (a secret, the endpoint, a model): nothing ran (exit 2, as --check)."""


def prepare(cfg: JobConfig, out: str, out_key: str, overwrite: bool,
            offline: bool = False) -> tuple[object, PipelineOptions, dict]:
    """Every check a run makes before it touches ``out`` (``--check`` makes the same, ``offline``:
    skipping bucket paths it has no credentials for), then the runner, its options and the models
    the workers will load. Raises ConfigError, OutputRefused or CheckFailed."""
    beam_patch.apply()  # this process builds (and on local runners runs) the job's pipelines
    check_worker_paths(cfg, out, out_key)  # before the runner is built: needs none of its extras
    runner, options = pipeline_options(cfg)
    try:
        preflight(cfg, offline)
        if not (offline and unlistable(out)):
            check_output(out, out_key, overwrite)
        local = not on_cluster(cfg.runner)  # workers share this machine's disk and network
        models: dict[str, ResolvedModel] = {}
        if cfg.depth.enabled:
            from groundcot.transforms.depth import resolve_depth_model  # with torch: only when used

            models["depth"] = resolve_depth_model(cfg.depth.model, cfg.depth.fallback, local)
        if cfg.masks.enabled:
            from groundcot.transforms.masks import resolve_sam2_model

            models["masks"] = resolve_sam2_model(cfg.masks.model, cfg.masks.fallback, local)
    except OutputRefused:
        raise
    except RuntimeError as err:  # an unset key, an unreachable endpoint, a model it does not serve or lacks
        raise CheckFailed(str(err)) from None
    return runner, options, models


def count_records(cfg: JobConfig) -> int | None:
    """Records the sources give, when each can count its own without reading it (local files), capped by limit."""
    total = 0
    for src in cfg.sources:
        n = get_source(src.kind).count(src)
        if n is None:
            return None
        total += min(n, src.limit) if src.limit else n
    return total
