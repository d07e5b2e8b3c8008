"""BF16 baseline images: baselines/<model>/<hardware class>/<prompt>-s<seed>.png + .json (a video:
its frames side by side in one lossless PNG). A variant is the reference taken down a regression
path: baselines/<model>/<hardware class>/<variant>/<prompt>-s<seed>.png + .json (VARIANTS: "lora",
BF16 with the lora path's synthetic LoRA, of the model's path_images pairs).

Baselines are written only by the regeneration command, only from the reference configuration, and
a whole set at a time: the new set is written into a temporary folder and swapped in by renames, so
an interrupted regeneration leaves the old set intact. Reading checks each baseline against its
metadata (hardware class, generation settings, sha256) so a stale, foreign or damaged image is never
used silently.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from quantgate.case.session import image_key
from quantgate.errors import BaselineError
from quantgate.matrix import BackendConfig, ModelSpec, Prompt

SETTINGS_CHECKED = ("height", "width", "steps", "guidance_scale", "max_sequence_length")
VARIANTS = ("lora",)


def regen_command(model: str, device: str) -> str:
    return f"quantgate regen-baselines --model {model} --device {device}"


def generation_settings(model: ModelSpec) -> dict:
    return {**{name: getattr(model, name) for name in SETTINGS_CHECKED}, "call": dict(model.call)}


def variant_settings(model: ModelSpec, variant: str) -> dict:
    """What a variant's images depend on beyond the plain baselines' settings, recorded in its
    metadata and checked on reading: for "lora", the synthetic LoRA's rank, seed and strength."""
    from quantgate.paths import lora

    return {"variant": variant, "lora": {"rank": lora.RANK, "seed": lora.SEED, "strength": model.lora_strength,
                                         "targets": list(lora.TARGETS)}}


