"""Teachers write each record's trajectory in its style.

One protocol, one module per backend, each with its config section: ``template``
(offline, deterministic), ``api`` (online: a VLM behind an OpenAI-compatible API; ``client``
is its HTTP side) and ``batch`` (the API teacher's requests written as Batch API shards, and
the submit/status/collect jobs). ``connection`` builds every OpenAI client. ``dofn.Teach``
runs any teacher in Beam, many records in flight per worker.
"""
from __future__ import annotations

from functools import lru_cache
from importlib.metadata import entry_points

from groundcot.transforms.teach.backend import STAGE, Backend, Teacher
from groundcot.transforms.teach.template import TemplateTeacher, write_template

GROUP = "groundcot.teachers"


@lru_cache(maxsize=None)
def backends() -> dict[str, Backend]:
    """kind -> backend: the built-ins, then the entry points (a broken one is one error naming it)."""
    from groundcot.transforms.teach import api, template

    found = {b.kind: b for b in (template.BACKEND, api.BACKEND)}
    for point in entry_points(group=GROUP):
        try:
            backend = point.load()
            if not isinstance(backend, Backend) or backend.kind in found:
                raise TypeError("not a groundcot teach.Backend with a new kind")
        except Exception as err:  # noqa: BLE001 - any failure of a plugin is one line naming it
            raise ValueError(f"entry point {point.name} = {point.value} ({GROUP}): "
                             f"{type(err).__name__}: {err}".replace("\n", " ")) from None
        found[backend.kind] = backend
    return found


def make_teacher(cfg, validate_params: dict, run_id: str = "run") -> Teacher:
    """The teacher a ``teacher`` config section names (an API teacher with ``batch.enabled``
    writes its requests down instead of sending them)."""
    return backends()[cfg.kind].make(cfg, validate_params, run_id)


def is_api(cfg) -> bool:
    """Whether a ``teacher`` section is the API teacher's (an endpoint, limits, cost, batch mode),
    which the pre-run checks, the plan and stats.json describe; other backends call no one groundcot knows."""
    from groundcot.transforms.teach.api import OpenAIConfig

    return isinstance(cfg, OpenAIConfig)


def configs() -> tuple:
    """Every backend's config section, for the job config's ``teacher`` union."""
    return tuple(b.config for b in backends().values())


__all__ = ["GROUP", "STAGE", "Backend", "Teacher", "backends", "is_api", "TemplateTeacher", "configs", "make_teacher", "write_template"]
