"""The backend seam: each quantization backend is one module behind quantgate.backends.base.Backend,
registered by name, and a package adds its own through the entry point group `quantgate.backends`.
"""

import sys
import textwrap

import pytest

import quantgate.backends as backends
from quantgate.backends import Backend, backend, names
from quantgate.errors import BackendImportError, DataFileError, QuantgateError
from quantgate.matrix import build_cases, load_matrix, load_models, markers

from .test_families import _data_with

BUILT_IN = {"none", "torchao", "quanto", "gguf", "bitsandbytes", "layerwise"}


def test_each_built_in_backend_is_one_module_of_quantgate_backends():
    assert BUILT_IN <= set(names())
    for name in BUILT_IN:
        b = backend(name)
        assert isinstance(b, Backend) and b.name == name
        assert type(b).__module__.startswith("quantgate.backends."), type(b).__module__
    assert {type(backend(n)).__module__ for n in BUILT_IN} == {f"quantgate.backends.{m}" for m in
                                                              ("reference", "torchao", "quanto", "gguf",
                                                               "bitsandbytes", "layerwise")}


def test_each_backends_marker_is_registered_and_carried_by_its_cases():
    assert {m for m in markers() if m not in ("gpu", "slow")} == {"torchao", "quanto", "gguf", "bitsandbytes", "sdnq",
                                                                  "modelopt", "autoround", "nunchaku"}
    from quantgate.matrix import Case
    from tests.unit.conftest import REPO

    models = load_models(REPO / "fixtures")
    configs = {c.id: c for c in load_matrix(REPO / "fixtures", models)}
    assert "torchao" in Case(models["tiny-flux"], configs["torchao-int8wo"], "cpu").markers
    assert "sdnq" in Case(models["tiny-flux"], configs["sdnq-int8"], "cpu").markers
    assert not {"torchao", "quanto", "gguf", "bitsandbytes", "sdnq"} & set(
        Case(models["tiny-flux"], configs["layerwise-fp8"], "cuda").markers)


def test_an_unknown_backend_names_the_registered_ones_and_the_entry_point_group(fixtures_copy):
    load = _data_with(fixtures_copy, "matrix.toml", 'backend = "quanto"', 'backend = "sdnqq"')
    with pytest.raises(DataFileError, match=r"field 'backend': unknown value 'sdnqq' \(choose from: .*torchao; a "
                                            r"package adds a backend through the entry point group 'quantgate.backends'\)"):
        load()


def test_a_single_file_backend_refuses_the_checkpoint_paths(fixtures_copy):
    load = _data_with(fixtures_copy, "matrix.toml", 'paths = ["compile", "lora"]   # no round trip',
                      'paths = ["compile", "lora", "roundtrip"]   # no round trip')
    with pytest.raises(DataFileError, match=r"field 'paths': backend 'gguf' loads its checkpoint from its source "
                                            r"file, so it has no 'roundtrip' path"):
        load()


def test_an_import_failure_names_the_backend_and_its_module():
    class Broken(Backend):
        name = "broken"
        modules = ("quantgate_no_such_module",)

    with pytest.raises(BackendImportError, match=r"backend 'broken' failed to import quantgate_no_such_module: "
                                                 r"ModuleNotFoundError"):
        Broken().import_modules()


PLUGIN = '''
"""A backend of another package: 8-bit torchao weights under a name of its own."""
from quantgate.backends.base import Backend
from quantgate.matrix.schema import Field


class Int8Plugin(Backend):
    name = "int8plugin"
    marker, marker_help = "int8plugin", "uses the plugin's backend"
    modules = ("torchao",)
    settings_fields = (Field("group_size", int, required=False, default=0),)

    def config(self, settings, library):
        from diffusers import TorchAoConfig
        from torchao.quantization import Int8WeightOnlyConfig

        return TorchAoConfig(Int8WeightOnlyConfig())


class NotABackend:
    pass
'''


