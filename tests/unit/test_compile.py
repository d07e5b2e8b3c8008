"""The compile path (quantgate.paths.compile): every quantized configuration takes it first; on the
gate, a compiled denoiser that compiles again on every call fails the test that says so, and an
unchanged one passes, identical to eager on a CPU, with its compile time and speed-up recorded."""

from quantgate.matrix import build_cases, load_defaults, load_matrix, load_models
from quantgate.paths import names, path

from .conftest import REPO


def test_the_compile_path_is_registered_and_taken_first():
    assert "compile" in names() and "fullgraph" in path("compile").description
    models = load_models(REPO / "fixtures")
    for case in build_cases(models, load_matrix(REPO / "fixtures", models)):
        if not case.config.is_reference:
            assert case.config.paths[0] == "compile", case.id


def test_the_compiler_backend_and_floor_are_given_for_every_device():
    defaults = load_defaults(REPO / "fixtures")
    assert set(defaults["compile_backend"]) == set(defaults["compile_ssim_min"]) == {"cpu", "cuda"}
    assert defaults["compile_backend"]["cuda"] == "inductor"


def test_a_compile_that_recompiles_every_call_fails_with_the_guard_that_failed(planted_paths):
    stdout, records, _ = planted_paths
    node = "test_denoiser_compiles_in_one_graph_and_never_recompiles[tiny-flux-torchao-int8wo-cpu]"
    assert any(line.startswith("FAILED") and node in line for line in stdout.splitlines()), stdout[-3000:]
    assert "the compiled denoiser compiled again on a call with the same shapes (error_on_recompile)" in stdout
    error = records["torchao-int8wo"]["paths"]["compile"]["errors"]["recompile"]
    assert error.startswith("RecompileError") and "planted_calls" in error, error


def test_an_unchanged_compile_passes_and_is_recorded(planted_paths):
    stdout, records, md = planted_paths
    tests = {t: outcome for t, outcome in records["torchao-float8wo"]["tests"].items() if "compile" in t}
    assert set(tests.values()) == {"passed"} and len(tests) == 3, tests
    taken = records["torchao-float8wo"]["paths"]["compile"]
    assert taken["backend"] == "aot_eager" and taken["graphs"] == 1 and taken["compile_s"] > 0
    assert all(v == {"identical": True} for v in taken["similarity"].values())
    assert "| tiny-flux-torchao-float8wo-cpu | aot_eager | 1 | identical |" in md.split("## Compile")[1]


def _record(speedup: float, backend: str = "inductor"):
    from quantgate.results.record import CaseRecord

    rec = CaseRecord("m-c-cuda", "m", "c", "torchao", "cuda", ["transformer"])
    rec.paths["compile"] = {"backend": backend, "speedup": speedup}
    return rec


def test_compare_names_a_compiled_denoiser_that_gains_less_over_eager():
    from quantgate.results.compare import _compile_speedup

    found = _compile_speedup("m-c-cuda", _record(1.60), _record(1.20), 0.10)
    assert [(f.what, f.detail) for f in found] == [("latency", "torch.compile's speed-up over eager fell by more than 10%")]
    assert (found[0].base, found[0].candidate) == ("1.60x", "1.20x")
    assert _compile_speedup("m-c-cuda", _record(1.60), _record(1.50), 0.10) == []          # within 10%
    assert _compile_speedup("m-c-cpu", _record(1.30, "aot_eager"), _record(0.60, "aot_eager"), 0.10) == []
