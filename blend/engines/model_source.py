"""The model a command runs (`--model`, the flows' `model`): a local model folder, or a
Hugging Face model id (`org/name`, `org/name@revision`) found in the local Hugging Face cache.

blend never downloads a model: a nightly run must not wait on, or fail by, the network, and a
model is many GB. An id is looked up by huggingface_hub itself (`snapshot_download` with
`local_files_only=True`), in its cache: $HF_HUB_CACHE, else $HF_HOME/hub, else
~/.cache/huggingface/hub (read when huggingface_hub is imported). A model not there is named
with the command that downloads it.

A model's identity in lineage follows from its folder alone (`model_source`), so every stage
and every engine process agrees on it: a snapshot of the cache
(`<cache>/models--org--name/snapshots/<commit>`) is `org/name` at that commit, however it
was named; any other folder is its folder name (as before ids were accepted), with no revision.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from blend.store.names import NameKind, name_problem, validate_name

# huggingface_hub's cache layout (file_download.repo_folder_name; the cache scanner reads it
# back the same way): `models--` + the id with `/` as `--`, then `snapshots/<commit hash>`.
_REPO_PREFIX = "models--"
_COMMIT = re.compile(r"[0-9a-f]{40}")
# A branch, tag or commit: what `hf download --revision` takes. No `..`, no leading `/`:
# huggingface_hub joins it to the cache folder (`refs/<revision>`).
_REVISION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]*", re.ASCII)


class ModelNotFoundError(ValueError):
    """`--model` names neither a model folder nor a model of the local Hugging Face cache."""


@dataclass(frozen=True, slots=True)
class HubId:
    """A Hugging Face model id as given: `repo_id`, at `revision` (None: the main branch)."""

    repo_id: str  # org/name
    revision: str | None  # a branch, tag or commit hash

    def download_command(self) -> str:
        """The command that puts this model into the cache blend reads."""
        revision = f" --revision {shlex.quote(self.revision)}" if self.revision else ""
        return f"hf download {self.repo_id}{revision}"


@dataclass(frozen=True, slots=True)
class ModelSource:
    """A model to run and its identity in lineage."""

    path: Path  # the folder the engine and the tokenizer load (a cache snapshot for an id)
    name: str  # results' and runs' `model`: the Hugging Face id, else the folder's name
    revision: str | None  # the snapshot's commit hash; None for a folder outside the cache

    def describe(self) -> str:
        """One line for the user: the id at its revision and the folder, or the folder."""
        if self.revision is None:
            return str(self.path)
        return f"{self.name} at revision {self.revision} ({self.path})"


def model_source(folder: Path) -> ModelSource:
    """The identity of the model folder `folder` (not resolved: the name is its last part, as
    given), read from where it lies; nothing is checked or opened."""
    path = Path(folder)
    snapshots, repo = path.parent, path.parent.parent
    if (
        _COMMIT.fullmatch(path.name)
        and snapshots.name == "snapshots"
        and repo.name.startswith(_REPO_PREFIX)
    ):
        return ModelSource(path, repo.name.removeprefix(_REPO_PREFIX).replace("--", "/"), path.name)
    return ModelSource(path, path.name, None)


def parse_hub_id(text: str) -> HubId | None:
    """`text` as a Hugging Face model id `org/name[@revision]`, or None when it is not one
    (by huggingface_hub's rule for ids, and blend's naming rule for each part)."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    repo_id, at, revision = text.partition("@")
    if repo_id.count("/") != 1:
        return None  # a bare name is a folder; `a/b/c` a path
    if at and (_REVISION.fullmatch(revision) is None or ".." in revision):
        return None
    try:
        validate_repo_id(repo_id)
    except HFValidationError:
        return None
    if any(name_problem(part, NameKind.MODEL) for part in repo_id.split("/")):
        return None  # huggingface_hub allows non-ASCII letters; the `model` name may not
    return HubId(repo_id, revision or None)


def locate_model(text: str) -> ModelSource:
    """The model `text` names: an existing folder (it wins over an id of the same spelling),
    else a Hugging Face id in the local cache. ModelNotFoundError when there is none, with
    what to do; InvalidNameError when a folder's name breaks blend's naming rule."""
    folder = Path(text).expanduser()
    if folder.exists():
        if not (folder / "config.json").is_file():
            raise ModelNotFoundError(f"{text} is not a model folder (no config.json)")
        source = model_source(folder.resolve())
        for part in source.name.split("/"):  # a cache snapshot's name is its id: org/name
            validate_name(part, NameKind.MODEL, f"the model folder {text}")
        return source
    hub = parse_hub_id(text)
    if hub is None:
        raise ModelNotFoundError(
            f"{text}: no such model folder (a Hugging Face model is named org/name or "
            "org/name@revision)"
        )
    return _cached_model(text, hub)


def _cached_model(text: str, hub: HubId) -> ModelSource:
    """The snapshot of `hub` in the local cache, looked up without any network access."""
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import IncompleteSnapshotError, LocalEntryNotFoundError

    revision = f" at revision {hub.revision}" if hub.revision else ""
    offline = (
        " (HF_HUB_OFFLINE is set: download where the Hub can be reached)"
        if constants.HF_HUB_OFFLINE
        else ""
    )
    try:
        folder = Path(snapshot_download(hub.repo_id, revision=hub.revision, local_files_only=True))
    except IncompleteSnapshotError:
        raise ModelNotFoundError(
            f"{text}: the cached snapshot of the Hugging Face model {hub.repo_id}{revision} "
            f"in {constants.HF_HUB_CACHE} misses files: complete it with "
            f"`{hub.download_command()}`{offline}"
        ) from None
    except LocalEntryNotFoundError:
        raise ModelNotFoundError(
            f"{text}: no such folder, and the Hugging Face model {hub.repo_id}{revision} is not "
            f"in the local cache {constants.HF_HUB_CACHE} (blend never downloads): download "
            f"it with `{hub.download_command()}`{offline}, or set HF_HUB_CACHE to the cache "
            "that holds it"
        ) from None
    if not (folder / "config.json").is_file():
        raise ModelNotFoundError(
            f"{text}: the cached snapshot {folder} has no config.json (only some files were "
            f"downloaded?): download the whole model with `{hub.download_command()}`{offline}"
        )
    return ModelSource(folder, hub.repo_id, folder.name)
