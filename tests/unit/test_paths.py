"""Regression paths (quantgate.paths): each is registered, declared per configuration in the matrix,
its tests carry its marker, and a planted regression of it fails the right test with a clear
message. The round trip: a checkpoint that no longer reloads, and one that reloads dequantized."""

import re

import pytest

from quantgate.errors import DataFileError
from quantgate.matrix import build_cases, load_matrix, load_models
from quantgate.paths import names, path

from .conftest import REPO


def test_the_round_trip_is_registered():
    assert "roundtrip" in names()
    assert "safetensors" in path("roundtrip").description


def test_every_quantized_configuration_takes_the_round_trip_but_gguf_and_the_reference():
    models = load_models(REPO / "fixtures")
    for case in build_cases(models, load_matrix(REPO / "fixtures", models)):
        takes = "roundtrip" in case.config.paths
        assert takes == (case.config.backend not in ("none", "gguf")), case.id


def test_an_unknown_path_is_refused_with_the_registered_ones(fixtures_copy):
    matrix = fixtures_copy / "matrix.toml"
    shipped = 'paths = ["compile", "lora", "roundtrip", "previous"]'
    matrix.write_text(matrix.read_text().replace(shipped, shipped.replace("roundtrip", "round-trip"), 1))
    with pytest.raises(DataFileError,
                       match=r"field 'paths': unknown regression path 'round-trip' \(registered: compile, lora, previous, roundtrip\)"):
        load_matrix(fixtures_copy, load_models(fixtures_copy))


def test_a_model_takes_only_the_paths_it_names_and_the_full_size_ones_take_no_lora():
    models = load_models(REPO / "fixtures")
    cases = build_cases(models, load_matrix(REPO / "fixtures", models))
    for case in cases:
        assert case.paths == tuple(p for p in case.config.paths if case.model.takes_path(p)), case.id
    full_size = [c for c in cases if c.model.name == "flux-dev-synth" and not c.config.is_reference]
    assert full_size and all("lora" not in c.paths and "compile" in c.paths for c in full_size)
    assert any("lora" in c.paths for c in cases if c.model.name == "tiny-flux")


def test_a_model_naming_an_unknown_path_is_refused_with_the_registered_ones(fixtures_copy):
    models = fixtures_copy / "models.toml"
    shipped = 'paths = ["compile", "roundtrip", "previous"]'
    assert shipped in models.read_text()
    models.write_text(models.read_text().replace(shipped, shipped.replace("compile", "compiled"), 1))
    with pytest.raises(DataFileError, match=r"field 'paths': unknown regression path 'compiled' \(registered: "):
        load_models(fixtures_copy)


def _failure(stdout: str, test: str, config: str) -> str:
    """The report of `test` of tiny-flux's `config` case, which must have failed."""
    node = f"{test}[tiny-flux-{config}-cpu]"
    assert any(line.startswith("FAILED") and node in line for line in stdout.splitlines()), \
        f"{node} did not fail:\n{stdout[-3000:]}"
    sections = re.split(r"\n_+ (\S+) _+\n", stdout)
    return next(body for head, body in zip(sections[1::2], sections[2::2]) if head == node)


def test_a_checkpoint_that_no_longer_reloads_fails_both_round_trip_tests(planted_paths):
    stdout, records, _ = planted_paths
    for test in ("test_saved_checkpoint_reloads_quantized_as_it_was_saved", "test_reloaded_checkpoint_makes_the_fresh_loads_images"):
        assert "run_path" in _failure(stdout, test, "torchao-int8wo")
    assert ("run_path raised SafetensorError: Error while deserializing header"
            in records["torchao-int8wo"]["paths"]["roundtrip"]["error"])
    assert records["torchao-int8wo"]["status"] == "ok"     # the path's failure is its tests'; the fresh figures stand


