"""Result records and the files and proposals made from them."""

from quantgate.cli import main
from quantgate.results.record import CaseRecord, read_results, write_results

ENV = {"cpu": "test cpu", "cores": 2, "hardware": "cuda-sm90", "python": "3.11", "packages": {"torch": "2.x"},
       "gpu": "NVIDIA H100", "driver": "580", "cuda": "13.0"}


def _record(config, components, ssim, bytes_, memory=None, ref=None):
    r = CaseRecord(case=f"tiny-flux-{config}-cuda", model="tiny-flux", config=config, backend="x", device="cuda",
                   components=components, status="ok", hardware="cuda-sm90", steps=4)
    r.weights = {"transformer": {"bytes": bytes_, "tensors": 10, "quantized_tensors": 8}}
    r.reference_bytes = ref or {}
    r.similarity = {"fox-s0": {"ssim": ssim, "psnr": 30.0}, "lighthouse-s0": {"ssim": ssim + 0.001, "psnr": 31.0}}
    r.memory = memory or {}
    r.denoise_s = [0.04, 0.05, 0.06]
    return r


def test_result_set_round_trips_and_reports_gpu_memory(tmp_path):
    mem = {"load_peak_allocated": 2**30, "load_peak_reserved": 2 * 2**30, "inference_peak_allocated": 3 * 2**30,
           "inference_peak_reserved": 4 * 2**30, "after_load_allocated": 2**30, "after_load_reserved": 2**30}
    recs = [_record("bnb-nf4", ["transformer"], 0.95, 500, mem, {"transformer": 1000})]
    write_results(tmp_path, recs, ENV, "2026-11-25T00:00:00+00:00")
    data, back = read_results(tmp_path / "results.json")
    assert back[0].weight_ratio() == 0.5 and back[0].step_ms() == 12.5
    md = (tmp_path / "results.md").read_text()
    assert "| tiny-flux-bnb-nf4-cuda | 0.0000 | 1.0000 / 1.0000 | 1.0000 / 2.0000 | 3.0000 / 4.0000 | 12.50 |" in md
    assert "GPU NVIDIA H100, driver 580, CUDA 13.0" in md


def test_verdict_names_the_failed_tests():
    r = _record("x", [], 0.9, 1)
    r.tests = {"test_a": "passed", "test_b": "failed", "test_c": "passed"}
    assert r.verdict() == "FAILED: test_b"
    r.tests = {"test_a": "passed", "test_c": "xfailed"}
    assert r.verdict() == "1 passed, 1 xfailed"


def test_proposed_expectations_sit_one_margin_from_the_measurement(tmp_path, capsys):
    mem = {"load_peak_reserved": 1000, "inference_peak_reserved": 2000}
    write_results(tmp_path, [_record("bnb-nf4", ["transformer"], 0.95, 500, mem, {"transformer": 1000})],
                  ENV, "2026-11-25T00:00:00+00:00")
    assert main(["propose-expectations", str(tmp_path / "results.json")]) == 0
    out = capsys.readouterr().out
    assert '["cuda-sm90"."bnb-nf4"]' in out
    for line in ("ssim_min = 0.948", "psnr_min = 29.5", "weight_bytes_max = 505", "weight_ratio_max = 0.505",
                 "peak_load_bytes_max = 1050", "peak_inference_bytes_max = 2100"):
        assert line in out, (line, out)


def test_expectations_from_repeated_runs_cover_every_run_and_state_the_spread(tmp_path, capsys):
    for run, (ssim, bytes_, peak) in enumerate([(0.95, 500, 2000), (0.94, 520, 2100)]):
        mem = {"load_peak_reserved": 1000, "inference_peak_reserved": peak}
        write_results(tmp_path / f"run{run}", [_record("bnb-nf4", ["transformer"], ssim, bytes_, mem,
                                                       {"transformer": 1000})], ENV, "2026-11-25T00:00:00+00:00")
    assert main(["propose-expectations", str(tmp_path / "run0" / "results.json"),
                 str(tmp_path / "run1" / "results.json")]) == 0
    out = capsys.readouterr().out
    for line in ("ssim_min = 0.938", "weight_bytes_max = 526", "peak_inference_bytes_max = 2205",
                 'basis = "2 run(s), SSIM 0.9400 (spread 0.0100), 520 bytes (spread 20), '
                 'peak load reserved 1,000 (spread 0), peak inference reserved 2,100 (spread 100), 2026-11-25"'):
        assert line in out, (line, out)


def test_cli_reports_bad_input_without_a_traceback(tmp_path, capsys):
    assert main(["build-model", "--fixtures", str(tmp_path), "--model", "tiny-flux"]) == 2
    assert "quantgate: error:" in capsys.readouterr().err


def test_a_file_that_is_not_a_result_set_is_refused_with_what_is_wrong(tmp_path, capsys):
    import json

    bad = tmp_path / "results.json"
    bad.write_text("{not json")
    assert main(["propose-expectations", str(bad)]) == 2
    assert "not a quantgate result set (JSONDecodeError" in capsys.readouterr().err
    write_results(tmp_path, [_record("bf16", [], 1.0, 10)], ENV, "2026-11-25T00:00:00+00:00")
    data = json.loads(bad.read_text())
    data["cases"][0]["colour"] = "blue"
    bad.write_text(json.dumps(data))
    assert main(["propose-expectations", str(bad)]) == 2
    assert "case tiny-flux-bf16-cuda: unknown field(s) colour" in capsys.readouterr().err


def test_wall_time_split_accounts_for_every_second(tmp_path):
    import subprocess
    import sys

    from .conftest import REPO

    ref, quant = _record("bf16", [], 1.0, 10), _record("bnb-nf4", ["transformer"], 0.95, 5)
    for r, load in ((ref, 2.0), (quant, 5.0)):
        r.start_s, r.load_s, r.image_seconds, r.denoise_s, r.wall_s = 1.0, load, [1.0], [0.5, 0.5], load + 4.0
    write_results(tmp_path, [ref, quant], ENV, "2026-11-25T00:00:00+00:00", "2026-11-25T00:00:20+00:00")
    out = subprocess.run([sys.executable, str(REPO / "benchmarks" / "matrix_wall_time.py"),
                          str(tmp_path / "results.json")], capture_output=True, text=True, check=True).stdout
    assert "| tiny-flux-bnb-nf4-cuda | 9.0 | 1.0 | 5.0 | 3.0 | 1.0 | 1.0 | 1.0 |" in out
    assert ("Session wall time 20 s: cases 15 s (process start 2, loading 7 of which quantizing about 3, "
            "images 2, timed denoising 2, harness 2); outside the cases 5 s") in out
