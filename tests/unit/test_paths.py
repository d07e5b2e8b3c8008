"""Regression paths (quantgate.paths): each is registered, declared per configuration in the matrix,
its tests carry its marker, and a planted regression of it fails the right test with a clear
message. The round trip: a checkpoint that no longer reloads, and one that reloads dequantized."""

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
    matrix.write_text(matrix.read_text().replace('paths = ["roundtrip"]', 'paths = ["round-trip"]', 1))
    with pytest.raises(DataFileError, match=r"field 'paths': unknown regression path 'round-trip' \(registered: roundtrip"):
        load_matrix(fixtures_copy, load_models(fixtures_copy))


def test_a_checkpoint_that_no_longer_reloads_fails_both_round_trip_tests(run_gate, planted):
    result = run_gate("--qg-case-session", "planted_sessions:Planted", "--qg-model", "tiny-flux",
                      "--qg-config", "torchao-int8wo", "-m", "not gpu and roundtrip", env=planted("torchao-int8wo=unreadable"))
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(["*test_saved_checkpoint_reloads_quantized_as_it_was_saved*",
                                 "*run_path*safetensors*"])


def test_a_reload_that_silently_dequantizes_fails_with_the_count_of_quantized_tensors(run_gate, planted):
    result = run_gate("--qg-case-session", "planted_sessions:Planted", "--qg-model", "tiny-flux",
                      "--qg-config", "torchao-int8wo", "-m", "not gpu and roundtrip", env=planted("torchao-int8wo=dequantize"))
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(["*the reload of transformer holds 0 quantized tensors, the fresh load 62: "
                                 "the checkpoint reloaded dequantized*",
                                 "*the roundtrip path's images are not the fresh load's*"])


def test_an_unchanged_round_trip_passes_and_is_recorded(run_gate):
    import json

    result = run_gate("--qg-model", "tiny-flux", "--qg-config", "quanto-int8", "-m", "not gpu and roundtrip")
    result.assert_outcomes(passed=2)
    rec = {c["config"]: c for c in json.loads((run_gate.results_dirs[-1] / "results.json").read_text())["cases"]}
    trip = rec["quanto-int8"]["paths"]["roundtrip"]
    assert trip["files"] == {"transformer": 3} and trip["disk_bytes"] > 0
    assert all(v == {"identical": True} for v in trip["similarity"].values())
    assert "## Round trip" in (run_gate.results_dirs[-1] / "results.md").read_text()
