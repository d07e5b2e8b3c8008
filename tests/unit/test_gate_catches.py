"""The gate catches what it exists for: each planted regression fails the right test, with the
right message, and nothing else. Each test runs the gate itself in a subprocess (pytester)."""

import hashlib
import json
import os
import re
import signal
from dataclasses import replace

import pytest

from quantgate.backends import backend as backend_rules
from quantgate.case.session import CaseSession
from quantgate.matrix import Case, load_matrix, load_models, reference_config
from quantgate.sources.cache import ensure_synthetic

from .conftest import REPO, latency_gated_here

TRANSFORMER_MODULES = ["transformer_blocks", "single_transformer_blocks", "x_embedder", "context_embedder",
                       "time_text_embed", "norm_out", "proj_out"]


def _append_config(fixtures, text):
    path = fixtures / "matrix.toml"
    path.write_text(path.read_text() + "\n[[config]]\n" + text + "\n")


NOOP_SETTINGS = {          # each backend's settings that leave every transformer module unquantized
    "torchao": 'config = "Int8WeightOnlyConfig"',
    "sdnq": 'weights_dtype = "int8"',
    "modelopt": 'quant_type = "INT8"',
    "autoround": 'scheme = "W4A16", iters = 0',     # the suite makes the checkpoint: auto-round leaves them BF16
}


@pytest.mark.parametrize("backend", sorted(NOOP_SETTINGS))
def test_quantization_that_silently_does_nothing_fails_the_memory_test(run_gate, fixtures_copy, backend):
    _append_config(fixtures_copy, f'''id = "{backend}-noop"
backend = "{backend}"
components = ["{"denoiser" if backend_rules(backend).denoiser_only else "transformer"}"]
settings = {{ {NOOP_SETTINGS[backend]}, modules_to_not_convert = {json.dumps(TRANSFORMER_MODULES)} }}
devices = ["cpu"]''')
    result = run_gate("--qg-config", f"{backend}-noop", "-k", "test_quantization_takes_effect",
                      fixtures=fixtures_copy)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*quantization did not take effect on transformer (limit 98% of BF16's bytes): "
                                 "transformer: it holds * bytes, 100.0% of its * BF16 bytes; 0 of * tensors are quantized*"])


@pytest.fixture(scope="session")
def fox_seed_1(shared_cache):
    """tiny-flux's first prompt at seed 1 (its baseline is seed 0). Session-scoped so that it is
    made before pytester snapshots sys.modules: modules imported inside a pytester test are
    dropped afterwards, and torch registers some operator libraries only once per process."""
    model = load_models(REPO / "fixtures")["tiny-flux"]
    reference = reference_config(load_matrix(REPO / "fixtures", {model.name: model}))
    other = replace(model, seeds=(1,))
    session = CaseSession(Case(other, reference, "cpu"), str(ensure_synthetic(model, shared_cache)),
                          str(shared_cache))
    session.load()
    return session.generate()["images"][f"{model.prompts[0].id}-s1"]


def test_baseline_replaced_by_another_seeds_image_fails_the_quality_tests(fox_seed_1, run_gate, baselines_copy):
    from PIL import Image

    model = load_models(REPO / "fixtures")["tiny-flux"]
    png = baselines_copy / model.name / "cpu-x86_64" / f"{model.prompts[0].id}-s0.png"
    Image.fromarray(fox_seed_1).save(png)
    meta_path = png.with_suffix(".json")
    meta = json.loads(meta_path.read_text())
    meta["sha256"] = hashlib.sha256(png.read_bytes()).hexdigest()     # a well-formed, wrong baseline
    meta_path.write_text(json.dumps(meta))
    result = run_gate("--qg-config", "bf16", "--qg-config", "quanto-int8", "-k", "test_quality",
                      baselines=baselines_copy)
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(["*image drifted from the BF16 baseline: fox-s0: SSIM 0.* < floor *"])   # figures first
    assert "lighthouse-s0: SSIM" not in result.stdout.str()


