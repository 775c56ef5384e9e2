"""The run manifest: what one build made and where it was published, as a typed structure.

Only the orchestrator (`factory.run`) writes it; the Space and the report read it. It is saved
atomically, so a reader sees the old manifest or the whole new one.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from factory import __version__

log = logging.getLogger(__name__)


class Record(BaseModel):
    """One publish: enough to find the exact files again."""

    model_config = ConfigDict(extra="forbid")

    target: str
    repo_type: str
    repo_id: str
    commit: str
    tag: str | None
    path: str | None  # a local folder holding the files (local target)
    url: str | None
    date: str
    created: bool = True  # False when the target already held exactly these files

    @classmethod
    def of(cls, published, target: str, tag: str | None) -> Record:
        return cls(
            target=target,
            repo_type=published.repo_type,
            repo_id=published.repo_id,
            commit=published.commit,
            tag=tag,
            path=str(published.path) if published.path else None,
            url=published.url,
            date=now(),
            created=published.created,
        )


class StudentEntry(BaseModel):
    """A published student: one student distilled on one config, evaluated against its base."""

    model_config = ConfigDict(extra="forbid")

    student: str
    config: str
    seed: int
    release: str  # the released folder in the run folder (what was published)
    published: Record
    base_accuracy: float
    accuracy: float
    ci95: list[float]
    n: int
    truncated: int = 0  # answers cut off by the evaluation's max_new_tokens
    max_new_tokens: int | None = None  # the answer bound the evaluation had

    @classmethod
    def of(cls, student, config, seed, release, published, base, distilled) -> StudentEntry:
        return cls(
            student=student,
            config=config,
            seed=seed,
            release=str(release),
            published=published,
            base_accuracy=base["accuracy"],
            accuracy=distilled["accuracy"],
            ci95=distilled["ci95"],
            n=distilled["total"],
            truncated=distilled.get("truncated", 0),
            max_new_tokens=distilled.get("max_new_tokens"),
        )


class Manifest(BaseModel):
    """Everything one build of one recipe produced."""

    model_config = ConfigDict(extra="forbid")

    recipe: str
    recipe_hash: str
    tag: str
    dataset_repo: str
    cot_factory_version: str
    built: str
    build_seconds: float
    configs: dict[str, dict]  # per-config statistics from `build.config_stats`
    source: dict[str, dict] = {}  # per split: problems loaded and skipped, by reason
    dataset: Record | None = None  # the built dataset as published (tagged)
    results: Record | None = None  # the dataset card with the report's results (untagged)
    students: list[StudentEntry] = []
    space: Record | None = None

    def student(self, name: str, config: str) -> StudentEntry | None:
        return next((s for s in self.students if (s.student, s.config) == (name, config)), None)

    def with_student(self, entry: StudentEntry) -> Manifest:
        others = [
            s for s in self.students if (s.student, s.config) != (entry.student, entry.config)
        ]
        return self.model_copy(update={"students": [*others, entry]})

    def trainable(self) -> list[str]:
        """The configs that have training rows, in card order."""
        return [name for name, stats in self.configs.items() if stats["kept"]]

    @classmethod
    def rebuilt(cls, path: Path, recipe, stats: dict, seconds: float, source: dict) -> Manifest:
        """The manifest of a fresh build, saved at `path`: what an earlier build of the same
        inputs published stays; an unreadable earlier manifest is set aside."""
        fields = {
            "recipe": recipe.name,
            "recipe_hash": recipe.hash,
            "tag": recipe.tag,
            "dataset_repo": recipe.dataset.repo_id,
            "cot_factory_version": __version__,
            "built": now(),
            "build_seconds": round(seconds, 1),
            "configs": stats,
            "source": source,
        }
        try:
            earlier = cls.load(path)
        except ValueError as err:
            log.warning("ignoring the unreadable %s: %s", path, str(err).splitlines()[0])
            earlier = None
        manifest = earlier.model_copy(update=fields) if earlier else cls(**fields)
        manifest.save(path)
        return manifest

    @classmethod
    def load(cls, path: Path) -> Manifest | None:
        return cls.model_validate_json(path.read_text()) if path.is_file() else None

    def save(self, path: Path) -> None:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(self.model_dump_json(indent=2) + "\n")
        os.replace(tmp, path)


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
