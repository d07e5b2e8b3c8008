"""What a regression path is: a name (also its tests' marker) and what it does in a case's process."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from quantgate.case.session import CaseSession


class RegressionPath:
    name: ClassVar[str]
    description: ClassVar[str]

    def scratch_bytes(self, components: dict[str, dict]) -> int:
        """The disk the path writes into its scratch folder, given the case's quantized components'
        weight figures ({name: {"bytes": ...}}); checked against the folder's free space first."""
        return 0

    def run(self, session: "CaseSession", folder: Path) -> dict:
        """Take the path in the case's process, with `folder` its own scratch space (emptied before
        and removed after). Return its figures: plain data, and `images` ({key: uint8 array}) where
        the path makes images, which the gate holds against the fresh load's."""
        raise NotImplementedError