@pytest.mark.parametrize("config, backend, package, module, failed", [
    ("gguf-q8_0", "gguf", "gguf", "gguf", 6),
    ("sdnq-int8", "sdnq", "sdnq", "sdnq", 6),
    ("modelopt-int8", "modelopt", "modelopt", "modelopt.torch.quantization", 6),
    ("autoround-w4a16-rtn", "autoround", "auto_round", "auto_round", 6),
])
def test_backend_that_cannot_be_imported_fails_rather_than_skips(run_gate, tmp_path, config, backend, package, module, failed):
    broken = tmp_path / "broken" / package
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text(f'raise ImportError("planted: this {package} release is broken")\n')
    env = {"PYTHONPATH": str(tmp_path / "broken")}
    result = run_gate("--qg-config", config, env=env)
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed") == failed and "skipped" not in outcomes, outcomes   # every test that needs it loaded
    result.stdout.fnmatch_lines([f"*backend '{backend}' failed to import {module}: ImportError: planted*"])


def _set_field(fixtures, config_id: str, line: str) -> None:
    """Add `line` to the matrix entry `config_id`."""
    path = fixtures / "matrix.toml"
    text = path.read_text()
    anchor = f'id = "{config_id}"\n'
    assert anchor in text
    path.write_text(text.replace(anchor, anchor + line + "\n", 1))


SESSION = ("--qg-case-session", "planted_sessions:Planted")


def _configs(*ids):
    return [a for c in ids for a in ("--qg-config", c)]


def test_crash_abort_hang_and_out_of_memory_each_fail_only_their_case(run_gate, fixtures_copy, planted):
    _set_field(fixtures_copy, "quanto-float8", "timeout_s = 5")
    _set_field(fixtures_copy, "torchao-float8wo", "memory_limit_gib = 1")
    # (no quanto int4 here: a session with one starts its C++ extension's build, about 30 s)
    configs = _configs("torchao-int8wo", "torchao-float8wo", "quanto-int8", "quanto-float8", "gguf-q8_0")
    result = run_gate(*configs, "-k", "test_backend_imports or test_weight_bytes", *SESSION, fixtures=fixtures_copy,
                      env=planted("quanto-int8=segfault", "torchao-int8wo=abort", "quanto-float8=hang",
                                  "torchao-float8wo=oom"))
    result.assert_outcomes(passed=2, failed=8)   # the faulty cases' tests fail; the case after them passes
    result.stdout.fnmatch_lines([        # in matrix order
        "*tiny-flux-torchao-int8wo-cpu: the case's process was killed by SIGABRT during 'load' (backend torchao)*",
        "*tiny-flux-torchao-float8wo-cpu: load: out of memory on cpu: asked for 2.00 GiB; limit 1.00 GiB "
        "(memory_limit_gib); * available of * on the host*",
        "*tiny-flux-quanto-int8-cpu: the case's process was killed by SIGSEGV during 'load' (backend quanto)*",
        "*tiny-flux-quanto-float8-cpu: exceeded the case's budget of 5 s (timeout_s in matrix.toml) during 'load'*",
    ])
    records = {r["case"]: r for r in json.loads((run_gate.results_dirs[-1] / "results.json").read_text())["cases"]}
    assert records["tiny-flux-quanto-int8-cpu"]["status"] == "crashed"
    assert records["tiny-flux-quanto-float8-cpu"]["status"] == "timed out"
    assert records["tiny-flux-torchao-float8wo-cpu"]["status"] == "out of memory"
    after = records["tiny-flux-gguf-q8_0-cpu"]
    assert after["status"] == "ok"
    clean = {r["case"]: r for r in json.loads((REPO / "results" / "tiny-flux-cpu-x86_64.json").read_text())["cases"]}
    assert after["weights"] == clean["tiny-flux-gguf-q8_0-cpu"]["weights"]    # as in a clean run


def test_a_process_left_running_by_a_case_fails_that_case(run_gate, planted):
    result = run_gate(*_configs("quanto-int8"), "-k", "test_backend_imports or test_case_leaves", *SESSION,
                      env=planted("quanto-int8=orphan"))
    pids = {int(p) for p in re.findall(r"still run after its own process ended: pid (\d+)", result.stdout.str())}
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    result.assert_outcomes(passed=1, failed=1)                # quanto-int8 loaded, but left a process behind
    result.stdout.fnmatch_lines(["*tiny-flux-quanto-int8-cpu left something behind when it closed:*",
                                 "*1 process(es) it started still run after its own process ended: pid *"])
    assert len(pids) == 1


