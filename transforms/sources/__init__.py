"""The sources: one module per kind, each a :class:`Source` that carries all that is known of it.

``SOURCES`` maps kind -> source: the built-ins below, then those other packages register under the
entry-point group ``groundcot.sources`` (an entry point names a Source subclass or instance)::

    [project.entry-points."groundcot.sources"]
    mine = "my_package.my_source:MySource"
"""
from __future__ import annotations

import typing
from importlib.metadata import entry_points

from groundcot.transforms.sources.base import Provenance, Source, SourceBase, SourceError
from groundcot.transforms.sources.flickr30k import Flickr30k
from groundcot.transforms.sources.gqa import Gqa
from groundcot.transforms.sources.grounded import Grounded
from groundcot.transforms.sources.tallyqa import TallyQA
from groundcot.transforms.sources.viscot import VisCoT, VisCoTLlava

__all__ = ["GROUP", "SOURCES", "Provenance", "Source", "SourceBase", "SourceError", "get_source", "register",
           "source_kinds"]
GROUP = "groundcot.sources"
BUILT_IN = (VisCoT, VisCoTLlava, TallyQA, Gqa, Flickr30k, Grounded)
SOURCES: dict[str, Source] = {}


def register(source, sources: dict[str, Source] | None = None) -> Source:
    """Add a Source subclass or instance to ``sources`` (default: SOURCES); returns the instance."""
    sources = SOURCES if sources is None else sources
    source = source() if isinstance(source, type) else source
    kind, config = getattr(source, "kind", None), getattr(source, "Config", None)
    if not isinstance(source, Source) or not isinstance(kind, str):
        raise SourceError(f"{source!r} is not a groundcot Source with a kind")
    if not (isinstance(config, type) and issubclass(config, SourceBase) and "kind" in config.model_fields
            and typing.get_args(config.model_fields["kind"].annotation) == (kind,)):
        raise SourceError(f"source {kind}: its Config must subclass SourceBase with kind: Literal[{kind!r}]")
    if kind in sources and type(sources[kind]) is not type(source):
        raise SourceError(f"source {kind}: kind already taken by {type(sources[kind]).__qualname__}")
    sources[kind] = source
    return source


def discover(found=None) -> dict[str, Source]:
    """The built-ins, then every source of the entry-point group (``found``: those entry points)."""
    sources: dict[str, Source] = {}
    for source in BUILT_IN:
        register(source, sources)
    for point in entry_points(group=GROUP) if found is None else found:
        try:
            register(point.load(), sources)
        except Exception as err:  # noqa: BLE001 - any failure of a plugin is one line naming it
            raise SourceError(f"entry point {point.name} = {point.value} ({GROUP}): "
                              f"{type(err).__name__}: {err}".replace("\n", " ")) from None
    return sources


def get_source(kind: str) -> Source:
    """The source of that kind; a SourceError naming the known kinds if none."""
    try:
        return SOURCES[kind]
    except KeyError:
        raise SourceError(f"no source of kind {kind!r} (known: {', '.join(source_kinds())})") from None


def source_kinds() -> list[str]:
    return list(SOURCES)


SOURCES.update(discover())
