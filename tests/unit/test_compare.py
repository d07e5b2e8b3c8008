"""`quantgate compare BASE CANDIDATE`: a version bump gets a yes or a no, with the evidence.

Three real runs of the gate's CPU tier (bf16, torchao int8, quanto int8; pytest-benchmark on): a
base and an unchanged candidate (two of the unchanged runs of conftest), and a candidate with planted
regressions (torchao int8 holds 2 MiB more weights and denoises twice as slowly; quanto int8's
images drift).
"""

import json

import pytest

from quantgate.cli import main
from quantgate.results.compare import CompareError, compare_runs, load_run, load_thresholds
from quantgate.results.record import median_pair_ratio, pair_ratios

from .conftest import REPO, UNCHANGED_CONFIGS

# compare's defaults throughout: on a CPU they judge the ratio to BF16's yardstick calls, which may
# grow 50% and must clear the calls' own spread (fixtures/compare.toml says what that comes from).


@pytest.fixture(scope="module")
def runs(unchanged_runs, planted_run):
    planted = planted_run[0]
    for out in (unchanged_runs[0][0], unchanged_runs[1][0], planted):
        assert (out / "results.json").is_file() and (out / "benchmark.json").is_file(), out
    return {"base": unchanged_runs[0][0], "same": unchanged_runs[1][0], "planted": planted}


def _compare(runs, candidate, *extra, capsys):
    code = main(["compare", str(runs["base"]), str(candidate), *extra])
    return code, capsys.readouterr().out


def test_an_unchanged_candidate_passes(runs, capsys):
    code, report = _compare(runs, runs["same"], capsys=capsys)
    assert code == 0, report
    assert report.startswith("# quantgate compare: **no regression**")
    assert "packages changed: none" in report
    assert "CPU time in the case process" in report      # a CPU case's latency: CPU time of its one-thread calls


def test_planted_memory_growth_slowdown_and_image_drift_each_fail(runs, capsys):
    code, report = _compare(runs, runs["planted"], capsys=capsys)
    assert code == 1
    assert report.startswith("# quantgate compare: **REGRESSION**")
    regressions = report.split("## Regressions")[1].split("## ")[0]
    assert "| tiny-flux-torchao-int8wo-cpu | memory | weight bytes grew more than 2% |" in regressions
    assert "| tiny-flux-torchao-int8wo-cpu | latency | denoising time as a ratio to BF16 slower by more than 50% |" \
        in regressions
    assert "| tiny-flux-quanto-int8-cpu | ssim | lowest SSIM fell by more than 0.005 |" in regressions
    assert "| tiny-flux-quanto-int8-cpu | new failure | test_quantized_image_close_to_bf16_baseline failed |" \
        in regressions
    assert "tiny-flux-bf16-cpu |" not in regressions          # the reference did not move


def test_the_report_can_be_written_for_a_job_summary(runs, tmp_path, capsys):
    out = tmp_path / "summary.md"
    code, report = _compare(runs, runs["planted"], "--markdown", str(out), capsys=capsys)
    assert code == 1 and out.read_text() == report


def test_a_configuration_that_vanished_is_a_regression(runs, tmp_path, capsys):
    data = json.loads((runs["same"] / "results.json").read_text())
    data["cases"] = [c for c in data["cases"] if c["config"] != "quanto-int8"]
    (tmp_path / "results.json").write_text(json.dumps(data))
    code, report = _compare(runs, tmp_path, capsys=capsys)
    assert code == 1
    assert "| tiny-flux-quanto-int8-cpu | vanished | ran in the base, not in the candidate |" in report


def test_a_backend_that_vanished_or_appeared_is_named_with_its_versions(runs, tmp_path, capsys):
    data = json.loads((runs["same"] / "results.json").read_text())
    installed = data["environment"]["packages"]["optimum-quanto"]
    data["cases"] = [c for c in data["cases"] if c["backend"] != "quanto"]
    data["environment"]["packages"]["optimum-quanto"] = None       # a lock that dropped it
    (tmp_path / "results.json").write_text(json.dumps(data))
    code, report = _compare(runs, tmp_path, capsys=capsys)
    assert code == 1
    regressions = report.split("## Regressions")[1].split("## ")[0]
    assert ("| backend quanto | backend vanished | 1 case(s) of backend 'quanto' ran in the base, none in the "
            f"candidate | optimum-quanto {installed} | optimum-quanto not installed |") in regressions
    # the other way round: the backend arrives with the candidate, reported, not failed
    findings = compare_runs(load_run(tmp_path), load_run(runs["same"]), load_thresholds(None))
    appeared = [f for f in findings if f.what == "backend appeared"]
    assert [(f.case, f.regression) for f in appeared] == [("backend quanto", False)]


