"""The published figures side by side with a result set's."""

from quantgate.cli import main
from quantgate.results.record import CaseRecord, write_results

from .conftest import REPO
from .test_results import ENV

GiB = 2**30


def _flux(config, load_gib, inference_gib, image_s=2.0, denoise_s=1.6):
    r = CaseRecord(case=f"flux-dev-synth-{config}-cuda", model="flux-dev-synth", config=config, backend="x",
                   device="cuda", components=[], status="ok", hardware="cuda-sm90", steps=8)
    r.memory = {"load_peak_reserved": int(load_gib * GiB), "inference_peak_reserved": int(inference_gib * GiB)}
    r.image_seconds, r.denoise_s = [image_s], [denoise_s]
    return r


def _table(tmp_path, capsys, records, started):
    """`quantgate reference-table` over the records, against the blog's reference: (stdout, stderr)."""
    write_results(tmp_path, records, ENV, started)
    assert main(["reference-table", str(tmp_path / "results.json"),
                 "--reference", str(REPO / "fixtures" / "reference" / "blog-flux-dev-h100.toml")]) == 0
    return capsys.readouterr()


def test_rows_sit_beside_the_blog_with_ratios_and_the_far_ones_flagged(tmp_path, capsys):
    out, err = _table(tmp_path, capsys, [_flux("bf16", 31.50, 36.20), _flux("bnb-nf4-pipeline", 12.58, 20.0)],
                      "2026-11-25T00:00:00+00:00")
    # BF16: 2.0 s for 8 steps + 42 more steps at 0.2 s = 10.4 s per 50-step image
    assert "| bf16 | BF16 | 31.447 | 31.500 | 1.002 | 36.166 | 36.200 | 1.001 | 12 | 10.4 |  |" in out
    assert "| bnb-nf4-pipeline | bnb 4-bit (nf4) | 12.584 | 12.580 | 1.000 | 17.281 | 20.000 | 1.157 |" in out
    assert "off by >10%: peak |" in out
    assert "| gguf-q2_k | GGUF Q2_K | 13.264 | - | - |" in out and "not run" in out
    assert "1 row(s) off by more than 10%: bnb-nf4-pipeline" in err


def test_a_measured_configuration_the_publication_lacks_gets_a_row_saying_so(tmp_path, capsys):
    """Backends newer than the publication (SDNQ, ModelOpt) sit beside its rows, never silently absent."""
    out, err = _table(tmp_path, capsys, [_flux("bf16", 31.50, 36.20), _flux("sdnq-int8", 20.83, 25.33)],
                      "2026-12-04T00:00:00+00:00")
    assert "| sdnq-int8 | - | - | 20.830 | - | - | 25.330 | - | - | 10.4 | no published figure |" in out
    assert "sdnq-int8" not in err          # nothing to compare, so nothing flagged
