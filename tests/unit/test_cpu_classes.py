"""A CPU's instruction set is part of what a figure depends on.

The CPU class (capability, native BF16, AMX) is recorded with every result and keys what differs
between CPUs (latency ceilings, and floors where measured to differ); the VAE runs in float32 on every
CPU, for the reference and every configuration alike; timed calls run on one thread.
"""

import json
import platform
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest

from quantgate.case.session import CaseSession
from quantgate.errors import BaselineError, DataFileError
from quantgate.hardware import cpu_class, cpu_features
from quantgate.matrix import (
    Case,
    Expectation,
    expectation_classes,
    expectation_for,
    load_matrix,
    load_models,
    reference_config,
)
from quantgate.sources.cache import ensure_synthetic

from .conftest import REPO

x86_only = pytest.mark.skipif(platform.machine() != "x86_64", reason="ATen's AVX2 kernels exist on x86-64 only")


def _features_under(env: dict) -> dict:
    code = "import json; from quantgate.hardware import cpu_features, cpu_class; " \
           "f = cpu_features(); f['class'] = cpu_class(f); print(json.dumps(f))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**__import__("os").environ, **env})
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_class_names_the_instruction_set_torch_really_uses():
    f = cpu_features()
    name = cpu_class(f)
    assert name.startswith(f"cpu-{platform.machine()}-{f['capability'].lower()}")
    assert name.endswith(("-amx", "-bf16")) == f["bf16_native"]


@x86_only
def test_limiting_torch_and_onednn_to_avx2_gives_the_avx2_class_without_native_bf16():
    f = _features_under({"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"})
    assert f["capability"] == "AVX2" and f["class"] == "cpu-x86_64-avx2"
    assert f["bf16_native"] is False and f["onednn_bf16"] is False


def test_every_result_records_the_cpu_class_and_its_bf16_features(tiny_and_configs, shared_cache):
    tiny, configs = tiny_and_configs
    info = _session(tiny, configs["bf16"], shared_cache).load()
    env = info["environment"]
    assert env["cpu_class"] == cpu_class()
    assert set(env["cpu_features"]) == {"capability", "avx512_bf16", "amx", "onednn_bf16", "bf16_native"}


def _exp(**fields) -> Expectation:
    base = {name: None for name in Expectation.__dataclass_fields__}
    return Expectation(**{**base, "basis": "", **fields})


def test_a_cpu_class_table_overrides_the_hardware_class_table_field_by_field():
    tables = {"cpu-x86_64": {"q": _exp(ssim_min=0.99, weight_bytes_max=100, basis="general")},
              "cpu-x86_64-avx2": {"q": _exp(latency_ratio_max=0.6, ssim_min=0.98, basis="avx2")}}
    got = expectation_for(tables, ["cpu-x86_64", "cpu-x86_64-avx2"], "q")
    assert (got.ssim_min, got.weight_bytes_max, got.latency_ratio_max) == (0.98, 100, 0.6)
    assert got.basis == "general; avx2"
    other = expectation_for(tables, ["cpu-x86_64", "cpu-x86_64-avx512-amx"], "q")
    assert other.latency_ratio_max is None and other.ssim_min == 0.99      # an unmeasured class: not gated
    assert expectation_for(tables, ["cuda-sm90"], "q") is None


def test_only_cpu_records_are_judged_by_their_cpu_class():
    assert expectation_classes("cpu-x86_64", {"device": "cpu", "cpu_class": "cpu-x86_64-avx2"}) == \
        ["cpu-x86_64", "cpu-x86_64-avx2"]
    assert expectation_classes("cuda-sm90", {"device": "cuda", "cpu_class": "cpu-x86_64-avx2"}) == ["cuda-sm90"]