def test_cpu_latency_is_judged_as_a_ratio_to_bf16_by_default(runs):
    base, planted = load_run(runs["base"]), load_run(runs["planted"])
    findings = compare_runs(base, planted, load_thresholds(None))
    latency = {f.case: f for f in findings if f.what == "latency"}
    case = "tiny-flux-torchao-int8wo-cpu"     # its transformer's forwards planted 2x slower
    pairs = {name: [round(p, 3) for p in pair_ratios(run.records[case])] for name, run in (("base", base),
                                                                                       ("planted", planted))}
    assert case in latency, f"no latency finding: each call over the yardstick call beside it {pairs}"
    slowed = latency[case]                    # a finding: its median call/yardstick pair grew more than 50%
    assert slowed.regression, (slowed.detail, pairs)
    assert (slowed.base, slowed.candidate) == tuple(
        f"{median_pair_ratio(run.records[case]):.2f}x BF16" for run in (base, planted))
    # the step also schedules outside the planted forwards, and BF16's own CPU time moved by up to 48%
    # between runs beside the busy neighbour (the yardstick takes most of that out): above the 50% a
    # finding needs, and not more than the planted 2x and that noise
    ratio = float(slowed.candidate.removesuffix("x BF16")) / float(slowed.base.removesuffix("x BF16"))
    assert 1.5 < ratio < 2.5, (slowed.base, slowed.candidate, pairs)


def _with_calls(runs, tmp_path, case: str, calls: list[float], yardstick: list[float]):
    """The unchanged candidate with one CPU case's timed calls, and its yardstick's beside them, set."""
    data = json.loads((runs["same"] / "results.json").read_text())
    for rec in data["cases"]:
        if rec["case"] == case:
            rec["denoise_cpu_s"], rec["yardstick_cpu_s"] = calls, yardstick
    (tmp_path / "results.json").write_text(json.dumps(data))
    return load_run(tmp_path)


def test_a_cpu_slowdown_within_the_calls_own_spread_is_reported_not_failed(runs, tmp_path):
    case = "tiny-flux-quanto-int8-cpu"
    (tmp_path / "base").mkdir()
    (tmp_path / "candidate").mkdir()
    # the base's pairs 1.0x three times and, two calls slowed by a neighbour, 2.3x and 2.4x: its median
    # 1.0x; the candidate's every pair at 2.0x, twice that, yet under the base's second-slowest pair
    base = _with_calls(runs, tmp_path / "base", case, [1.0, 1.0, 1.0, 2.3, 2.4], [1.0] * 5)
    candidate = _with_calls(runs, tmp_path / "candidate", case, [2.0] * 5, [1.0] * 5)
    findings = [f for f in compare_runs(base, candidate, load_thresholds(None)) if f.case == case and f.what == "latency"]
    assert [f.regression for f in findings] == [False]
    assert (findings[0].base, findings[0].candidate) == ("1.00x BF16", "2.00x BF16")
    assert "within the calls' own spread (the candidate's second-fastest call was 2.00x its yardstick's, the " \
        "base's second-slowest 2.30x)" in findings[0].detail
    # one slowed call of five is not the base's spread: the same candidate regressed
    base = _with_calls(runs, tmp_path / "base", case, [1.0, 1.0, 1.0, 1.1, 2.4], [1.0] * 5)
    findings = [f for f in compare_runs(base, candidate, load_thresholds(None)) if f.case == case and f.what == "latency"]
    assert [f.regression for f in findings] == [True]


