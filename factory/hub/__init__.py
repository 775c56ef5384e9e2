"""Publishing targets: one small interface, two places a folder can go.

`make_target("local", home)` is the registry under the home directory (`factory.hub.local`, in
the Hugging Face cache layout), `make_target("hf", home)` the Hugging Face Hub or whatever
Hub-compatible endpoint `HF_ENDPOINT` names (`factory.hub.hf`, the only module that talks to
`HfApi`). Both take the same folder and answer the same two calls:

    target.publish(folder, repo_id, repo_type, *, tag, message, private=False) -> Published
    target.pull(repo_id, revision=None, repo_type=None, to=None) -> Published

`publish` commits the folder onto `main` unless `main` already holds exactly it, and creates
`tag` on that commit. Tags never move: when `tag` already names a commit holding exactly these
files, that commit is returned and nothing is committed; when it names another commit, it stays
there (with a warning).
"""

from __future__ import annotations

from pathlib import Path

from factory.hub.common import REPO_TYPES, TARGETS, HubError, Published

__all__ = ["REPO_TYPES", "TARGETS", "HubError", "Published", "make_target"]


def make_target(name: str, home: Path):
    """The target called `name` ("local" or "hf") for the home directory `home`."""
    if name == "local":
        from factory.hub.local import LocalRegistry
        from factory.paths import registry_dir

        return LocalRegistry(registry_dir(home))
    if name == "hf":
        from factory.hub.hf import HfHub

        return HfHub()
    raise HubError(f"unknown target {name!r} (use {' or '.join(TARGETS)})")
