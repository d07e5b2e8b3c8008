"""Where models live: synthetic builds in a cache folder, real checkpoints in a local folder.

A synthetic build is written to a temporary folder and renamed into place only after its metadata
(quantgate-build.json, with a fingerprint of every weight file) is written, so an interrupted
build never looks complete; a folder without valid metadata is rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from quantgate.errors import QuantgateError
from quantgate.matrix import ModelSpec
from quantgate.units import GIB

CACHE_ENV = "QUANTGATE_CACHE_DIR"
BUILD_META = "quantgate-build.json"


def default_cache_root() -> Path:
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "quantgate"


def _weight_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.safetensors") if p.is_file())


def fingerprint(folder: Path) -> dict[str, str]:
    """sha256 of every weight file, by path relative to the folder (a progress bar from 1 GiB up)."""
    from tqdm.auto import tqdm

    files = _weight_files(folder)
    total = sum(p.stat().st_size for p in files)
    out = {}
    with tqdm(total=total, unit="B", unit_scale=True, desc=f"fingerprint {folder.name}",
              disable=total < GIB) as bar:
        for path in files:
            h = hashlib.sha256()
            with path.open("rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 24), b""):
                    h.update(chunk)
                    bar.update(len(chunk))
            out[str(path.relative_to(folder))] = h.hexdigest()
    return out


def _complete(folder: Path) -> bool:
    """True if the folder has build metadata and every weight file it lists, at its recorded size."""
    meta_path = folder / BUILD_META
    try:
        meta = json.loads(meta_path.read_text())
        return all((folder / rel).stat().st_size == size for rel, size in meta["sizes"].items())
    except (OSError, ValueError, KeyError, TypeError):
        return False


def synthetic_dir(spec: ModelSpec, cache_root: Path) -> Path:
    from quantgate.sources.synthetic import config_key

    return Path(cache_root) / "models" / f"{spec.name}-{config_key(spec.config_dir, spec.seed, spec.pipeline_family)}"


def ensure_synthetic(spec: ModelSpec, cache_root: Path) -> Path:
    """The folder of the built synthetic model, building it first if it is missing or incomplete
    (one process at a time: a second one waits, then finds it built)."""

    final = synthetic_dir(spec, cache_root)
    if _complete(final):
        return final
    from quantgate.locks import exclusive

    with exclusive(final.parent / f".{final.name}.lock", f"the model {spec.name}"):
        if _complete(final):           # another process built it while this one waited
            return final
        return _build(spec, final)


def _build(spec: ModelSpec, final: Path) -> Path:
    from quantgate.sources.synthetic import build, config_key

    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.building-", dir=final.parent))
    os.chmod(tmp, 0o755)
    try:
        started = time.perf_counter()
        build(spec.pipeline_family, spec.config_dir, tmp, spec.seed)
        meta = {
            "model": spec.name,
            "builder": spec.family,
            "config_key": config_key(spec.config_dir, spec.seed, spec.pipeline_family),
            "seed": spec.seed,
            "build_seconds": round(time.perf_counter() - started, 3),
            "sizes": {str(p.relative_to(tmp)): p.stat().st_size for p in _weight_files(tmp)},
            "sha256": fingerprint(tmp),
        }
        (tmp / BUILD_META).write_text(json.dumps(meta, indent=2, sort_keys=True))
        if final.exists():             # an incomplete earlier build: never used, replaced
            shutil.rmtree(final)
        os.rename(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def checkpoint_dir(spec: ModelSpec) -> Path:
    """A real checkpoint: a local diffusers folder, or a hub id in the local Hugging Face cache."""
    from quantgate.sources.checkpoints import resolve_checkpoint

    try:
        return resolve_checkpoint(spec.path)
    except QuantgateError as exc:
        raise QuantgateError(f"model '{spec.name}' (path in models.toml): {exc}") from None


def model_dir(spec: ModelSpec, cache_root: Path) -> Path:
    if spec.source == "synthetic":
        return ensure_synthetic(spec, cache_root)
    return checkpoint_dir(spec)
