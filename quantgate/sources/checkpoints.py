"""Real checkpoints: a local diffusers folder, or a hub id found in the local Hugging Face cache.

`--qg-model` (and the CLI's `--model`) takes a model named in models.toml, or a checkpoint. A
checkpoint runs the same matrix and tests as a model of models.toml whose generation settings,
devices and configurations it borrows (`--qg-model-settings`, default flux-dev-synth). Nothing is
downloaded: a hub id is looked up in the local cache only.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from pathlib import Path

from quantgate.errors import QuantgateError
from quantgate.matrix import ModelSpec

DEFAULT_SETTINGS_MODEL = "flux-dev-synth"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def resolve_checkpoint(ref: str) -> Path:
    """The folder of a checkpoint (model_index.json at its top, every safetensors file whole), or an
    error naming where it looked or which file is damaged."""
    folder = _find_checkpoint(ref)
    from quantgate.sources.weightfiles import check_folder

    damaged = check_folder(folder)
    if damaged:
        raise QuantgateError(f"checkpoint {ref!r} has damaged weight files, not used: {'; '.join(damaged)}; "
                             "copy or download them again")
    return folder


def _find_checkpoint(ref: str) -> Path:
    path = Path(ref).expanduser()
    if path.exists():
        if not (path / "model_index.json").is_file():
            raise QuantgateError(f"checkpoint {ref!r}: no diffusers pipeline at {path.resolve()} (looked for "
                                 f"{path.resolve() / 'model_index.json'}); give a folder saved with save_pretrained")
        return path.resolve()
    if not _HUB_ID.match(ref):
        raise QuantgateError(f"checkpoint {ref!r}: no folder at {path.resolve()}, and not a hub id (owner/name)")
    from huggingface_hub import snapshot_download
    from huggingface_hub.constants import HF_HUB_CACHE

    try:
        folder = Path(snapshot_download(ref, local_files_only=True))
    except Exception as exc:  # LocalEntryNotFoundError and kin: not in the cache
        raise QuantgateError(
            f"checkpoint {ref!r}: not in the local Hugging Face cache ({HF_HUB_CACHE}; HF_HUB_CACHE or HF_HOME "
            f"moves it) and no folder at {path.resolve()}; nothing is downloaded: fetch it on a connected "
            f"machine (huggingface-cli download {ref}) or give its folder ({type(exc).__name__})") from None
    if not (folder / "model_index.json").is_file():
        raise QuantgateError(f"checkpoint {ref!r}: the cached snapshot {folder} has no model_index.json "
                             "(not a diffusers pipeline, or only partly downloaded)")
    return folder


def checkpoint_name(ref: str) -> str:
    """A model name for results and baselines: 'black-forest-labs/FLUX.1-dev' -> 'black-forest-labs-flux.1-dev'."""
    base = ref if not Path(ref).expanduser().exists() else Path(ref).expanduser().resolve().name
    name = re.sub(r"[^a-z0-9_.]+", "-", base.lower()).strip("-")
    return re.sub(r"^[^a-z0-9]+", "", name) or "checkpoint"


def checkpoint_family(folder: Path) -> str:
    """The family of a checkpoint's pipeline, from its model_index.json."""
    import json

    from quantgate.families import family_of_pipeline

    pipeline = json.loads((Path(folder) / "model_index.json").read_text()).get("_class_name", "?")
    return family_of_pipeline(pipeline).name


def checkpoint_model(ref: str, like: ModelSpec) -> ModelSpec:
    folder = resolve_checkpoint(ref)
    fam = checkpoint_family(folder)
    if fam != like.family:
        raise QuantgateError(f"checkpoint {ref!r} is a {fam} pipeline, but its settings come from {like.name!r}, "
                             f"a {like.family} model: name a {fam} model of models.toml with --qg-model-settings")
    return dataclasses.replace(like, name=checkpoint_name(ref), source="checkpoint", family=fam,
                               path=str(folder), borrows=like.name, description=f"checkpoint {ref} ({folder}), with {like.name}'s settings")


def select_models(models: dict[str, ModelSpec], wanted: list[str], settings_of: str | None,
                  where: Path) -> dict[str, ModelSpec]:
    """The models a run covers: all of models.toml, or those named, or checkpoints."""
    if not wanted:
        return models
    settings_of = settings_of or DEFAULT_SETTINGS_MODEL
    out = {}
    for ref in wanted:
        if ref in models:
            out[ref] = models[ref]
            continue
        if settings_of not in models:
            raise QuantgateError(f"model settings {settings_of!r} for checkpoint {ref!r} are not in "
                                 f"{where} (known: {', '.join(models)})")
        try:
            spec = checkpoint_model(ref, models[settings_of])
        except QuantgateError as exc:
            raise QuantgateError(f"model {ref!r} is not in {where} (known: {', '.join(models)}); {exc}") from None
        if spec.name in models:
            raise QuantgateError(f"checkpoint {ref!r} would be named {spec.name!r}, which models.toml already uses")
        out[spec.name] = spec
    return out


def identity(spec: ModelSpec, folder: Path) -> str:
    """What the model's images depend on, in short: a synthetic model's build key and the digest of
    its weights (so a torch that draws other values is noticed), or a hash of a checkpoint's configs
    and weight file names and sizes (cheap: no 30 GB read)."""
    if spec.source == "synthetic":       # the build key and a digest of the built weights' sha256s
        import json

        from quantgate.sources.cache import BUILD_META
        from quantgate.sources.synthetic import config_key

        built = json.loads((Path(folder) / BUILD_META).read_text())["sha256"]
        digest = hashlib.sha256(json.dumps(built, sort_keys=True).encode()).hexdigest()[:16]
        return f"synthetic:{config_key(spec.config_dir, spec.seed, spec.pipeline_family)}:{digest}"
    h = hashlib.sha256()
    for path in sorted(Path(folder).rglob("*")):
        rel = path.relative_to(folder).as_posix()
        if path.is_file() and (path.name.endswith(".json") or path.suffix in (".safetensors", ".gguf", ".bin")):
            h.update(rel.encode() + b"\0")
            h.update(path.read_bytes() if path.suffix == ".json" else str(path.stat().st_size).encode())
    return f"checkpoint:{h.hexdigest()[:16]}"
