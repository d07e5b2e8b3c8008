"""A real checkpoint (a local folder or a hub id in the local cache) runs through the same tests."""

import json
import subprocess
import sys

import pytest

from quantgate.errors import QuantgateError
from quantgate.matrix import load_models
from quantgate.sources.cache import ensure_synthetic
from quantgate.sources.checkpoints import checkpoint_name, resolve_checkpoint

from .conftest import REPO


@pytest.fixture(scope="module")
def saved_pipeline(tmp_path_factory, shared_cache):
    """A tiny FLUX pipeline saved with FluxPipeline.save_pretrained, standing in for a real checkpoint."""
    import torch
    from diffusers import FluxPipeline

    built = ensure_synthetic(load_models(REPO / "fixtures")["tiny-flux"], shared_cache)
    folder = tmp_path_factory.mktemp("checkpoints") / "My-Flux"
    FluxPipeline.from_pretrained(built, dtype=torch.bfloat16).save_pretrained(folder)
    return folder


def test_a_saved_pipeline_runs_the_same_matrix_and_tests(saved_pipeline, run_gate, fixtures_copy, tmp_path,
                                                          shared_cache):
    baselines = tmp_path / "baselines"
    regen = subprocess.run(
        [sys.executable, "-m", "quantgate", "regen-baselines", "--model", str(saved_pipeline),
         "--model-settings", "tiny-flux", "--device", "cpu", "--fixtures", str(fixtures_copy),
         "--baselines", str(baselines), "--cache-dir", str(shared_cache)],
        capture_output=True, text=True, timeout=600)
    assert regen.returncode == 0, regen.stderr[-2000:]
    meta = json.loads((baselines / "my-flux" / "cpu-x86_64" / "fox-s0.json").read_text())
    assert meta["model_identity"].startswith("checkpoint:")

    args = ("--qg-model", str(saved_pipeline), "--qg-model-settings", "tiny-flux",
            "--qg-config", "bf16", "--qg-config", "quanto-int8")
    first = run_gate(*args, fixtures=fixtures_copy, baselines=baselines)
    # the expectation tests ask for this model's expectations; everything else passes
    first.assert_outcomes(passed=7, failed=5)
    first.stdout.fnmatch_lines(["*no expectations for 'quanto-int8' on hardware class cpu-x86_64: add a table*"
                                "*expectations/my-flux.toml*"])
    propose = subprocess.run([sys.executable, "-m", "quantgate", "propose-expectations",
                              str(tmp_path / "results-0" / "results.json")],
                             capture_output=True, text=True, timeout=120)
    assert propose.returncode == 0, propose.stderr
    (fixtures_copy / "expectations" / "my-flux.toml").write_text(propose.stdout)
    again = run_gate(*args, fixtures=fixtures_copy, baselines=baselines)
    again.assert_outcomes(passed=11, skipped=1)     # the latency ratio: proposed without --latency-margin
    again.stdout.fnmatch_lines(["*| my-flux-quanto-int8-cpu | 6 passed, 1 skipped |*"])


def test_a_saved_unet_pipeline_runs_as_its_family(run_gate, all_fixtures_copy, tmp_path, shared_cache):
    """A checkpoint of another family than FLUX's (SDXL's UNet pipeline, saved by diffusers) is read
    as that family from its model_index.json, and the matrix's roles reach its components: torchao
    quantizes its unet, the denoiser. (Loading and memory tests only: the images need baselines made
    from it, as the FLUX checkpoint test above shows.)"""
    import torch
    from diffusers import StableDiffusionXLPipeline

    built = ensure_synthetic(load_models(REPO / "fixtures")["tiny-sdxl"], shared_cache)
    folder = tmp_path / "checkpoints" / "My-SDXL"
    StableDiffusionXLPipeline.from_pretrained(built, dtype=torch.bfloat16).save_pretrained(folder)
    result = run_gate("--qg-model", str(folder), "--qg-model-settings", "tiny-sdxl", "--qg-config", "torchao-int8wo",
                      "-k", "loading or quantization_takes_effect", fixtures=all_fixtures_copy)
    result.assert_outcomes(passed=2)
    records = {c["case"]: c for c in json.loads((run_gate.results_dirs[-1] / "results.json").read_text())["cases"]}
    quantized = records["my-sdxl-torchao-int8wo-cpu"]
    assert quantized["family"] == "sdxl" and quantized["status"] == "ok"
    assert quantized["components"] == ["unet"] and quantized["weights"]["unet"]["quantized_tensors"] > 0


def test_a_missing_folder_is_named(run_gate, tmp_path):
    missing = tmp_path / "nowhere" / "flux"
    result = run_gate("--qg-model", str(missing), "--collect-only")
    assert result.ret != 0
    result.stdout.fnmatch_lines([f"*model '{missing}' is not in *models.toml (known: tiny-flux, flux-dev-synth); "
                                 f"checkpoint '{missing}': no folder at {missing}, and not a hub id*"])


def test_a_folder_that_is_not_a_pipeline_is_refused(tmp_path):
    (tmp_path / "weights").mkdir()
    with pytest.raises(QuantgateError, match=r"no diffusers pipeline at .*weights \(looked for .*model_index.json\)"):
        resolve_checkpoint(str(tmp_path / "weights"))


def test_a_hub_id_not_in_the_local_cache_names_the_cache_and_downloads_nothing(tmp_path, monkeypatch):
    cache = tmp_path / "hf-cache"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code = ("from quantgate.sources.checkpoints import resolve_checkpoint\n"
            "try:\n    resolve_checkpoint('black-forest-labs/FLUX.1-dev')\n"
            "except Exception as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=tmp_path).stdout
    assert f"not in the local Hugging Face cache ({cache}" in out
    assert "huggingface-cli download black-forest-labs/FLUX.1-dev" in out
    assert not (cache / "models--black-forest-labs--FLUX.1-dev" / "snapshots").exists()


def test_checkpoint_names_are_valid_model_names():
    assert checkpoint_name("black-forest-labs/FLUX.1-dev") == "black-forest-labs-flux.1-dev"
    assert checkpoint_name("/nonexistent/My Flux (fp16)") == "nonexistent-my-flux-fp16"
