"""The matrix, models and expectations files: what is accepted, and what each mistake is told."""

import re

import pytest

from quantgate.errors import DataFileError
from quantgate.matrix import build_cases, load_expectations, load_matrix, load_models

from .conftest import REPO


def _load(fixtures):
    models = load_models(fixtures)
    return models, load_matrix(fixtures, models)


def test_shipped_fixtures_are_valid():
    models, configs = _load(REPO / "fixtures")
    cases = build_cases(models, configs)
    assert cases[0].config.is_reference, "the reference must run first: it is every ratio's yardstick"
    ids = [c.id for c in cases]
    assert len(ids) == len(set(ids))
    assert all(re.fullmatch(r"[a-z0-9_.-]+", i) for i in ids)
    for m in models:
        load_expectations(REPO / "fixtures", m, configs)


def test_cpu_tier_covers_the_required_configurations():
    _, configs = _load(REPO / "fixtures")
    cpu = {c.id for c in configs if "cpu" in c.devices}
    assert {"bf16", "torchao-int8wo", "torchao-float8wo", "torchao-int8dq", "torchao-int4wo-intx",
            "quanto-int8", "quanto-int4", "quanto-float8", "gguf-q8_0", "gguf-q5_1", "gguf-q4_0"} <= cpu
    pipeline = [c for c in configs if c.route == "pipeline"]
    assert any({"denoiser", "text_encoder_big"} <= set(c.components) for c in pipeline)


def test_case_ids_read_model_backend_setting_device():
    models, configs = _load(REPO / "fixtures")
    assert "tiny-flux-torchao-int8wo-cpu" in [c.id for c in build_cases(models, configs)]


def _append_config(fixtures, text):
    path = fixtures / "matrix.toml"
    path.write_text(path.read_text() + "\n[[config]]\n" + text)


BAD_CONFIGS = [
    ('id = "x-bad"\nbackend = "torchaoo"\ncomponents = ["transformer"]\ndevices = ["cpu"]',
     "x-bad", "backend", "unknown value 'torchaoo'"),
    ('id = "x-bad"\nbackend = "quanto"\ncomponents = ["transformer"]\ndevices = ["cpu"]',
     "x-bad", "settings.weights_dtype", "missing"),
    ('id = "x-bad"\nbackend = "quanto"\ncomponents = "transformer"\ndevices = ["cpu"]\nsettings = {weights_dtype="int8"}',
     "x-bad", "components", "must be a list"),
    ('id = "x-bad"\nbackend = "quanto"\ncomponents = ["Unet!"]\ndevices = ["cpu"]\nsettings = {weights_dtype="int8"}',
     "x-bad", "components", "is not a component name"),
    ('id = "x-bad"\nbackend = "quanto"\ncomponents = ["transformer"]\ndevices = ["tpu"]\nsettings = {weights_dtype="int8"}',
     "x-bad", "devices", "unknown value 'tpu'"),
    ('id = "x-bad"\nbackend = "quanto"\ncomponents = ["transformer"]\ndevices = ["cpu"]\nsettings = {weights_dtype="int3"}',
     "x-bad", "settings.weights_dtype", "unknown value 'int3'"),
    ('id = "x-bad"\nbackend = "quanto"\ncomponents = ["transformer"]\ndevices = ["cpu"]\nsettings = {weights_dtype="int8"}\nmarkers = ["fast"]',
     "x-bad", "markers", "unknown marker 'fast'"),
    ('id = "x-bad"\nbackend = "gguf"\ncomponents = ["text_encoder_2"]\ndevices = ["cpu"]\nsettings = {quant_type="Q8_0"}',
     "x-bad", "components", "denoiser only"),
    ('id = "x-bad"\nbackend = "bitsandbytes"\ncomponents = ["transformer"]\ndevices = ["cuda"]',
     "x-bad", "settings.load_in_4bit", "exactly one"),
    ('id = "x-bad"\nbackend = "torchao"\ncomponents = ["transformer"]\ndevices = ["cpu"]\nsettings = {config="int8wo"}',
     "x-bad", "settings.config", "torchao.quantization config class"),
    ('id = "x-bad"\nbackend = "torchao"\ncomponents = ["transformer"]\ndevices = ["cpu"]\nsettings = {config="Int8WeightOnlyConfig"}\nmodels = ["flux-pro"]',
     "x-bad", "models", "unknown model 'flux-pro'"),
    ('id = "x-bad"\nbackend = "torchao"\ncomponents = ["transformer"]\ndevices = ["cpu"]\nsettings = {config="Int8WeightOnlyConfig"}\ncolour = "red"',
     "x-bad", "colour", "unknown field"),
    ('id = "torchao-int8wo"\nbackend = "torchao"\ncomponents = ["transformer"]\ndevices = ["cpu"]\nsettings = {config="Int8WeightOnlyConfig"}',
     "torchao-int8wo", "id", "repeated"),
    ('id = "Bad Id"\nbackend = "none"\ncomponents = []\ndevices = ["cpu"]',
     "Bad Id", "id", "lower-case words"),
    ('id = "bf16-again"\nbackend = "none"\ncomponents = []\ndevices = ["cpu"]',
     None, "backend", "exactly one configuration must be the reference"),
    ('backend = "none"\ncomponents = []\ndevices = ["cpu"]',
     "#", "id", "missing"),
    ('id = "x-bad"\nbackend = "quanto"\ncomponents = ["transformer"]\ndevices = ["cpu"]\nsettings = {weights_dtype="int8"}\ntimeout_s = "long"',
     "x-bad", "timeout_s", "must be a number"),
]


