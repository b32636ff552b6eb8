"""Checkpoint importers: ESPnet's, WeSep's and BUT's TSE checkpoints (their own config file and state dict)
become tsekit models (``tsekit import-checkpoint --from espnet|wesep|but``).

Each toolkit's key names and config sections are mapped in one module beside this one (``espnet.py``,
``wesep.py``, ``but.py``) onto the reference-exact presets of the matching tsekit components; the tests
under ``tests/test_reference_*.py`` prove the converted models give the references' outputs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import tsekit

if TYPE_CHECKING:
    from tsekit.registry import Registrar

IMPL = "tsekit_builtin.importers.modules"


@tsekit.hookimpl
def tsekit_register_importers(register: Registrar) -> None:
    register(
        "espnet",
        f"{IMPL}:EspnetImporter",
        summary="ESPnet-TSE (egs2 tse1): TD-SpeakerBeam with its auxiliary network or a speaker embedding; "
        "config.yaml + *.pth",
    )
    register(
        "wesep",
        f"{IMPL}:WesepImporter",
        summary="WeSep: BSRNN and SpEx+; config.yaml + checkpoint (models[0]) or avg_model.pt",
    )
    register(
        "but",
        f"{IMPL}:ButImporter",
        summary="BUT speakerbeam (asteroid): TD-SpeakerBeam with its auxiliary network; conf.yml + model.pth",
    )
