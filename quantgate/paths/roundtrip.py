"""The round trip: save the case's quantized components as safetensors, in two shards or more, let
the pipeline go, load it back from those files, and make the model's images again. The gate then
holds the reload against the fresh load: the same weight bytes and quantized tensors, the same
memory on a GPU, and the same images (tests/gate/test_roundtrip.py). It is the path a team takes
when it quantizes once and serves the saved checkpoint; bitsandbytes 0.48.0 (8-bit checkpoints),
torch 2.6 (torchao under weights_only) and sharded bnb 8-bit ("Missing SCB") each broke it.

GGUF has no round trip here: its single file is its checkpoint, and loading it is the case's load.
"""

from __future__ import annotations

import time
from pathlib import Path

from quantgate.paths.base import RegressionPath

SHARDS = 2          # each component is saved in (at least) this many safetensors shards


class RoundTrip(RegressionPath):
    name = "roundtrip"
    description = "save the quantized components as sharded safetensors, load them back, hold the reload against the fresh load"

    def scratch_bytes(self, components: dict[str, dict]) -> int:
        return sum(figures["bytes"] for figures in components.values())

    def run(self, session, folder: Path) -> dict:
        case = session.case
        held = session.weights()
        started = time.perf_counter()
        for name in case.components:
            session.save_component(name, folder / name, max_shard_size=max(held[name]["bytes"] // SHARDS, 1))
        save_s = time.perf_counter() - started
        files = sorted(folder.rglob("*.safetensors"))
        load_s, memory = session.load_saved_pipeline(folder)
        components = session.weights()          # counted once loaded, as the fresh load's are
        made = session.generate(for_path=True)
        memory.update({k: v for k, v in made["memory"].items() if "inference" in k})
        return {
            "save_s": save_s, "load_s": load_s, "memory": memory, "components": components,
            "files": {name: len([f for f in files if f.parent.name == name]) for name in case.components},
            "disk_bytes": sum(f.stat().st_size for f in files), "images": made["images"],
        }
