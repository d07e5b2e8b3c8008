"""The plugin as a user meets it: where results go, what a run never touches, bad options."""

import hashlib
import json

from .conftest import REPO, latency_gated_here


def _tree_digest(folder):
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_run_writes_its_results_and_touches_no_baseline(run_gate, baselines_copy, pytester, shared_cache, tmp_path):
    before = _tree_digest(baselines_copy)
    result = run_gate("--qg-config", "bf16", "--qg-config", "quanto-int8", baselines=baselines_copy)
    gated = latency_gated_here()           # else quanto int8's latency ratio is recorded and its test skips
    result.assert_outcomes(passed=12 if gated else 11, skipped=0 if gated else 1)
    assert _tree_digest(baselines_copy) == before
    verdict = "7 passed" if gated else "6 passed, 1 skipped"
    result.stdout.fnmatch_lines([f"*| tiny-flux-quanto-int8-cpu | {verdict} | 0.99* | * | 0.50* |*",
                                 "results: *results-0 (results.json, results.md, images/)"])
    data = json.loads((tmp_path / "results-0" / "results.json").read_text())
    assert [c["case"] for c in data["cases"]] == ["tiny-flux-bf16-cpu", "tiny-flux-quanto-int8-cpu"]
    for c in data["cases"]:     # a case's wall time holds its measured phases
        assert c["wall_s"] > c["start_s"] + c["load_s"] + sum(c["image_seconds"]) + sum(c["denoise_s"])
    assert data["environment"]["packages"]["diffusers"]
    assert (tmp_path / "results-0" / "images" / "tiny-flux-quanto-int8-cpu" / "fox-s0.png").exists()

    again = pytester.runpytest_subprocess(
        str(REPO / "tests" / "gate"), "-p", "no:cacheprovider", "--qg-cache-dir", str(shared_cache),
        "--qg-results-dir", str(tmp_path / "results-0"))
    assert again.ret != 0
    again.stderr.fnmatch_lines(["*already holds a result set; choose a new folder*"])


def test_unknown_configuration_is_named(run_gate):
    result = run_gate("--qg-config", "torchao-int9", "--collect-only")
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*--qg-config 'torchao-int9' is not in *matrix.toml (known: bf16, *"])


def test_missing_baselines_fail_with_the_command_that_makes_them(run_gate, tmp_path):
    result = run_gate("--qg-config", "bf16", "-k", "test_quality", baselines=tmp_path / "no-baselines")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*missing baseline *fox-s0.png; make them with: "
                                 "quantgate regen-baselines --model tiny-flux --device cpu*"])


def test_missing_expectations_name_the_table_to_add(run_gate, fixtures_copy):
    (fixtures_copy / "expectations" / "tiny-flux.toml").unlink()
    result = run_gate("--qg-config", "bf16", "-k", "test_weight_bytes", fixtures=fixtures_copy)
    result.assert_outcomes(failed=1)
    assert ("no expectations for 'bf16' on hardware class cpu-x86_64: add a table "
            '["cpu-x86_64"."bf16"]') in result.stdout.str()


def test_gpu_tier_on_a_machine_without_cuda_skips_with_the_reason(run_gate):
    result = run_gate("-m", "gpu", "--qg-config", "bnb-nf4", "-rs")
    assert result.ret == 0
    outcomes = result.parseoutcomes()
    assert outcomes.get("skipped", 0) > 0 and "passed" not in outcomes and "failed" not in outcomes
    result.stdout.fnmatch_lines(["*needs CUDA: no CUDA device is visible to torch here*"])


def test_gpu_selection_that_leaves_nothing_to_run_exits_zero_without_cuda(run_gate):
    result = run_gate("-m", "gpu and slow")              # no configuration is marked slow
    assert result.ret == 0
    result.stdout.fnmatch_lines(["*-m gpu selected no test and no CUDA device is visible: nothing to run*"])


def test_the_gate_options_are_known_where_the_plugin_is_not_autoloaded(tmp_path):
    """A GPU host may run the checkout with PYTHONPATH=wheels:repo, quantgate not pip-installed: the
    root conftest then loads the plugin by name, before pytest parses --qg-* options. Autoloading
    switched off stands in for the missing entry point."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, PYTEST_DISABLE_PLUGIN_AUTOLOAD="1", PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "pytest_benchmark.plugin", "-p", "no:cacheprovider",
         "tests/gate", "--collect-only", "-q", "--qg-model", "tiny-flux", "--qg-config", "quanto-int8",
         "--qg-results-dir", str(tmp_path / "results")],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "tiny-flux-quanto-int8-cpu" in proc.stdout
