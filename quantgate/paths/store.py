"""Quantized checkpoints kept from one stack for the next: the store that a bump's current lock
writes (its round trips' saved components, with the weight figures and images of the fresh load)
and its candidate lock reads (quantgate.paths.previous).

Layout: `<store>/<stack key>/<case id>/` holds the components' folders as save_pretrained wrote
them, `images/<key>.png` (the fresh load's path images) and `manifest.json` (the stack's package
versions, its key, the case, the components' weight figures). The stack key is a hash of the
installed versions of the packages the results record, so two locks never share a folder and a
candidate never mistakes its own files for the base's. A folder is written whole under a temporary
name and renamed into place; one already there for that stack and case is left as it is.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from quantgate.errors import QuantgateError

MANIFEST = "manifest.json"
STORE_ENV = "QUANTGATE_CHECKPOINTS_IN"      # the store a candidate reads, for the case processes


def stack_key(packages: dict) -> str:
    """A short hash of the stack: the sorted name==version pairs of the packages."""
    text = "\n".join(f"{name}=={version}" for name, version in sorted(packages.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def keep(store: Path, case_id: str, saved: Path, packages: dict, weights: dict, images: dict) -> Path | None:
    """Move the round trip's saved components (`saved`, one folder per component) into the store,
    with the fresh load's images and weight figures; the case's folder there, or None where this
    stack already kept one (it stays as it was)."""
    from PIL import Image

    key = stack_key(packages)
    final = Path(store) / key / case_id
    if (final / MANIFEST).is_file():
        return None
    staging = final.with_name(f".{case_id}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for component in sorted(p for p in Path(saved).iterdir() if p.is_dir()):
        shutil.move(str(component), staging / component.name)
    (staging / "images").mkdir()
    for name, image in images.items():
        Image.fromarray(image, mode="RGB").save(staging / "images" / f"{name}.png", format="PNG")
    manifest = {"stack": key, "packages": packages, "case": case_id, "components": weights,
                "images": sorted(images)}
    (staging / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True))
    shutil.rmtree(final, ignore_errors=True)
    staging.rename(final)
    return final


def find(store: Path, case_id: str, own_packages: dict | None = None) -> tuple[Path, dict] | None:
    """The case's checkpoint in the store: the one another stack wrote where there is one (else this
    stack's own), the most recently written first; None where the store has none for the case."""
    store = Path(store)
    if not store.is_dir():
        raise QuantgateError(f"the checkpoint store {store} does not exist: point --qg-checkpoints-in at the folder "
                             "that the base's run wrote with --qg-checkpoints-out")
    own = stack_key(own_packages) if own_packages else None
    found = sorted((p for p in store.glob(f"*/{case_id}/{MANIFEST}")),
                   key=lambda p: (p.parent.parent.name == own, -p.stat().st_mtime))
    if not found:
        return None
    return found[0].parent, json.loads(found[0].read_text())
