"""Merging the result sets of a matrix that ran in parts."""

import pytest

from quantgate.cli import main
from quantgate.results.merge import MergeError, merge_results
from quantgate.results.record import read_results, write_results

from .test_results import ENV, _record


def _part(folder, *records, env=ENV):
    write_results(folder, list(records), env, "2026-11-25T00:00:00+00:00")
    return folder / "results.json"


def test_parts_merge_into_one_set_with_each_case_once(tmp_path):
    ref = _record("bf16", [], 1.0, 1000)
    ref.tests = {"test_loads": "passed"}
    twin = _record("bf16", [], 1.0, 1000)
    twin.tests = {"test_loads": "passed", "test_bf16_reproduces_its_baseline": "passed"}
    a = _part(tmp_path / "a", ref, _record("bnb-nf4", ["transformer"], 0.95, 500))
    b = _part(tmp_path / "b", twin, _record("quanto-int8", ["transformer"], 0.99, 600))
    out, repeated = merge_results([a, b], tmp_path / "merged")
    data, records = read_results(out / "results.json")
    assert data["started"] == "2026-11-25T00:00:00+00:00" and data["finished"] >= data["started"]
    assert [r.config for r in records] == ["bf16", "bnb-nf4", "quanto-int8"]
    assert repeated == ["tiny-flux-bf16-cuda"]
    assert records[0].tests == twin.tests                      # outcomes of both parts kept
    assert "tiny-flux-quanto-int8-cuda" in (out / "results.md").read_text()


def test_a_case_measured_differently_in_two_parts_is_refused(tmp_path):
    a = _part(tmp_path / "a", _record("bf16", [], 1.0, 1000, {"inference_peak_reserved": 10}))
    b = _part(tmp_path / "b", _record("bf16", [], 1.0, 1000, {"inference_peak_reserved": 12}))
    with pytest.raises(MergeError, match="tiny-flux-bf16-cuda was measured differently .*memory.*must not depend"):
        merge_results([a, b], tmp_path / "merged")
    assert not (tmp_path / "merged").exists()


def test_parts_from_other_versions_are_refused_and_nothing_is_overwritten(tmp_path, capsys):
    a = _part(tmp_path / "a", _record("bf16", [], 1.0, 1000))
    b = _part(tmp_path / "b", _record("bnb-nf4", [], 1.0, 1000), env={**ENV, "packages": {"torch": "2.y"}})
    with pytest.raises(MergeError, match=r"other hardware or versions .*packages: \{'torch': '2.x'\} vs \{'torch': '2.y'\}"):
        merge_results([a, b], tmp_path / "merged")
    before = a.read_text()
    assert main(["merge-results", str(tmp_path / "a"), str(b)]) == 2
    assert "already holds a result set" in capsys.readouterr().err
    assert a.read_text() == before


def test_a_reference_loaded_only_for_its_bytes_merges_with_the_full_one(tmp_path):
    full = _record("bf16", [], 1.0, 1000, {"load_peak_reserved": 5, "inference_peak_reserved": 9})
    full.tests = {"test_bf16_reproduces_its_baseline": "passed"}
    bytes_only = _record("bf16", [], 1.0, 1000, {"load_peak_reserved": 5, "inference_peak_reserved": None})
    bytes_only.similarity, bytes_only.tests = {}, {}
    a = _part(tmp_path / "a", bytes_only, _record("bnb-nf4", ["transformer"], 0.95, 500))
    b = _part(tmp_path / "b", full)
    out, repeated = merge_results([a, b], tmp_path / "merged")
    _, records = read_results(out / "results.json")
    ref = next(r for r in records if r.config == "bf16")
    assert ref.memory["inference_peak_reserved"] == 9 and ref.similarity     # the fuller record is kept
    assert ref.tests == full.tests


def test_a_bytes_only_reference_that_disagrees_on_what_both_measured_is_refused(tmp_path):
    full = _record("bf16", [], 1.0, 1000, {"load_peak_reserved": 5, "inference_peak_reserved": 9})
    bytes_only = _record("bf16", [], 1.0, 1000, {"load_peak_reserved": 6})
    bytes_only.similarity = {}
    a = _part(tmp_path / "a", full)
    b = _part(tmp_path / "b", bytes_only)
    with pytest.raises(MergeError, match="tiny-flux-bf16-cuda was measured differently .*memory"):
        merge_results([a, b], tmp_path / "merged")
