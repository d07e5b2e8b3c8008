"""Checkpoints from the previous lock: in a bump, the base (current lock) keeps its round trips'
saved quantized components in a checkpoint store (--qg-checkpoints-out, quantgate.paths.store),
keyed by its stack; the candidate (--qg-checkpoints-in) loads them with its own libraries and must
give back the base's weight bytes and images (tests/gate/test_previous.py). This is the regression
where a new release cannot read what the old one wrote: bitsandbytes 0.48.0 and pre-quantized 8-bit
checkpoints, torch 2.6's weights_only default and torchao.

The path loads nothing where no store is given, or the store holds nothing for the case: its tests
skip and say why.
"""

from __future__ import annotations

import os
from pathlib import Path

from quantgate.paths.base import RegressionPath
from quantgate.paths.store import STORE_ENV, find


class PreviousLock(RegressionPath):
    name = "previous"
    description = ("load the quantized checkpoint a bump's base stack saved (--qg-checkpoints-in) and hold it "
                   "against the base's weight bytes and images")

    def run(self, session, folder: Path) -> dict:
        import numpy as np
        from PIL import Image

        from quantgate.hardware import package_versions

        store = os.environ.get(STORE_ENV)
        if not store:
            return {"skipped": f"no checkpoint store given (--qg-checkpoints-in or ${STORE_ENV})", "images": {}}
        case = session.case
        found = find(Path(store), case.id, package_versions())
        if found is None:
            return {"skipped": f"the checkpoint store {store} holds no checkpoint of {case.id}", "images": {}}
        saved, manifest = found
        base_images = {p.stem: np.asarray(Image.open(p).convert("RGB")) for p in sorted((saved / "images").glob("*.png"))}
        load_s, memory = session.load_saved_pipeline(saved)
        components = session.weights()
        made = session.generate(for_path=True)
        return {"stack": manifest["stack"], "base_packages": manifest["packages"], "load_s": load_s,
                "memory": memory, "components": components, "base_components": manifest["components"],
                "images": {"loaded": made["images"], "base": {k: base_images[k] for k in made["images"] if k in base_images}}}
