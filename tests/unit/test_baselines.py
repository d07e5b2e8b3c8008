"""The baseline store: written only whole and only from the reference; read only when it fits."""

import json
import os

import numpy as np
import pytest

from quantgate.errors import BaselineError
from quantgate.matrix import load_matrix, load_models, reference_config
from quantgate.results.baselines import BaselineStore

from .conftest import REPO

HW = "cpu-x86_64"


@pytest.fixture
def model_and_configs():
    models = load_models(REPO / "fixtures")
    return models["tiny-flux"], load_matrix(REPO / "fixtures", models)


def _images(model, seed=0):
    rng = np.random.default_rng(seed)
    return {f"{p.id}-s{s}": rng.integers(0, 256, (model.height, model.width, 3), dtype=np.uint8)
            for p, s in model.images()}


@pytest.fixture
def store(tmp_path, model_and_configs):
    model, configs = model_and_configs
    store = BaselineStore(tmp_path / "baselines")
    store.write_set(model, reference_config(configs), HW, _images(model), {"hardware": HW})
    return store


def test_written_set_reads_back_exactly(store, model_and_configs):
    model, _ = model_and_configs
    expected = _images(model)
    for prompt, seed in model.images():
        got = store.load(model, HW, prompt, seed, "cpu")
        assert np.array_equal(got, expected[f"{prompt.id}-s{seed}"])


def test_metadata_records_what_made_the_image(store, model_and_configs):
    model, _ = model_and_configs
    prompt = model.prompts[0]
    _, meta_path = store.paths(model.name, HW, prompt.id, 0)
    meta = json.loads(meta_path.read_text())
    for key in ("prompt", "seed", "steps", "height", "width", "guidance_scale", "hardware", "environment",
                "sha256", "created", "config"):
        assert key in meta
    assert meta["prompt"] == prompt.text and meta["config"] == "bf16"


def test_only_the_reference_configuration_writes_baselines(tmp_path, model_and_configs):
    model, configs = model_and_configs
    quantized = next(c for c in configs if not c.is_reference)
    store = BaselineStore(tmp_path / "b")
    with pytest.raises(BaselineError, match="only from the reference"):
        store.write_set(model, quantized, HW, _images(model), {})
    assert not (tmp_path / "b" / model.name / HW).exists()


def test_incomplete_set_is_refused_and_the_old_set_kept(store, model_and_configs):
    model, configs = model_and_configs
    partial = dict(list(_images(model, seed=5).items())[:1])
    with pytest.raises(BaselineError, match="needs exactly the images"):
        store.write_set(model, reference_config(configs), HW, partial, {})
    prompt = model.prompts[-1]
    assert np.array_equal(store.load(model, HW, prompt, 0, "cpu"), _images(model)[f"{prompt.id}-s0"])


def test_regeneration_replaces_the_whole_set(store, model_and_configs):
    model, configs = model_and_configs
    store.write_set(model, reference_config(configs), HW, _images(model, seed=9), {})
    prompt = model.prompts[0]
    assert np.array_equal(store.load(model, HW, prompt, 0, "cpu"), _images(model, seed=9)[f"{prompt.id}-s0"])
    leftovers = [p.name for p in (store.root / model.name).iterdir() if p.name.startswith(".") and p.suffix != ".lock"]
    assert leftovers == []


def test_interrupted_swap_recovers_the_old_set(store, model_and_configs):
    model, _ = model_and_configs
    folder = store.root / model.name / HW
    os.rename(folder, store.root / model.name / f".{HW}.old-1234")      # killed between the two renames
    prompt = model.prompts[0]
    assert np.array_equal(store.load(model, HW, prompt, 0, "cpu"), _images(model)[f"{prompt.id}-s0"])


def test_missing_baseline_names_the_command_that_makes_it(tmp_path, model_and_configs):
    model, _ = model_and_configs
    with pytest.raises(BaselineError, match="missing baseline .*quantgate regen-baselines --model tiny-flux --device cpu"):
        BaselineStore(tmp_path / "empty").load(model, HW, model.prompts[0], 0, "cpu")


def test_baselines_of_another_hardware_class_are_not_used(store, model_and_configs):
    model, _ = model_and_configs
    with pytest.raises(BaselineError, match=r"on hardware class cuda-sm90; .* made on cpu-x86_64 and are not used"):
        store.load(model, "cuda-sm90", model.prompts[0], 0, "cuda")


def test_baseline_whose_metadata_names_other_hardware_is_not_used(store, model_and_configs):
    model, _ = model_and_configs
    _, meta_path = store.paths(model.name, HW, model.prompts[0].id, 0)
    meta = json.loads(meta_path.read_text())
    meta["hardware"] = "cuda-sm90"
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(BaselineError, match="made on hardware class 'cuda-sm90', not cpu-x86_64: not used"):
        store.load(model, HW, model.prompts[0], 0, "cpu")


def test_changed_image_file_fails_its_checksum(store, model_and_configs):
    model, _ = model_and_configs
    png, _ = store.paths(model.name, HW, model.prompts[0].id, 0)
    png.write_bytes(png.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(BaselineError, match=r"does not match the sha256 .* regen-baselines"):
        store.load(model, HW, model.prompts[0], 0, "cpu")


def test_corrupt_png_names_the_file_and_the_fix(store, model_and_configs):
    model, _ = model_and_configs
    png, meta_path = store.paths(model.name, HW, model.prompts[0].id, 0)
    png.write_bytes(png.read_bytes()[: len(png.read_bytes()) // 2])        # truncated, checksum updated
    meta = json.loads(meta_path.read_text())
    import hashlib

    meta["sha256"] = hashlib.sha256(png.read_bytes()).hexdigest()
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(BaselineError, match=rf"{png.name} is not a readable PNG .* regen-baselines"):
        store.load(model, HW, model.prompts[0], 0, "cpu")


def test_unreadable_metadata_is_reported(store, model_and_configs):
    model, _ = model_and_configs
    _, meta_path = store.paths(model.name, HW, model.prompts[0].id, 0)
    meta_path.write_text("{not json")
    with pytest.raises(BaselineError, match="metadata .* is unreadable"):
        store.load(model, HW, model.prompts[0], 0, "cpu")


def test_baseline_made_with_other_settings_is_stale(store, model_and_configs):
    from dataclasses import replace

    model, _ = model_and_configs
    with pytest.raises(BaselineError, match=r"other settings: steps 4 \(now 8\)"):
        store.load(replace(model, steps=8), HW, model.prompts[0], 0, "cpu")


def test_committed_baselines_match_the_models_settings():
    models = load_models(REPO / "fixtures")
    store = BaselineStore(REPO / "baselines")
    for model in models.values():
        for hw in store.hardware_classes(model.name):
            for prompt, seed in model.images():
                device = "cpu" if hw.startswith("cpu") else "cuda"
                assert store.load(model, hw, prompt, seed, device).shape == (model.height, model.width * model.frames, 3)
