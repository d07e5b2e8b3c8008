"""Where models live: synthetic builds in a cache folder, real checkpoints in a local folder.

A synthetic build is written to a temporary folder and renamed into place only after its metadata
(quantgate-build.json, with a fingerprint of every weight file) is written, so an interrupted
build never looks complete; a folder without valid metadata is rebuilt.

A synthetic build can be rebuilt bit for bit, so where the disk is short one component's weights
may be evicted (`evict`: Qwen-Image's 40.9 GB BF16 transformer while its GGUF file is written, so
one full-size model and its GGUF files fit on a 64 GiB disk). The metadata lists what was evicted;
a case that loads the component restores it first (`ensure_synthetic`), checked against the sha256
the first build recorded; a case that does not (the GGUF case) passes it in `without`.
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
SCRATCH_ENV = "QUANTGATE_SCRATCH_DIR"    # where regression paths write (default: <cache>/paths)
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


def _meta(folder: Path) -> dict | None:
    try:
        meta = json.loads((folder / BUILD_META).read_text())
        return meta if isinstance(meta.get("sizes"), dict) else None
    except (OSError, ValueError, AttributeError):
        return None


def _component_of(rel: str) -> str:
    return Path(rel).parts[0]


def _missing(folder: Path, meta: dict, without=()) -> list[str] | None:
    """The evicted components a caller needs (restorable), or None if the build is damaged or
    incomplete in a way only a rebuild mends (a file listed and not evicted is absent or resized)."""
    evicted = set(meta.get("evicted", []))
    for rel, size in meta["sizes"].items():
        if _component_of(rel) in evicted:
            continue
        try:
            if (folder / rel).stat().st_size != size:
                return None
        except OSError:
            return None
    return sorted(evicted - set(without))


def _complete(folder: Path, without=()) -> bool:
    """True if the folder has build metadata and every weight file it lists at its recorded size,
    but those of evicted components the caller does without."""
    meta = _meta(folder)
    return meta is not None and _missing(folder, meta, without) == []


def free_bytes(path: Path) -> int:
    """Free bytes on the disk that holds `path` (or its nearest existing parent)."""
    path = Path(path)
    while not path.exists() and path.parent != path:
        path = path.parent
    return shutil.disk_usage(path).free


def synthetic_dir(spec: ModelSpec, cache_root: Path) -> Path:
    from quantgate.sources.synthetic import config_key

    return Path(cache_root) / "models" / f"{spec.name}-{config_key(spec.config_dir, spec.seed, spec.pipeline_family)}"


def ensure_synthetic(spec: ModelSpec, cache_root: Path, without: tuple[str, ...] = ()) -> Path:
    """The folder of the built synthetic model, building it first if it is missing or incomplete
    and restoring evicted components, but those in `without` (one process at a time: a second one
    waits, then finds it built)."""

    final = synthetic_dir(spec, cache_root)
    if _complete(final, without):
        return final
    from quantgate.locks import exclusive

    with exclusive(final.parent / f".{final.name}.lock", f"the model {spec.name}"):
        meta = _meta(final)
        missing = _missing(final, meta, without) if meta is not None else None
        if missing == []:              # another process built it while this one waited
            return final
        if missing is None:
            return _build(spec, final)
        for component in missing:
            _restore(spec, final, meta, component)
        return final


def _write_meta(folder: Path, meta: dict) -> None:
    from quantgate.io import atomic_write

    atomic_write(folder / BUILD_META, json.dumps(meta, indent=2, sort_keys=True))


def evict(spec: ModelSpec, cache_root: Path, component: str) -> int:
    """Delete one component's weight files from the synthetic build (it is restored, bit for bit,
    when a case loads it again); the bytes freed."""
    from quantgate.locks import exclusive

    final = synthetic_dir(spec, cache_root)
    with exclusive(final.parent / f".{final.name}.lock", f"the model {spec.name}"):
        meta = _meta(final)
        if meta is None:
            raise QuantgateError(f"{final} is not a complete synthetic build: nothing to evict")
        files = [rel for rel in meta["sizes"] if _component_of(rel) == component]
        if not files:
            raise QuantgateError(f"{final} has no weight files of a component {component!r}")
        meta["evicted"] = sorted(set(meta.get("evicted", [])) | {component})
        _write_meta(final, meta)       # first: a crash below leaves the component evicted, never half-there
        freed = 0
        for rel in files:
            path = final / rel
            if path.exists():
                freed += path.stat().st_size
                path.unlink()
        return freed


def _restore(spec: ModelSpec, final: Path, meta: dict, component: str) -> None:
    """Write an evicted component again and check it against the first build's sha256."""
    from quantgate.sources.synthetic import write_component

    files = {rel: size for rel, size in meta["sizes"].items() if _component_of(rel) == component}
    needed, free = sum(files.values()), free_bytes(final)
    if needed > free:                  # this model's GGUF files can be written again too: make room
        from quantgate.sources.gguf_files import gguf_folder

        dropped = sorted(gguf_folder(final, final.parent.parent).glob("*.gguf"))
        for path in dropped:
            path.unlink()
        if dropped:
            print(f"quantgate: deleted {', '.join(p.name for p in dropped)} of {spec.name} to restore its "
                  f"{component} (written again when a case needs them)", flush=True)
        free = free_bytes(final)
    if needed > free:
        raise QuantgateError(
            f"the {component} of {spec.name} was evicted from {final} to make room and must be written again "
            f"({needed / GIB:.1f} GiB), but {free / GIB:.1f} GiB are free: delete GGUF files under "
            f"{final.parent.parent / 'gguf'} this run does not need, or give the cache more disk "
            f"(--qg-cache-dir / ${CACHE_ENV})")
    tmp = Path(tempfile.mkdtemp(prefix=f".{component}.restoring-", dir=final))
    try:
        write_component(spec.pipeline_family, spec.config_dir, tmp, spec.seed, component)
        got = fingerprint(tmp)
        for rel in files:
            if got.get(rel) != meta["sha256"].get(rel):
                raise QuantgateError(f"restoring {rel} of {spec.name} gave other bytes than its first build "
                                     f"(sha256 {got.get(rel)} != {meta['sha256'].get(rel)}): this torch draws "
                                     f"other values; delete {final} to build the model afresh")
        for rel in files:
            os.replace(tmp / rel, final / rel)
        meta["evicted"] = [c for c in meta.get("evicted", []) if c != component]
        _write_meta(final, meta)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


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


def model_dir(spec: ModelSpec, cache_root: Path, without: tuple[str, ...] = ()) -> Path:
    """The model's folder; a synthetic build is made or restored first, but the components in
    `without` (those a case loads from elsewhere: a GGUF file)."""
    if spec.source == "synthetic":
        return ensure_synthetic(spec, cache_root, without)
    return checkpoint_dir(spec)