def test_one_disturbed_pair_of_three_moves_neither_side(runs, tmp_path):
    """A slow yardstick call makes its pair fast, a slow call makes it slow: the median of three
    pairs keeps neither. Both of the base's fixtures' cases' pairs read about 1.1-1.4x (AMX host)."""
    case = "tiny-flux-quanto-int8-cpu"
    (tmp_path / "base").mkdir()
    (tmp_path / "candidate").mkdir()
    base = _with_calls(runs, tmp_path / "base", case, [1.0, 1.2, 2.4], [1.0, 1.0, 1.0])      # one call slowed
    # twice as slow, and one of its yardstick calls slowed 2.5x: pairs 2.4x, 2.4x and 0.96x
    candidate = _with_calls(runs, tmp_path / "candidate", case, [2.4, 2.4, 2.4], [1.0, 1.0, 2.5])
    findings = [f for f in compare_runs(base, candidate, load_thresholds(None)) if f.case == case and f.what == "latency"]
    assert [(f.regression, f.base, f.candidate) for f in findings] == [(True, "1.20x BF16", "2.40x BF16")]
    # unchanged, with one of its calls slowed 2.5x by a neighbour: no finding
    candidate = _with_calls(runs, tmp_path / "candidate", case, [1.2, 1.2, 3.0], [1.0, 1.0, 1.0])
    assert not [f for f in compare_runs(base, candidate, load_thresholds(None)) if f.case == case and f.what == "latency"]


def test_one_slowed_call_of_the_base_does_not_hide_a_slowdown(runs, tmp_path):
    """As in a fresh-clone CI run: the base's pairs 0.93x, 1.30x and, one call slowed by the
    neighbour, 1.77x; the planted 2x slowdown's 2.16-2.40x and one pair at 1.73x (2026-12-02)."""
    case = "tiny-flux-torchao-int8wo-cpu"
    (tmp_path / "base").mkdir()
    (tmp_path / "candidate").mkdir()
    base = _with_calls(runs, tmp_path / "base", case, [0.93, 1.30, 1.77], [1.0, 1.0, 1.0])
    candidate = _with_calls(runs, tmp_path / "candidate", case, [2.27, 2.16, 2.38, 2.40, 2.32, 1.73], [1.0] * 6)
    findings = [f for f in compare_runs(base, candidate, load_thresholds(None)) if f.case == case and f.what == "latency"]
    assert [f.regression for f in findings] == [True]


def test_a_cpu_drift_under_the_largest_measured_between_unchanged_runs_passes(runs, tmp_path):
    case = "tiny-flux-quanto-int8-cpu"
    base = load_run(runs["base"])
    ratio = median_pair_ratio(base.records[case])
    # +34%: the largest move of a ratio measured between two unchanged runs on a shared CPU (AMX, 2026-12-02)
    candidate = _with_calls(runs, tmp_path, case, [1.34 * ratio] * 3, [1.0, 1.0, 1.0])
    assert not [f for f in compare_runs(base, candidate, load_thresholds(None)) if f.case == case and f.what == "latency"]


def test_results_of_another_hardware_class_are_refused(runs, tmp_path):
    data = json.loads((runs["same"] / "results.json").read_text())
    data["environment"]["hardware"] = "cuda-sm90"
    (tmp_path / "results.json").write_text(json.dumps(data))
    with pytest.raises(CompareError, match="ran on cpu-x86_64 and .* on cuda-sm90: .* not comparable"):
        compare_runs(load_run(runs["base"]), load_run(tmp_path), load_thresholds(None))


def test_results_of_another_cpu_class_are_refused(runs, tmp_path):
    data = json.loads((runs["same"] / "results.json").read_text())
    data["environment"]["cpu_class"] = "cpu-x86_64-avx2-elsewhere"
    (tmp_path / "results.json").write_text(json.dumps(data))
    with pytest.raises(CompareError, match=r"ran on cpu-x86_64-.* and .* on cpu-x86_64-avx2-elsewhere: figures of other "
                                           r"CPU classes \(instruction sets\) are not comparable"):
        compare_runs(load_run(runs["base"]), load_run(tmp_path), load_thresholds(None))


def test_a_run_folder_resolves_to_its_latest_results(runs, tmp_path):
    (tmp_path / "latest").write_text(f"{runs['same']}\n")
    assert load_run(tmp_path).path == runs["same"] / "results.json"


