"""The round trip (quantgate.paths.roundtrip): the case's quantized components, saved as sharded
safetensors and loaded back, are the fresh load again. Its tests run after the case's other tests
(the reload replaces the case's pipeline) and carry the marker `roundtrip`."""

import pytest

pytestmark = pytest.mark.roundtrip


def test_saved_checkpoint_reloads_quantized_as_it_was_saved(qg, qg_roundtrip_case):
    record = qg.load(qg_roundtrip_case)
    trip = qg.take_path(qg_roundtrip_case, "roundtrip")
    for component in qg_roundtrip_case.components:
        fresh, reloaded = record.weights[component], trip["components"][component]
        assert trip["files"][component] >= 2, f"{component} was saved in {trip['files'][component]} file(s), not sharded"
        assert reloaded["quantized_tensors"] == fresh["quantized_tensors"], (
            f"the reload of {component} holds {reloaded['quantized_tensors']} quantized tensors, the fresh load "
            f"{fresh['quantized_tensors']}: the checkpoint reloaded {'dequantized' if not reloaded['quantized_tensors'] else 'otherwise'}")
        assert reloaded["bytes"] == fresh["bytes"], (
            f"the reload of {component} holds {reloaded['bytes']:,} bytes, the fresh load {fresh['bytes']:,}")
    for figure in ("after_load_allocated", "inference_peak_allocated"):
        before, after = record.memory.get(figure), trip["memory"].get(figure)
        if before and after:        # CUDA; equal in repeated runs, 5% as for the peak ceilings
            assert after <= before * 1.05, f"{figure} after the reload: {after:,} bytes, the fresh load's {before:,}"


def test_reloaded_checkpoint_makes_the_fresh_loads_images(qg, qg_roundtrip_case):
    qg.check_path_images(qg_roundtrip_case, "roundtrip")
