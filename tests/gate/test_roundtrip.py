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
    held, reheld = _held_by_load(record.memory), _held_by_load(trip["memory"])
    if held and reheld:             # CUDA; equal in repeated runs, 5% as for the peak ceilings
        assert reheld <= held * 1.05, (
            f"the reload holds {reheld:,} bytes of GPU memory once loaded, the fresh load {held:,}")
    before, after = record.memory.get("inference_peak_allocated"), trip["memory"].get("inference_peak_allocated")
    if before and after:
        assert after <= before * 1.05, f"the reload's inference peak is {after:,} bytes, the fresh load's {before:,}"


def _held_by_load(memory: dict) -> int | None:
    """What the load phase left allocated on the GPU, less what was allocated when it began (the reload
    follows the fresh load's images in one process, whose cuBLAS workspace stays)."""
    after = memory.get("after_load_allocated")
    return after - memory.get("before_load_allocated", 0) if after else None

def test_reloaded_checkpoint_makes_the_fresh_loads_images(qg, qg_roundtrip_case):
    qg.check_path_images(qg_roundtrip_case, "roundtrip")