def test_bad_thresholds_and_missing_results_are_named(tmp_path, capsys):
    bad = tmp_path / "t.toml"
    bad.write_text('[thresholds]\nlatency_basis = "mean"\n')
    assert main(["compare", str(tmp_path), str(tmp_path), "--thresholds", str(bad)]) == 2
    assert "field 'latency_basis': unknown value 'mean'" in capsys.readouterr().err
    assert main(["compare", str(tmp_path / "nothing"), str(tmp_path)]) == 2
    assert "no result set there" in capsys.readouterr().err


def test_the_shipped_thresholds_are_valid():
    th = load_thresholds(REPO / "fixtures" / "compare.toml")
    assert th == load_thresholds(None)              # the file and the defaults say the same


def test_a_candidate_lock_moves_only_the_named_packages(tmp_path, capsys):
    out = tmp_path / "candidate.txt"
    assert main(["candidate-lock", "torchao==0.17.0", "optimum_quanto==0.2.6", "--base",
                 str(REPO / "constraints" / "current.txt"), "--out", str(out)]) == 0
    current = (REPO / "constraints" / "current.txt").read_text().splitlines()
    lines = out.read_text().splitlines()
    assert lines[0] == ("# Candidate lock: " + str(REPO / "constraints" / "current.txt")
                        + " with torchao 0.18.0 -> 0.17.0, optimum-quanto 0.2.7 -> 0.2.6")
    changed = {a: b for a, b in zip(current, lines[2:]) if a != b}
    assert changed == {"torchao==0.18.0": "torchao==0.17.0", "optimum-quanto==0.2.7": "optimum-quanto==0.2.6"}


def test_a_candidate_lock_refuses_unknown_packages_and_the_current_lock_as_output(tmp_path, capsys):
    current = REPO / "constraints" / "current.txt"
    assert main(["candidate-lock", "torchaoo==1.0", "--base", str(current), "--out", str(tmp_path / "c.txt")]) == 2
    assert "torchaoo not in" in capsys.readouterr().err
    before = current.read_text()
    assert main(["candidate-lock", "torchao==0.17.0", "--base", str(current), "--out", str(current)]) == 2
    assert "would overwrite the current lock" in capsys.readouterr().err
    assert current.read_text() == before


def test_benchmark_data_is_stored_per_hardware_class_with_the_environment(runs):
    """pytest-benchmark's storage gets the hardware class (qg_benchmark_per_class in pyproject), and its
    machine_info carries the environment the cases measured in."""
    from quantgate.hardware import cpu_class

    saved = sorted((runs["base"].parent / "storage" / cpu_class()).glob("*/0001_*.json"))
    assert len(saved) == 1, list((runs["base"].parent / "storage").rglob("*.json"))
    info = json.loads(saved[0].read_text())["machine_info"]["quantgate"]
    assert info["hardware"] == "cpu-x86_64" and info["cpu_class"] == cpu_class() and info["packages"]["diffusers"]
    beside = json.loads((runs["base"] / "benchmark.json").read_text())
    assert {b["extra_info"]["case"] for b in beside["benchmarks"]} == {f"tiny-flux-{c}-cpu" for c in UNCHANGED_CONFIGS}


def test_latency_timed_on_a_gpu_shared_by_xdist_workers_is_not_compared(runs, tmp_path):
    data = json.loads((runs["planted"] / "results.json").read_text())
    case = "tiny-flux-torchao-int8wo-cpu"          # planted 2x slower: a latency regression above
    for rec in data["cases"]:
        if rec["case"] == case:
            rec["environment"]["gpu_shared_by"] = 4
    (tmp_path / "results.json").write_text(json.dumps(data))
    findings = compare_runs(load_run(runs["base"]), load_run(tmp_path), load_thresholds(None))
    latency = [f for f in findings if f.case == case and f.what == "latency"]
    assert [(f.detail, f.regression) for f in latency] == [
        ("not compared: timed on a GPU shared by 4 pytest-xdist workers", False)]
    assert any(f.case == case and f.what == "memory" and f.regression for f in findings)   # the rest still is
