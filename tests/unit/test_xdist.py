"""pytest-xdist on one host: each worker pinned to one GPU, each case's tests on one worker, and one
merged result set equal to a run in one process. On the CPU, QG_GPUS=0,1 stands in for two GPUs."""

import json
import subprocess
import sys

from .conftest import CPU_TIER, GATE_TESTS, REPO, UNCHANGED_CONFIGS, harness_dirs


def test_two_workers_pin_a_gpu_each_and_merge_into_the_figures_of_one_run(unchanged_runs, shared_cache, tmp_path):
    """... and the controller judges the baselines that no worker used (a planted one here)."""
    import os
    import shutil

    out = tmp_path / "results"
    baselines = tmp_path / "baselines"
    shutil.copytree(harness_dirs()[1], baselines)
    planted = baselines / "tiny-flux" / "cpu-x86_64" / "fox-s7.png"
    shutil.copy(baselines / "tiny-flux" / "cpu-x86_64" / "fox-s0.png", planted)
    args = [sys.executable, "-m", "pytest", str(GATE_TESTS), "-p", "no:cacheprovider", "-q", "-m", CPU_TIER,
            "-n", "2", "--qg-cache-dir", str(shared_cache), "--qg-results-dir", str(out),
            "--qg-fixtures", str(harness_dirs()[0]), "--qg-baselines", str(baselines), "--qg-unused-baselines=fail",
            "-k", "not test_latency_ratio"]   # two workers share two cores here: their step times say nothing
    for c in UNCHANGED_CONFIGS:
        args += ["--qg-config", c]
    env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    done = subprocess.run(args, cwd=REPO, env={**env, "QG_GPUS": "0,1", "OMP_NUM_THREADS": "1"},  # a core each
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 1, done.stdout[-3000:]          # every test passed; the unused baseline fails it
    assert "17 passed" in done.stdout.splitlines()[-1] and "failed" not in done.stdout.splitlines()[-1]
    assert "1 unused baseline(s): no test of this run used them (fails the session" in done.stdout
    assert str(planted) in done.stdout

    parts = {p.parent.name: json.loads(p.read_text()) for p in (out / "workers").glob("*/results.json")}
    assert set(parts) == {"gw0", "gw1"}
    pinned = {name: {c["environment"]["cuda_visible_devices"] for c in part["cases"] if c["environment"]}
              for name, part in parts.items()}
    assert pinned == {"gw0": {"0"}, "gw1": {"1"}}
    for config in UNCHANGED_CONFIGS[1:]:            # each quantized case ran, whole, on one worker
        ran = [name for name, part in parts.items() for c in part["cases"] if c["config"] == config]
        assert len(ran) == 1, (config, ran)

    merged = {c["case"]: c for c in json.loads((out / "results.json").read_text())["cases"]}
    whole = {c["case"]: c for c in json.loads((unchanged_runs[0][0] / "results.json").read_text())["cases"]}
    assert merged.keys() == whole.keys()
    for case, rec in whole.items():
        assert (merged[case]["status"], merged[case]["weights"], merged[case]["similarity"]) == \
            (rec["status"], rec["weights"], rec["similarity"]), case
        assert len(merged[case]["denoise_s"]) == 3     # the model's latency_rounds, timed in the case (pytest-benchmark is off)
    assert (out / "report.html").is_file()
