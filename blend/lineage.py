"""Lineage: what every result row and file can be traced to.

Hashes identify the exact model and tokenizer bytes; the git revision identifies the code.
"""

from __future__ import annotations

import hashlib
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

import blend

_MODEL_FILE_SUFFIXES = (".json", ".safetensors", ".bin", ".model", ".jinja", ".txt", ".py")


def sha256_files(paths: list[Path], chunk_bytes: int = 1 << 20) -> str:
    """sha256 over the names and bytes of `paths`, in sorted name order."""
    digest = hashlib.sha256()
    for path in sorted(paths, key=lambda p: p.name):
        digest.update(path.name.encode())
        with path.open("rb") as f:
            while chunk := f.read(chunk_bytes):
                digest.update(chunk)
    return digest.hexdigest()


def model_sha256(model_dir: Path) -> str:
    """Hash of a model folder's weight, config and tokenizer files (top level only)."""
    files = [
        p for p in Path(model_dir).iterdir() if p.is_file() and p.suffix in _MODEL_FILE_SUFFIXES
    ]
    if not files:
        raise FileNotFoundError(f"no model files in {model_dir}")
    return sha256_files(files)


def git_revision(start: Path | None = None) -> str | None:
    """The project's git commit (with "-dirty" if modified), or None outside a checkout."""
    cwd = start or Path(blend.__file__).resolve().parent
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return rev + ("-dirty" if dirty else "")


@dataclass(frozen=True, slots=True)
class RunLineage:
    """Lineage of one run, stored in every result file's key-value metadata."""

    run_id: str
    plan_id: str
    dataset: str
    snapshot: int
    model: str
    model_sha256: str
    tokenizer_sha256: str
    engine: str
    engine_version: str
    engine_params_json: str
    flow_run_id: str | None
    git_revision: str | None
    blend_version: str = blend.__version__

    def as_metadata(self) -> dict[str, str]:
        """Parquet footer metadata: keys prefixed `blend.`, None values left out."""
        return {f"blend.{k}": str(v) for k, v in asdict(self).items() if v is not None}
