"""The importers: file reading is :class:`tsekit.importing.CheckpointImporter`'s, the mapping each toolkit's."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor

from tsekit.importing import CheckpointImporter


class EspnetImporter(CheckpointImporter):
    toolkit = "espnet"

    def convert(self, config: Mapping[str, Any], state: Mapping[str, Tensor]) -> tuple[dict[str, Any], dict[str, Tensor]]:
        from tsekit_builtin.importers.espnet import convert

        return convert(config, state)


class WesepImporter(CheckpointImporter):
    toolkit = "wesep"

    def convert(self, config: Mapping[str, Any], state: Mapping[str, Tensor]) -> tuple[dict[str, Any], dict[str, Tensor]]:
        from tsekit_builtin.importers.wesep import convert

        return convert(config, state)


class ButImporter(CheckpointImporter):
    toolkit = "but"

    def convert(self, config: Mapping[str, Any], state: Mapping[str, Tensor]) -> tuple[dict[str, Any], dict[str, Tensor]]:
        from tsekit_builtin.importers.but import convert

        return convert(config, state)
