"""AutoRound checkpoints of a pipeline's denoiser, made by the suite the way AutoRound's users make
them: auto-round's own API on the BF16 pipeline folder (`AutoRound(model_dir, scheme=..., iters=...)`,
calibrated on the model's own prompts at its own size and steps), saved in the `auto_round` format,
then loaded through diffusers' AutoRoundConfig like a downloaded one.

The quantizing runs in a child process (`python -m quantgate.sources.autoround_checkpoints`), so that
the case's own memory figures hold its load only. A checkpoint is kept in the cache folder, keyed by
the BF16 model's folder, the settings and auto-round's version: another version quantizes again. A
checkpoint is renamed into place only when complete.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

DEFAULT_SCHEME = "W4A16"
TUNING_SETTINGS = ("iters", "nsamples", "group_size", "sym", "disable_opt_rtn")   # AutoRound(...) keywords
KEPT_SETTING = "modules_to_not_convert"     # modules auto-round leaves in BF16: its layer_config, 16 bits each
DONE = "quantgate-autoround.json"


def maker_settings(settings: dict) -> dict:
    """The matrix settings that change the checkpoint (the inference kernel does not), defaults filled."""
    return {"scheme": settings.get("scheme") or DEFAULT_SCHEME,
            **{k: settings[k] for k in (*TUNING_SETTINGS, KEPT_SETTING) if settings.get(k) is not None}}


def autoround_keywords(settings: dict) -> dict:
    """AutoRound(...)'s keywords for the settings: the tuning ones as they are, the modules kept in BF16
    as auto-round's layer_config (each at 16 bits, which auto-round writes unquantized)."""
    made = maker_settings(settings)
    kept = made.pop(KEPT_SETTING, None)
    return {**made, "layer_config": {name: {"bits": 16} for name in kept}} if kept else made


def checkpoint_path(model_dir: Path, settings: dict, cache_root: Path, version: str) -> Path:
    made = maker_settings(settings)
    key = hashlib.sha256(json.dumps([Path(model_dir).resolve().as_posix(), made, version],
                                    sort_keys=True).encode()).hexdigest()[:16]
    return Path(cache_root) / "autoround" / f"{Path(model_dir).name}-{key}"


def is_complete(path: Path) -> bool:
    return (path / DONE).is_file()


def is_made(model_dir: Path, settings: dict, cache_root: Path) -> bool:
    """Whether the installed auto-round's checkpoint for this model and settings is in the cache."""
    from quantgate.backends import installed_version

    return is_complete(checkpoint_path(model_dir, settings, cache_root, installed_version("auto-round")))


def ensure_denoiser_checkpoint(model_dir: Path, settings: dict, cache_root: Path, spec, device: str) -> Path:
    """The AutoRound pipeline folder for this model and settings, made first where missing."""
    from quantgate.backends import installed_version
    from quantgate.errors import QuantgateError
    from quantgate.locks import exclusive

    version = installed_version("auto-round")
    path = checkpoint_path(model_dir, settings, cache_root, version)
    if is_complete(path):
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with exclusive(path.parent / f".{path.name}.lock", f"the AutoRound checkpoint {path.name}"):
        if is_complete(path):
            return path
        work = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
        try:
            request = {"model_dir": str(model_dir), "out": str(work / "pipe"), "settings": settings,
                       "device": device, "prompts": [p.text for p in spec.prompts], "height": spec.height,
                       "width": spec.width, "steps": spec.steps, "guidance_scale": spec.guidance_scale,
                       "max_sequence_length": spec.max_sequence_length, "seed": spec.seeds[0]}
            (work / "request.json").write_text(json.dumps(request))
            run = subprocess.run([sys.executable, "-m", "quantgate.sources.autoround_checkpoints", str(work / "request.json")],
                                 capture_output=True, text=True)
            if run.returncode != 0:
                tail = "\n".join((run.stdout + run.stderr).strip().splitlines()[-12:])
                raise QuantgateError(f"auto-round could not quantize {Path(model_dir).name} with {settings}: exit "
                                     f"{run.returncode}; its last lines:\n{tail}")
            (work / "pipe" / DONE).write_text(json.dumps({"settings": settings, "auto_round": version}))
            os.replace(work / "pipe", path)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return path


def _quantize(request: dict) -> None:
    """In the child process: auto-round's API over the BF16 pipeline folder, as its users call it."""
    import csv

    from auto_round import AutoRound

    prompts = Path(request["out"]).parent / "prompts.tsv"
    with prompts.open("w", newline="") as fh:
        writer = csv.writer(fh, delimiter="\t")
        writer.writerow(["id", "caption"])
        writer.writerows(enumerate(request["prompts"]))
    call = {"height": request["height"], "width": request["width"]}
    if request["max_sequence_length"]:
        call["max_sequence_length"] = request["max_sequence_length"]
    kwargs = autoround_keywords(request["settings"])
    ar = AutoRound(request["model_dir"], dataset=str(prompts),
                   num_inference_steps=request["steps"], calib_num_inference_steps=request["steps"],
                   guidance_scale=request["guidance_scale"] or 0.0, generator_seed=request["seed"],
                   device_map=request["device"], pipeline_call_kwargs=call, **kwargs)
    # quantize, then save_quantized: auto-round 0.16.1's quantize_and_save writes a diffusers denoiser's weights
    # as model.safetensors (its immediate-saving path skips the renaming that save_quantized does), which
    # diffusers' from_pretrained does not find ("no file named diffusion_pytorch_model.bin")
    ar.quantize()
    ar.save_quantized(request["out"], format="auto_round")


if __name__ == "__main__":
    _quantize(json.loads(Path(sys.argv[1]).read_text()))
