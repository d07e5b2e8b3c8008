"""The model cache: a partial build never looks complete; a missing checkpoint says where it looked."""

import json
from dataclasses import replace

import pytest

from quantgate.errors import QuantgateError
from quantgate.matrix import load_models
from quantgate.sources.cache import BUILD_META, default_cache_root, ensure_synthetic, model_dir, synthetic_dir

from .conftest import REPO


@pytest.fixture
def tiny():
    return load_models(REPO / "fixtures")["tiny-flux"]


def test_complete_build_is_reused(tiny, tmp_path):
    first = ensure_synthetic(tiny, tmp_path)
    stamp = (first / BUILD_META).stat().st_mtime_ns
    assert ensure_synthetic(tiny, tmp_path) == first
    assert (first / BUILD_META).stat().st_mtime_ns == stamp


def test_build_without_metadata_is_rebuilt(tiny, tmp_path):
    folder = ensure_synthetic(tiny, tmp_path)
    (folder / BUILD_META).unlink()                       # as if killed before the metadata was written
    ensure_synthetic(tiny, tmp_path)
    assert json.loads((folder / BUILD_META).read_text())["model"] == "tiny-flux"


def test_truncated_weight_file_is_rebuilt(tiny, tmp_path):
    folder = ensure_synthetic(tiny, tmp_path)
    weights = folder / "transformer" / "diffusion_pytorch_model.safetensors"
    good = weights.read_bytes()
    weights.write_bytes(good[: len(good) // 2])
    ensure_synthetic(tiny, tmp_path)
    assert weights.read_bytes() == good


def test_no_temporary_folders_are_left(tiny, tmp_path):
    ensure_synthetic(tiny, tmp_path)
    # only the build's lock file (kept: removing lock files races with their next user)
    assert [p.name for p in (tmp_path / "models").iterdir() if p.name.startswith(".") and p.suffix != ".lock"] == []


def test_changed_config_gets_its_own_folder(tiny, tmp_path):
    assert synthetic_dir(tiny, tmp_path) != synthetic_dir(replace(tiny, seed=1), tmp_path)


def test_cache_root_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("QUANTGATE_CACHE_DIR", str(tmp_path / "c"))
    assert default_cache_root() == tmp_path / "c"


def test_missing_checkpoint_names_where_it_looked(tiny, tmp_path):
    spec = replace(tiny, source="checkpoint", path=str(tmp_path / "FLUX.1-dev"))
    with pytest.raises(QuantgateError, match=r"model .tiny-flux. \(path in models.toml\): checkpoint .*: no folder at .*FLUX\.1-dev"):
        model_dir(spec, tmp_path)
