"""Checkpoints from the previous lock (quantgate.paths.previous): in a bump's candidate, the quantized
checkpoint its base wrote loads with the candidate's libraries and gives back the base's weight bytes
and images. Its tests carry the marker `previous`, and skip where no checkpoint store is given."""

import pytest

pytestmark = pytest.mark.previous


def _taken(qg, case):
    if qg.checkpoints_in is None:            # before the path: it would load the case again for nothing
        pytest.skip("no checkpoint store given (--qg-checkpoints-in: the store a bump's base wrote)")
    taken = qg.take_path(case, "previous")
    if taken.get("skipped"):
        pytest.skip(taken["skipped"])
    return taken


def test_previous_locks_checkpoint_loads_with_its_weight_bytes(qg, qg_previous_case):
    taken = _taken(qg, qg_previous_case)
    for component in qg_previous_case.components:
        base, loaded = taken["base_components"][component], taken["components"][component]
        assert loaded["quantized_tensors"] == base["quantized_tensors"], (
            f"the base stack's checkpoint of {component} loads with {loaded['quantized_tensors']} quantized tensors "
            f"here, the base held {base['quantized_tensors']}")
        assert loaded["bytes"] == base["bytes"], (
            f"the base stack's checkpoint of {component} holds {loaded['bytes']:,} bytes here, the base {base['bytes']:,}")


def test_previous_locks_checkpoint_makes_the_base_images(qg, qg_previous_case):
    _taken(qg, qg_previous_case)
    qg.check_path_images(qg_previous_case, "previous", "loaded", against="base")