def _plugin(tmp_path, monkeypatch, entry: str):
    """A package on sys.path whose distribution declares `entry` in the entry point group
    `quantgate.backends`; the registry is read afresh for the test."""
    (tmp_path / "qg_plugin_backend.py").write_text(PLUGIN)
    dist = tmp_path / "qg_plugin_backend-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: qg-plugin-backend\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(textwrap.dedent("""\
        [quantgate.backends]
        {entry}
        """).format(entry=entry))
    monkeypatch.syspath_prepend(str(tmp_path))
    fresh = backends.Registry(backends._REGISTRY.what, backends.ENTRY_POINT_GROUP, backends.BUILT_IN, Backend,
                              backends._REGISTRY.base_name)
    monkeypatch.setattr(backends, "_REGISTRY", fresh)
    monkeypatch.delitem(sys.modules, "qg_plugin_backend", raising=False)


@pytest.fixture
def plugin_package(tmp_path, monkeypatch):
    _plugin(tmp_path, monkeypatch, "int8plugin = qg_plugin_backend:Int8Plugin")


@pytest.fixture
def bad_plugin_package(tmp_path, monkeypatch):
    _plugin(tmp_path, monkeypatch, "notone = qg_plugin_backend:NotABackend")


def test_a_package_adds_a_backend_through_the_entry_point_group(plugin_package, fixtures_copy):
    assert "int8plugin" in names() and BUILT_IN <= set(names())
    assert markers()["int8plugin"] == "uses the plugin's backend"
    with (fixtures_copy / "matrix.toml").open("a") as f:
        f.write('\n[[config]]\nid = "plugin-int8"\nbackend = "int8plugin"\ncomponents = ["denoiser"]\n'
                'settings = { group_size = 64 }\ndevices = ["cpu"]\n')
    models = load_models(fixtures_copy)
    cases = [c for c in build_cases(models, load_matrix(fixtures_copy, models)) if c.config.id == "plugin-int8"]
    assert cases and "int8plugin" in cases[0].markers
    # its own settings schema checks the entry
    _data_with(fixtures_copy, "matrix.toml", "settings = { group_size = 64 }", 'settings = { group_size = "64" }')
    with pytest.raises(DataFileError, match=r"entry 'plugin-int8'.*field 'settings.group_size'"):
        load_matrix(fixtures_copy, models)


def test_an_entry_point_that_is_no_backend_is_refused_by_name(bad_plugin_package):
    with pytest.raises(QuantgateError, match=r"quantization backend 'notone' \(qg_plugin_backend:NotABackend\) is "
                                             r"not a subclass of quantgate.backends.Backend"):
        markers()                        # a session registers every backend's marker first


def test_modelopt_refuses_a_quant_type_that_diffusers_would_quietly_replace_with_fp8():
    assert backend("modelopt").check_settings({"quant_type": "FP8"}) is None
    assert backend("modelopt").check_settings({"quant_type": "INT8_FP8"}) is None
    field, problem = backend("modelopt").check_settings({"quant_type": "FP6"})
    assert field == "quant_type" and "diffusers would quietly use FP8 instead" in problem
    field, problem = backend("modelopt").check_settings({"quant_type": "NVFP4", "block_quantize": 16})
    assert field == "block_quantize" and "needs channel_quantize" in problem


def test_modelopt_quantizes_diffusers_components_only():
    with pytest.raises(ValueError, match="ModelOpt quantizes diffusers components only"):
        backend("modelopt").config({"quant_type": "FP8"}, "transformers")


def test_torchao_names_a_config_outside_torchao_quantization_by_its_module():
    torchao = backend("torchao")
    assert torchao.check_settings({"config": "prototype.mx_formats.NVFP4WeightOnlyConfig"}) is None
    assert torchao.check_settings({"config": "Int8WeightOnly"})[0] == "config"
    qc = torchao.config({"config": "prototype.mx_formats.NVFP4WeightOnlyConfig"}, "diffusers")
    assert type(qc.quant_type).__name__ == "NVFP4WeightOnlyConfig"
    with pytest.raises(ValueError, match=r"torchao \S+ has no config 'NoSuchConfig' in torchao.prototype.mx_formats"):
        torchao.config({"config": "prototype.mx_formats.NoSuchConfig"}, "diffusers")
    with pytest.raises(ValueError, match=r"has no config 'Int8WeightOnlyConfig' in torchao.no_such_module"):
        torchao.config({"config": "no_such_module.Int8WeightOnlyConfig"}, "diffusers")


def test_an_autoround_checkpoint_is_made_again_for_other_settings_or_another_auto_round(tmp_path):
    from quantgate.sources.autoround_checkpoints import checkpoint_path

    model = tmp_path / "tiny-flux-0123"
    base = checkpoint_path(model, {"scheme": "W4A16", "iters": 0}, tmp_path, "0.16.1")
    assert base == checkpoint_path(model, {"scheme": "W4A16", "iters": 0, "kernel": "torch"}, tmp_path, "0.16.1"), \
        "the inference kernel is chosen at load time and does not change the checkpoint"
    assert base != checkpoint_path(model, {"scheme": "W4A16", "iters": 50}, tmp_path, "0.16.1")
    assert base != checkpoint_path(model, {"scheme": "W4A16", "iters": 0}, tmp_path, "0.17.0")
    assert base != checkpoint_path(tmp_path / "other-model", {"scheme": "W4A16", "iters": 0}, tmp_path, "0.16.1")
    assert base.parent == tmp_path / "autoround"


def test_nunchaku_builds_diffusers_nunchaku_lite_config():
    nvfp4 = backend("nunchaku").config({"precision": "nvfp4", "group_size": 16, "targets": ["blocks.0.attn.to_q"]},
                                       "diffusers")
    assert nvfp4.svdq_w4a4["precision"] == "nvfp4" and nvfp4.svdq_w4a4["rank"] == 32 and nvfp4.awq_w4a16 is None
    int4 = backend("nunchaku").config({"precision": "int4", "group_size": 64, "targets": ["proj_out"]}, "diffusers")
    assert int4.awq_w4a16 == {"precision": "int4", "group_size": 64, "targets": ["proj_out"]}