def _failed_tests(out, case):
    cases = {c["case"]: c for c in json.loads((out / "results.json").read_text())["cases"]}
    return sorted(t for t, outcome in cases[case]["tests"].items() if outcome == "failed")


def test_planted_memory_growth_fails_the_weight_ceiling(planted_run):
    out, done = planted_run            # torchao int8 is also planted to slow down: its ratio test fails too
    assert _failed_tests(out, "tiny-flux-torchao-int8wo-cpu") == ["test_latency_ratio_to_bf16_within_ceiling",
                                                                  "test_weight_bytes_within_ceiling"]
    assert re.search(r"memory grew: transformer holds [\d,]+ bytes, over the ceiling of [\d,]+ \(\+\d+\.\d%\)",
                     done.stdout)


def test_planted_2x_slowdown_fails_the_latency_ratio_beside_a_busy_neighbour(planted_run):
    out, done = planted_run
    found = re.search(r"denoising slowed down: [\d.]+ ms of CPU time per step \(fastest call\) is ([\d.]+)x BF16's "
                      r"[\d.]+ ms of CPU time in this session, over the ceiling of ([\d.]+)x", done.stdout)
    assert found, done.stdout[-3000:]
    assert float(found.group(1)) > float(found.group(2))
    assert "test_latency_ratio_to_bf16_within_ceiling" not in _failed_tests(out, "tiny-flux-quanto-int8-cpu")
    assert _failed_tests(out, "tiny-flux-quanto-int8-cpu") == ["test_quantized_image_close_to_bf16_baseline"]
    assert _failed_tests(out, "tiny-flux-bf16-cpu") == []


def test_an_unchanged_stack_passes_three_times_in_a_row_beside_a_busy_neighbour(unchanged_runs):
    """bf16, torchao int8 and quanto int8, every test, pytest-benchmark on, one busy process per core
    beside the gate: green three times running."""
    skipped = 0 if latency_gated_here() else 2        # a CPU class without ceilings: its 2 ratios recorded
    for attempt, (out, done) in enumerate(unchanged_runs):
        summary = done.stdout.strip().splitlines()[-1]
        assert done.returncode == 0, (attempt, done.stdout[-3000:])
        assert f" {19 - skipped} passed" in f" {summary}", (attempt, summary)     # 2 x 7 + 5 tests: every one
        assert (f" {skipped} skipped" in summary) if skipped else "skipped" not in summary, (attempt, summary)
        assert not re.search(r"failed|error|xfail", summary), (attempt, summary)


def test_latency_records_survive_process_isolation(unchanged_runs):
    """pytest-benchmark runs in the pytest process and times a call into the case's process: its
    records are kept (pytest-xdist, by contrast, switches pytest-benchmark off)."""
    out, _ = unchanged_runs[0]
    bench = {b["name"]: b for b in json.loads((out / "benchmark.json").read_text())["benchmarks"]}
    timed = bench["test_denoise_latency[tiny-flux-quanto-int8-cpu]"]
    assert timed["stats"]["rounds"] == 3 and timed["stats"]["median"] > 0
    assert timed["extra_info"]["case"] == "tiny-flux-quanto-int8-cpu"


@pytest.mark.parametrize("strict, outcome", [("", {"failed": 1}), ("strict = false", {"xpassed": 1})])
def test_a_known_failure_that_does_not_happen_fails_unless_it_is_marked_not_strict(run_gate, fixtures_copy,
                                                                                    strict, outcome):
    """A known failure that passes here (XPASS) fails the test, so a fixed bug is noticed; one marked
    strict = false (seen on some machines of its class, not on others) lets the test's own checks decide."""
    _append_config(fixtures_copy, f'''id = "quanto-int8-planted"
backend = "quanto"
components = ["transformer"]
settings = {{ weights_dtype = "int8" }}
devices = ["cpu"]
[[config.known_failure]]
test = "test_quantization_takes_effect"
match = "planted"
reason = "planted: it fails on some hosts"
{strict}''')
    result = run_gate("--qg-config", "quanto-int8-planted", "-k", "test_quantization_takes_effect", fixtures=fixtures_copy)
    result.assert_outcomes(**outcome)
