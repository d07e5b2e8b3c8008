"""The HTML report of a run: self-contained, failures first, and it renders in a real browser.

The browser test opens a real run's report in headless Chromium (Debian's `chromium`), checks that
every embedded image decoded and that the key sections are there, and saves a screenshot
(.quantgate/screenshots/report.png in the repository, for people to look at).
"""

import json
import os
import re
import shutil
import subprocess

import pytest

from quantgate.cli import main

from .conftest import CPU_TIER, PLANTED, REPO, harness_dirs

CONFIGS = ("bf16", "torchao-int8wo", "quanto-int8")

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-default-apps", "--disable-sync", "--no-first-run",
                  "--disable-extensions", "--hide-scrollbars", "--window-size=1280,2000"]


@pytest.fixture(scope="module")
def run_with_report(tmp_path_factory, shared_cache):
    """A run of three cases; quanto int8's images drift (a planted fault), so it fails its image test."""
    import sys

    root = tmp_path_factory.mktemp("report")
    (root / "planted_sessions.py").write_text(PLANTED)
    out = root / "results"
    subprocess.run([sys.executable, "-m", "pytest", str(REPO / "tests" / "gate"), "-p", "no:cacheprovider", "-q",
                    "-m", CPU_TIER, "--benchmark-disable", "--qg-cache-dir", str(shared_cache),
                    "--qg-fixtures", str(harness_dirs()[0]), "--qg-baselines", str(harness_dirs()[1]),
                    "--qg-results-dir", str(out), "--qg-case-session", "planted_sessions:Planted",
                    "-k", "not test_latency_ratio",   # timing is not what this run is about
                    *[a for c in CONFIGS for a in ("--qg-config", c)]],
                   cwd=REPO, capture_output=True, timeout=600,
                   env={**os.environ, "PYTHONPATH": str(root), "QG_PLANTED": "quanto-int8=drift"})
    assert (out / "report.html").is_file()
    return out, harness_dirs()[1]


def test_a_run_writes_one_self_contained_report_failures_first(run_with_report):
    out, _ = run_with_report
    html = (out / "report.html").read_text()
    assert not re.search(r'src="(?!data:)', html)              # every image is embedded
    cases = re.findall(r'<section class="case( failed)?" id="([^"]+)"', html)
    assert cases == [(" failed", "tiny-flux-quanto-int8-cpu"), ("", "tiny-flux-bf16-cpu"),
                     ("", "tiny-flux-torchao-int8wo-cpu")]
    assert "FAILED: test_quantized_image_close_to_bf16_baseline" in html
    assert html.count("<figcaption>SSIM map (dark: differs)") == 3 * 2
    assert html.count("<figcaption>|difference| x4") == 3 * 2
    assert html.count("Memory against the ceilings") == 3


def test_the_same_report_in_markdown_has_the_tables_and_no_images(run_with_report):
    out, _ = run_with_report
    md = (out / "report.md").read_text()
    assert "data:image" not in md
    rows = [line for line in md.splitlines() if line.startswith("| tiny-flux-")]
    assert [r.split(" | ")[0] for r in rows[:3]] == ["| tiny-flux-quanto-int8-cpu", "| tiny-flux-bf16-cpu",
                                                     "| tiny-flux-torchao-int8wo-cpu"]
    assert "## Failures" in md and "FAILED: test_quantized_image_close_to_bf16_baseline" in md
    assert "weights 8.9 / 9.0 MiB" in md                  # memory against its ceiling


def test_a_bump_report_shows_the_base_beside_each_case(run_with_report, tmp_path, capsys):
    out, baselines = run_with_report
    target = tmp_path / "bump.html"
    assert main(["report", str(out), "--base", str(out), "--out", str(target), "--baselines", str(baselines),
                 "--fixtures", str(harness_dirs()[0])]) == 0
    html = target.read_text()
    assert "base: tests, SSIM, bytes, step ms" in html and "Compared with the base" in html
    assert "backend '" not in html                     # the same backends on both sides
    # a base that ran no quanto case: the run's quanto backend is named as having appeared
    base = tmp_path / "base"
    base.mkdir()
    data = json.loads((out / "results.json").read_text())
    data["cases"] = [c for c in data["cases"] if c["backend"] != "quanto"]
    (base / "results.json").write_text(json.dumps(data))
    assert main(["report", str(out), "--base", str(base), "--out", str(tmp_path / "moved.html"), "--baselines",
                 str(baselines), "--fixtures", str(harness_dirs()[0])]) == 0
    assert "**backend 'quanto' appeared: 1 case(s) here, none in the base.**" in (tmp_path / "moved.md").read_text()
    assert "<strong>backend &#39;quanto&#39; appeared" in (tmp_path / "moved.html").read_text()


def test_the_report_renders_in_headless_chromium(run_with_report, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        message = "Debian's chromium is not installed (apt-get install chromium)"
        if os.environ.get("QG_REQUIRE_BROWSER") == "1":          # CI: .ci/run installs it and requires it
            pytest.fail(message + "; QG_REQUIRE_BROWSER=1 requires it", pytrace=False)
        pytest.skip(message)
    out, _ = run_with_report
    url = (out / "report.html").as_uri()
    dom = subprocess.run([chromium, *CHROMIUM_FLAGS, "--virtual-time-budget=10000", "--dump-dom", url],
                         capture_output=True, text=True, timeout=120).stdout
    loaded = re.search(r'data-qg-images="(\d+)/(\d+)"', dom)
    assert loaded, "the report's image check did not run: " + dom[:500]
    good, total = map(int, loaded.groups())
    assert total == 3 * 2 * 4 + 3 and good == total    # 3 cases x 2 prompts x 4 pictures, and 3 memory charts
    for section in ("environment", "matrix", "cases", *(f"tiny-flux-{c}-cpu" for c in CONFIGS)):
        assert f'id="{section}"' in dom
    shot = tmp_path / "report.png"
    subprocess.run([chromium, *CHROMIUM_FLAGS, "--virtual-time-budget=10000", f"--screenshot={shot}", url],
                   capture_output=True, timeout=120)
    assert shot.stat().st_size > 10_000
    keep = REPO / ".quantgate" / "screenshots"
    keep.mkdir(parents=True, exist_ok=True)
    shutil.copy(shot, keep / "report.png")