def _size(model: ModelSpec) -> str:
    """What one output of the model is, in pixels: WxH, or a video's frames side by side."""
    if model.frames == 1:
        return f"{model.width}x{model.height}"
    return f"{model.width * model.frames}x{model.height} ({model.frames} frames of {model.width}x{model.height} side by side)"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class BaselineStore:
    def __init__(self, root: Path):
        self.root = Path(root)

    def folder(self, model: str, hardware: str) -> Path:
        final = self.root / model / hardware
        if not final.exists():
            self._recover(model, hardware)
        return final

    def _recover(self, model: str, hardware: str) -> None:
        """An interrupted swap leaves the old set as .<hw>.old-*: put it back."""
        parent = self.root / model
        if parent.is_dir():
            olds = sorted(parent.glob(f".{hardware}.old-*"))
            if olds:
                os.rename(olds[-1], parent / hardware)

    def hardware_classes(self, model: str) -> list[str]:
        parent = self.root / model
        if not parent.is_dir():
            return []
        return sorted(p.name for p in parent.iterdir() if p.is_dir() and not p.name.startswith("."))

    def paths(self, model: str, hardware: str, prompt_id: str, seed: int,
              variant: str | None = None) -> tuple[Path, Path]:
        folder = self.folder(model, hardware)
        base = (folder / variant if variant else folder) / image_key(prompt_id, seed)
        return base.with_suffix(".png"), base.with_suffix(".json")

    # -------------------------------------------------------------- reading
    def load(self, model: ModelSpec, hardware: str, prompt: Prompt, seed: int, device: str,
             identity: str | None = None, variant: str | None = None) -> np.ndarray:
        from PIL import Image, UnidentifiedImageError

        fix = f"make them with: {regen_command(model.name, device)}"
        png, meta_path = self.paths(model.name, hardware, prompt.id, seed, variant)
        if not png.exists():
            others = [hw for hw in self.hardware_classes(model.name) if hw != hardware]
            if others and not self.folder(model.name, hardware).exists():
                raise BaselineError(
                    f"no baselines for {model.name} on hardware class {hardware}; those under "
                    f"{self.root / model.name} were made on {', '.join(others)} and are not used here; {fix}")
            raise BaselineError(f"missing baseline {png}; {fix}")
        if not meta_path.exists():
            raise BaselineError(f"baseline {png} has no metadata file {meta_path.name}; {fix}")
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError) as exc:
            raise BaselineError(f"baseline metadata {meta_path} is unreadable ({exc}); {fix}") from None
        if not isinstance(meta, dict):
            raise BaselineError(f"baseline metadata {meta_path} is not a JSON object; {fix}")
        if meta.get("hardware") != hardware:
            raise BaselineError(f"baseline {png} was made on hardware class {meta.get('hardware')!r}, "
                                f"not {hardware}: not used; {fix}")
        expected = {**generation_settings(model), "prompt": prompt.text, "seed": seed,
                    "float32_components": list(model.float32_components(device))}
        if identity is not None:       # the weights the images came from (synthetic build key, checkpoint hash)
            expected["model_identity"] = identity
        if variant is not None:
            expected.update(variant_settings(model, variant))
        recorded = {"float32_components": [], "call": {}, **meta}   # baselines from before these fields ran all
                                                                    # in BF16, with no free call arguments
        stale = [f"{k} {recorded.get(k)!r} (now {v!r})" for k, v in expected.items() if recorded.get(k) != v]
        if stale:
            raise BaselineError(f"baseline {png} was made with other settings: {'; '.join(stale)}; {fix}")
        if meta.get("sha256") != _sha256(png):
            raise BaselineError(f"baseline {png} does not match the sha256 in {meta_path.name}: the file "
                                f"changed or is damaged; {fix}")
        try:
            with Image.open(png) as im:
                image = np.asarray(im.convert("RGB"))
        except (OSError, UnidentifiedImageError) as exc:
            raise BaselineError(f"baseline {png} is not a readable PNG ({exc}); {fix}") from None
        if image.shape != (model.height, model.width * model.frames, 3):
            raise BaselineError(f"baseline {png} is {image.shape[1]}x{image.shape[0]}, the model makes "
                                f"{_size(model)}; {fix}")
        return image

    # -------------------------------------------------------------- writing
    def write_set(self, model: ModelSpec, config: BackendConfig, hardware: str,
                  images: dict[str, np.ndarray], environment: dict, identity: str | None = None,
                  variants: dict[str, dict[str, np.ndarray]] | None = None) -> Path:
        """Write every baseline of one model and hardware class, and its variants ({variant: images}),
        replacing the old set atomically (one writer at a time: a second waits, then replaces the
        first's set whole)."""
        if not config.is_reference:
            raise BaselineError(f"baselines are made only from the reference configuration, not "
                                f"'{config.id}' (backend {config.backend})")
        wanted = {None: {image_key(p.id, s): (p, s) for p, s in model.images()}}
        wanted.update({v: {image_key(p.id, s): (p, s) for p, s in model.path_images_pairs()} for v in variants or {}})
        given = {None: images, **(variants or {})}
        for variant, keys in wanted.items():
            if variant is not None and variant not in VARIANTS:
                raise BaselineError(f"unknown baseline variant {variant!r} (known: {', '.join(VARIANTS)})")
            if set(given[variant]) != set(keys):
                raise BaselineError(f"a baseline set{f' (variant {variant})' if variant else ''} needs exactly the "
                                    f"images {sorted(keys)}, got {sorted(given[variant])}")
            bad = [k for k, im in given[variant].items()
                   if getattr(im, "dtype", None) != np.uint8 or im.shape != (model.height, model.width * model.frames, 3)]
            if bad:
                raise BaselineError(f"baseline images must be {_size(model)} RGB uint8: {', '.join(bad)} "
                                    "is not; nothing was written")
        from quantgate.locks import exclusive

        parent = self.root / model.name
        with exclusive(parent / f".{hardware}.lock", f"the baselines of {model.name} on {hardware}"):
            return self._write_set(model, config, hardware, given, environment, identity, wanted, parent)

    def _write_set(self, model, config, hardware, given, environment, identity, wanted, parent) -> Path:
        from PIL import Image

        tmp = Path(tempfile.mkdtemp(prefix=f".{hardware}.new-", dir=parent))
        os.chmod(tmp, 0o755)
        try:
            created = datetime.now(timezone.utc).isoformat(timespec="seconds")
            for variant, keys in wanted.items():
                folder = tmp / variant if variant else tmp
                folder.mkdir(exist_ok=True)
                for key, (prompt, seed) in keys.items():
                    png = folder / f"{key}.png"
                    Image.fromarray(given[variant][key], mode="RGB").save(png, format="PNG")
                    meta = {"model": model.name, "config": config.id, "hardware": hardware,
                            "prompt_id": prompt.id, "prompt": prompt.text, "seed": seed,
                            **generation_settings(model), "model_identity": identity,
                            "float32_components": list(model.float32_components(environment.get("device", "cpu"))),
                            **(variant_settings(model, variant) if variant else {}),
                            "created": created, "sha256": _sha256(png),
                            "environment": environment}
                    (folder / f"{key}.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
            final = parent / hardware
            old = None
            if final.exists():
                old = parent / f".{hardware}.old-{os.getpid()}"
                os.rename(final, old)
            os.rename(tmp, final)
            if old is not None:
                shutil.rmtree(old)
            return final
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