def test_the_shipped_latency_ceilings_are_keyed_by_cpu_class():
    import tomllib

    data = tomllib.loads((REPO / "fixtures" / "expectations" / "tiny-flux.toml").read_text())
    assert not any("latency_ratio_max" in entry for entry in data["cpu-x86_64"].values()), \
        "latency ceilings belong to a CPU class, not to every x86-64 CPU"
    assert "cpu-x86_64-avx512-bf16" in data
    # AVX2 was measured only with the kernels limited to AVX2 on an AVX-512 machine: its ratios are in
    # docs/cpu-classes.md, not here, until an AVX2 machine measures them
    assert "cpu-x86_64-avx2" not in data


@pytest.fixture(scope="module")
def tiny_and_configs():
    models = load_models(REPO / "fixtures")
    return models["tiny-flux"], {c.id: c for c in load_matrix(REPO / "fixtures", models)}


def _session(model, config, cache) -> CaseSession:
    return CaseSession(Case(model, config, "cpu"), str(ensure_synthetic(model, cache)), str(cache))


def test_the_vae_decodes_in_float32_on_a_cpu_for_the_reference_and_a_quantized_case(tiny_and_configs, shared_cache):
    tiny, configs = tiny_and_configs
    assert tiny.cpu_float32 == ("vae",)
    for config in (configs["bf16"], configs["torchao-int8wo"]):
        session = _session(tiny, config, shared_cache)
        info = session.load()
        assert info["dtypes"]["vae"] == "float32"
        assert info["dtypes"]["transformer"] == "bfloat16"
        image = session.generate()["images"]["fox-s0"]
        assert image.dtype == np.uint8 and image.shape == (tiny.height, tiny.width, 3)


def test_a_component_in_cpu_float32_that_a_cpu_configuration_quantizes_is_refused(fixtures_copy):
    path = fixtures_copy / "matrix.toml"
    path.write_text(path.read_text() + '\n[[config]]\nid = "torchao-int8wo-vae"\nbackend = "torchao"\n'
                    'components = ["vae"]\nsettings = { config = "Int8WeightOnlyConfig" }\ndevices = ["cpu"]\n')
    with pytest.raises(DataFileError, match=r"models.toml.*tiny-flux.*cpu_float32.*'vae' runs in float32 on the "
                                            r"CPU, but configuration 'torchao-int8wo-vae'"):
        load_matrix(fixtures_copy, load_models(fixtures_copy))


def test_a_baseline_made_with_a_bf16_vae_is_stale_for_a_float32_vae(tmp_path, tiny_and_configs):
    from quantgate.results.baselines import BaselineStore

    tiny, configs = tiny_and_configs
    store = BaselineStore(tmp_path)
    images = {f"{p.id}-s{s}": np.zeros((tiny.height, tiny.width, 3), np.uint8) for p, s in tiny.images()}
    bf16_vae = replace(tiny, cpu_float32=())
    store.write_set(bf16_vae, reference_config(list(configs.values())), "cpu-x86_64", images, {"device": "cpu"})
    with pytest.raises(BaselineError, match=r"float32_components \[\] \(now \['vae'\]\).*regen-baselines"):
        store.load(tiny, "cpu-x86_64", tiny.prompts[0], tiny.seeds[0], "cpu")
    assert store.load(bf16_vae, "cpu-x86_64", tiny.prompts[0], tiny.seeds[0], "cpu").shape == images["fox-s0"].shape


def test_a_cpu_case_runs_on_the_models_threads_and_times_wall_and_cpu_seconds(tiny_and_configs, shared_cache):
    import torch

    tiny, configs = tiny_and_configs
    assert tiny.cpu_threads == 1 and tiny.timed_steps == 1
    before = torch.get_num_threads()
    try:
        session = _session(tiny, configs["bf16"], shared_cache)
        assert torch.get_num_threads() == 1
        info = session.load()
        assert info["environment"]["torch_threads"] == 1
        steps = []
        original = session.pipe.transformer.forward
        session.pipe.transformer.forward = lambda *a, **k: (steps.append(1), original(*a, **k))[1]
        timed = session.denoise()
        assert timed["wall_s"] > 0 and timed["cpu_s"] > 0 and len(steps) == tiny.timed_steps
    finally:
        torch.set_num_threads(before)