def test_a_reload_that_silently_dequantizes_fails_with_the_count_of_quantized_tensors(planted_paths):
    stdout, _, _ = planted_paths
    assert ("the reload of transformer holds 0 quantized tensors, the fresh load 62: the checkpoint reloaded dequantized"
            in _failure(stdout, "test_saved_checkpoint_reloads_quantized_as_it_was_saved", "quanto-int8"))
    assert "the roundtrip path's images are not the fresh load's" in _failure(
        stdout, "test_reloaded_checkpoint_makes_the_fresh_loads_images", "quanto-int8")


def test_an_unchanged_round_trip_passes_and_is_recorded(planted_paths):
    stdout, records, md = planted_paths
    assert "float8wo" not in "".join(line for line in stdout.splitlines() if line.startswith("FAILED"))
    tests = records["torchao-float8wo"]["tests"]
    assert {t: tests[t] for t in tests if t.startswith(("test_saved_checkpoint", "test_reloaded_checkpoint"))} == {
        "test_saved_checkpoint_reloads_quantized_as_it_was_saved": "passed",
        "test_reloaded_checkpoint_makes_the_fresh_loads_images": "passed"}
    trip = records["torchao-float8wo"]["paths"]["roundtrip"]
    assert trip["files"] == {"transformer": 3} and trip["disk_bytes"] > 0
    assert all(v == {"identical": True} for v in trip["similarity"].values())
    assert "| tiny-flux-torchao-float8wo-cpu | identical | same | 3 |" in md


def test_a_path_that_would_not_fit_its_scratch_folder_is_refused_before_it_writes(tmp_path, monkeypatch):
    """qwen-image-synth's int8 transformer (20.5 GB) met 10 GB of free disk on the H200 and failed
    mid-save with 'No space left on device'; the gate now says so before it writes anything."""
    import shutil
    from collections import namedtuple

    from quantgate.case.runner import _check_scratch
    from quantgate.errors import ScratchTooSmall

    models = load_models(REPO / "fixtures")
    case = next(c for c in build_cases(models, load_matrix(REPO / "fixtures", models))
                if c.id == "tiny-flux-torchao-int8wo-cpu")
    weights = {"transformer": {"bytes": 20 * 2**30}, "vae": {"bytes": 5 * 2**30}}   # the vae is not saved
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda _: usage(64 * 2**30, 54 * 2**30, 10 * 2**30))
    with pytest.raises(ScratchTooSmall, match=r"tiny-flux-torchao-int8wo-cpu: the roundtrip path writes about 21\.00 GiB "
                       r"into .*, which has 10\.00 GiB free; point --qg-scratch-dir \(or \$QUANTGATE_SCRATCH_DIR\) at a "
                       r"larger disk .* -m \"not roundtrip\""):
        _check_scratch("roundtrip", tmp_path, weights, case)
    weights["transformer"]["bytes"] = 9 * 2**30
    _check_scratch("roundtrip", tmp_path, weights, case)        # 9.45 GiB fits in 10


def test_a_known_failure_of_the_round_trip_holds_the_error_its_path_raised(planted_paths):
    """bitsandbytes 4-bit's sharded reload raises in the path (H200): a test-level known failure
    takes the error the path raised, not only an assertion, when its message matches."""
    stdout, records, _ = planted_paths
    for test in ("test_saved_checkpoint_reloads_quantized_as_it_was_saved", "test_reloaded_checkpoint_makes_the_fresh_loads_images"):
        assert f"XFAIL tests/gate/test_roundtrip.py::{test}[tiny-flux-quanto-float8-cpu]" in stdout
    tests = records["quanto-float8"]["tests"]
    assert {t: tests[t] for t in tests if t.startswith(("test_saved_checkpoint", "test_reloaded_checkpoint"))} == dict.fromkeys(
        ("test_saved_checkpoint_reloads_quantized_as_it_was_saved", "test_reloaded_checkpoint_makes_the_fresh_loads_images"),
        "xfailed")
