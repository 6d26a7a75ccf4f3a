"""What a source is: its config model, its reader, the paths ``--check`` verifies, its up-front
record count and its provenance for the dataset card. One subclass of :class:`Source` per kind."""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import ClassVar, Optional, Union

from pydantic import BaseModel, ConfigDict, Field


class SourceBase(BaseModel):
    """Keys every source has; a source's ``Config`` adds ``kind: Literal["<kind>"]`` and its own."""

    model_config = ConfigDict(extra="forbid")

    path: Union[str, list[str]] = Field(description="File(s) or glob(s) of the source's annotations.")
    image_root: str = Field(description="Folder (or bucket prefix) the records' image paths are relative "
                                        "to; `{dataset}` stands for the record's sub-dataset.")
    limit: Optional[int] = Field(None, ge=1, description="Keep only the N records with the smallest ids.")


@dataclass(frozen=True)
class Provenance:
    """What a run's card says of one source: its terms, where it comes from and how to cite it."""

    license: Optional[str]  # Hub licence id; None when the terms are no standard licence
    terms: str  # the terms in a sentence, for the card's License section
    datasets: tuple[str, ...] = ()  # Hub ids or names, for the card's source_datasets
    citations: tuple[str, ...] = ()  # BibTeX entries
    restricted: tuple[str, ...] = ()  # terms of sub-datasets seen in the rows that restrict use


class SourceError(ValueError):
    """A source that cannot be registered or found, as one line."""


def patterns(path: str | list[str]) -> list[str]:
    return [path] if isinstance(path, str) else list(path)


class Source:
    """One kind of input. A subclass sets ``kind``, ``Config`` and ``provenance`` and writes ``read``;
    the other methods have defaults that fit a source whose ``path`` lists its annotation files."""

    kind: ClassVar[str]
    Config: ClassVar[type[SourceBase]]
    provenance: ClassVar[Optional[Provenance]] = None
    path_keys: ClassVar[tuple[str, ...]] = ("path", "image_root")  # config keys holding paths or buckets
    prompt_texts: dict[str, str] = {}  # the job's replaced prompts, for a reader that renders one (with_prompts)

    def with_prompts(self, texts: dict[str, str]) -> "Source":
        """This source, its reader rendering prompts with the job's replacements (``prompts.Using``)."""
        twin = copy.copy(self)
        twin.prompt_texts = dict(texts)
        return twin

    def read(self, cfg):
        """The Beam PTransform turning the pipeline's start into this source's Records."""
        raise NotImplementedError

    def paths(self, cfg) -> dict[str, list[str]]:
        """Config key -> file patterns that must each match a file before a run starts."""
        return {"path": patterns(cfg.path)}

    def count(self, cfg) -> int | None:
        """Records the source gives, when known without reading it (before ``limit``); else None."""
        return None

    def card(self, cfg, datasets_seen: set[str]) -> Provenance:
        """This source's provenance in a run whose rows from it carry these ``dataset`` values."""
        return self.provenance or Provenance(None, f"{self.kind}: see the source's terms.", (self.kind,))


class Section(BaseModel):
    """A block of a source's config: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")