@pytest.mark.parametrize("entry, name, field, problem", BAD_CONFIGS,
                         ids=[f"{b[2]}-{b[3][:20]}" for b in BAD_CONFIGS])
def test_malformed_matrix_entry_is_named_with_file_entry_and_field(fixtures_copy, entry, name, field, problem):
    _append_config(fixtures_copy, entry)
    with pytest.raises(DataFileError) as info:
        _load(fixtures_copy)
    err = info.value
    assert err.path.endswith("matrix.toml")
    if name is not None:
        assert err.entry.startswith(name)
    assert err.field == field
    assert problem in err.problem
    assert str(err).startswith(str(fixtures_copy / "matrix.toml"))


def test_invalid_toml_names_the_file(fixtures_copy):
    (fixtures_copy / "matrix.toml").write_text("[[config]\nid = ")
    with pytest.raises(DataFileError, match=r"matrix\.toml: not valid TOML"):
        _load(fixtures_copy)


def test_model_with_unknown_prompt_is_refused(fixtures_copy):
    path = fixtures_copy / "models.toml"
    path.write_text(path.read_text().replace('prompts = ["fox", "lighthouse"]', 'prompts = ["fox", "owl"]'))
    with pytest.raises(DataFileError, match=r"entry 'tiny-flux': field 'prompts': unknown prompt 'owl'"):
        load_models(fixtures_copy)


def test_model_size_must_fit_flux_packing(fixtures_copy):
    path = fixtures_copy / "models.toml"
    path.write_text(path.read_text().replace("height = 256", "height = 250"))
    with pytest.raises(DataFileError, match=r"field 'height': must be a multiple of 16"):
        load_models(fixtures_copy)


def test_expectations_for_an_unknown_configuration_are_refused(fixtures_copy):
    path = fixtures_copy / "expectations" / "tiny-flux.toml"
    path.write_text(path.read_text() + '\n["cpu-x86_64"."torchao-int9"]\nssim_min = 0.9\n')
    models, configs = _load(fixtures_copy)
    with pytest.raises(DataFileError, match=r"entry 'cpu-x86_64.torchao-int9': unknown configuration"):
        load_expectations(fixtures_copy, "tiny-flux", configs)


def test_mistyped_expectation_is_refused(fixtures_copy):
    path = fixtures_copy / "expectations" / "tiny-flux.toml"
    text = path.read_text()
    start = text.index('["cpu-x86_64"."bf16"]')
    path.write_text(text[:start] + re.sub(r"ssim_min = [\d.]+", 'ssim_min = "high"', text[start:], count=1))
    models, configs = _load(fixtures_copy)
    with pytest.raises(DataFileError, match=r"entry 'cpu-x86_64.bf16': field 'ssim_min': must be a number"):
        load_expectations(fixtures_copy, "tiny-flux", configs)


def test_malformed_matrix_is_an_error_at_collection(run_gate, fixtures_copy):
    _append_config(fixtures_copy, 'id = "x-bad"\nbackend = "torchaoo"\ncomponents = ["transformer"]\ndevices = ["cpu"]')
    result = run_gate("--collect-only", fixtures=fixtures_copy)
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*matrix.toml: entry 'x-bad': field 'backend': unknown value 'torchaoo'*"])


def test_load_on_device_needs_a_quantizing_backend(fixtures_copy):
    _append_config(fixtures_copy, 'id = "x-bad"\nbackend = "gguf"\ncomponents = ["denoiser"]\n'
                                  'devices = ["cuda"]\nsettings = {quant_type="Q8_0"}\nload_on = "device"')
    with pytest.raises(DataFileError, match=r"field 'load_on': 'device' loads quantized components .* needs a torchao, quanto or bitsandbytes"):
        _load(fixtures_copy)


def test_load_on_device_is_for_cuda_entries(fixtures_copy):
    _append_config(fixtures_copy, 'id = "x-bad"\nbackend = "torchao"\ncomponents = ["transformer"]\n'
                                  'devices = ["cpu"]\nsettings = {config="Int8WeightOnlyConfig"}\nload_on = "device"')
    with pytest.raises(DataFileError, match=r"field 'load_on': 'device' is for CUDA entries"):
        _load(fixtures_copy)


def test_load_on_device_takes_the_pipeline_route_too(fixtures_copy):
    _append_config(fixtures_copy, 'id = "x-quanto-dev"\nbackend = "quanto"\nroute = "pipeline"\n'
                                  'components = ["transformer", "text_encoder_2"]\ndevices = ["cuda"]\n'
                                  'settings = {weights_dtype="float8"}\nload_on = "device"')
    _, matrix = _load(fixtures_copy)
    configs = {c.id: c for c in matrix}
    assert configs["x-quanto-dev"].load_on == "device"
    assert configs["x-quanto-dev"].route == "pipeline"
