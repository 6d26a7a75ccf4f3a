"""Trajectory styles: one module per style, and the registry every stage looks them up in.

Each style (see ``base.Style``) is everything it is in one class: its frame, actions and crops,
the template teacher's turns, a VLM teacher's request and how its reply is read, the grammar and
checks of a written trajectory, the training conversation, its own columns, card text, citation
and reward parts. ``STYLES`` holds the built-ins and every style another installed package
registers in the entry-point group ``groundcot.styles`` (an entry point names a ``Style``
subclass or instance), e.g. in that package's ``pyproject.toml``::

    [project.entry-points."groundcot.styles"]
    points = "my_package.points:Points"
"""
from __future__ import annotations

import copy
import io
from importlib.metadata import entry_points

from PIL import Image

from groundcot import prompts
from groundcot.schemas.columns import check_own, style_columns
from groundcot.schemas.record import Record
from groundcot.transforms.styles.aperture import Aperture
from groundcot.transforms.styles.base import Checks, CropSettings, Style
from groundcot.transforms.styles.mgpo import Mgpo
from groundcot.transforms.styles.sif import Sif
from groundcot.transforms.styles.textual import Textual

GROUP = "groundcot.styles"
BUILT_IN = (Sif, Mgpo, Aperture, Textual)
STAGE = "styles"

__all__ = ["STYLES", "Checks", "CropSettings", "Style", "get_style", "style_names", "in_order", "register", "columns_of",
           "run_columns", "style_of", "fan_out", "plan"]


class StyleError(ValueError):
    """A style that cannot be registered or found; the message names it."""


def register(style: Style | type[Style], styles: dict[str, Style] | None = None, where: str = "") -> Style:
    """Add a style (a ``Style`` subclass or instance) to ``styles`` (default: ``STYLES``); returns the instance."""
    styles = STYLES if styles is None else styles
    where = where or getattr(style, "__name__", type(style).__name__)
    style = style() if isinstance(style, type) else style
    if not isinstance(style, Style) or not style.name:
        raise StyleError(f"style {where}: not a groundcot Style with a name (got {style!r})")
    if style.name in styles:
        raise StyleError(f"style {where}: the name {style.name!r} is taken by {type(styles[style.name]).__name__}")
    try:
        check_own(style.columns, f"style {style.name!r} ({where})")
        for name, text in style.prompt_texts.items():  # a plugin's own prompts: listed, hashed, replaceable
            prompts.register_default(name, text, f"the {style.name} style's prompt")
    except ValueError as err:
        raise StyleError(f"style {where}: {err}" if "prompt" in str(err) else str(err)) from None
    styles[style.name] = style
    return style


def discover() -> dict[str, Style]:
    """The built-in styles, then each entry point of ``groundcot.styles``; a broken one is an error naming it."""
    styles: dict[str, Style] = {}
    for cls in BUILT_IN:
        register(cls, styles)
    for point in entry_points(group=GROUP):
        where = f"entry point {point.name!r} ({point.value}) of {GROUP}"
        try:
            loaded = point.load()
        except Exception as err:  # any failure to import a plugin is reported the same way
            raise StyleError(f"{where}: cannot load: {type(err).__name__}: {err}") from err
        register(loaded, styles, where)
    return styles


STYLES: dict[str, Style] = discover()


def style_names() -> tuple[str, ...]:
    """Every registered style's name, built-ins first."""
    return tuple(STYLES)


def in_order(names) -> list[str]:
    """``names`` in the registry's order (built-ins first); names it lacks after them, sorted."""
    known = list(STYLES)
    return sorted(names, key=lambda n: (known.index(n), "") if n in known else (len(known), n))


def get_style(name: str) -> Style:
    try:
        return STYLES[name]
    except KeyError:
        raise StyleError(f"unknown style {name!r}; known: {', '.join(STYLES)}") from None


def columns_of(name: str) -> dict[str, tuple[object, str]]:
    """The columns of style ``name``'s config (its Parquet files)."""
    return style_columns(get_style(name).columns)


def run_columns(names=None) -> dict[str, tuple[object, str]]:
    """The columns of a table holding rows of the styles ``names`` (default: every registered style)."""
    return style_columns({c for n in (names or STYLES) for c in get_style(n).columns})


def style_of(record: Record) -> Style:
    return get_style(record.style or "sif")


def fan_out(record: Record, styles: list[str]) -> list[Record]:
    """One record per style; a rejected record stays one record (it is rejected for all)."""
    if record.rejection is not None:
        record.style = ""  # rejected for every style
        return [record]
    out = []
    for name in styles:
        twin = copy.copy(record)  # shared lists are never mutated in place downstream
        twin.style = name
        out.append(twin)
    return out


def plan(record: Record, **crops) -> Record:
    """Attach the style's frame, actions and crops (``crops``: the config's crops section)."""
    style = style_of(record)
    image = Image.open(io.BytesIO(record.image)).convert("RGB") if style.plans_crops else None
    style.plan(record, image, CropSettings(**crops))
    return record
