"""Warm start: a trained model's tensors into a new model, by name and shape (``train.init_from``,
``tsekit ablate --init``).

Every tensor of the new model whose name and shape match one of the source's is loaded; the rest (a fusion at a
new site, a new encoder's projection, an output layer of another size) keep the fresh initialisation the seed
gave them. :class:`InitRecord` says which were which; ``strict`` refuses any difference, naming the first.
``trainable="new"`` then freezes the loaded tensors, so that only the new parts train.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tsekit.errors import TsekitError

SHIPPED_MODELS = Path(__file__).resolve().parent.parent / "models"
RECORD_FILE = "init.json"
TRAINABLE = ("all", "new")


@dataclass(frozen=True)
class InitRecord:
    """What a warm start loaded (``loaded``), left freshly initialised (``new``) and did not use (``unused``)."""

    source: str
    loaded: list[str]
    new: list[str]
    unused: list[str]
    seen_speakers: list[str] | None = None  # the source's training + validation speakers, when its card says

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def read(cls, path: str | Path) -> InitRecord:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        return cls(**{k: data.get(k) for k in ("source", "loaded", "new", "unused", "seen_speakers")})

    def write(self, path: str | Path) -> None:
        from tsekit.io import atomic_open

        with atomic_open(Path(path), "w", encoding="utf-8") as fh:
            json.dump(self.to_json(), fh, indent=1)


def resolve_model(source: str | Path) -> Path:
    """A model folder from a name of the shipped models (``default``, ``trunk``), a model folder or a run
    folder (its ``best/``, else ``last/``)."""
    from tsekit.engine.checkpoint import SPEC_FILE, WEIGHTS_FILE
    from tsekit.inference import model_path

    text = str(source)
    shipped = SHIPPED_MODELS / text
    if "/" not in text and (shipped / SPEC_FILE).is_file():
        return shipped
    folder = model_path(Path(text).expanduser())
    if folder.is_file() and folder.suffix == ".safetensors":
        return folder
    if not (folder / WEIGHTS_FILE).is_file():
        names = ", ".join(sorted(p.name for p in SHIPPED_MODELS.iterdir() if (p / SPEC_FILE).is_file()))
        raise TsekitError(f"{source}: not a model folder, run folder or shipped model ({names}) — no {WEIGHTS_FILE}")
    return folder


def _read_weights(folder: Path) -> dict[str, Any]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from tsekit.engine.checkpoint import WEIGHTS_FILE

    path = folder if folder.is_file() else folder / WEIGHTS_FILE
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise TsekitError(f"{path}: train.init_from is not readable safetensors ({' '.join(str(exc).split())[:160]})") from None


def seen_speakers(folder: Path) -> list[str] | None:
    """The speakers a model was trained or tuned on, from its ``card.json`` (shipped models) or the run's
    ``config.json`` (a run's ``best/``/``last/``); None when nothing records them."""
    folder = folder.parent if folder.is_file() else folder
    for card in (folder / "card.json", folder.parent / "card.json"):
        if card.is_file():
            data = json.loads(card.read_text(encoding="utf-8"))
            section = data.get("data", data)
            if "train_speakers" in section:
                return sorted({str(s) for key in ("train_speakers", "val_speakers", "validation_speakers")
                               for s in section.get(key) or []})
    for run in (folder, folder.parent):
        config = run / "config.json"
        if config.is_file():
            meta = json.loads(config.read_text(encoding="utf-8"))
            if isinstance(meta.get("train_speaker_ids"), list):
                return sorted({str(s) for s in [*meta["train_speaker_ids"], *(meta.get("val_speakers") or [])]})
    return None


def _current_names(model: Any, weights: dict[str, Any]) -> dict[str, Any]:
    """``weights`` renamed as ``model.load_state_dict`` would: its modules' load pre-hooks map names that older
    tsekit versions saved (e.g. speakerbeam's ``backbone.blocks.0…`` → ``backbone.tcn.blocks.0…``)."""
    state = dict(weights)
    for name, module in model.named_modules():
        for hook in getattr(module, "_load_state_dict_pre_hooks", {}).values():  # torch keeps them here
            hook(state, f"{name}." if name else "", {}, False, [], [], [])
    return state


def init_from(model: Any, source: str | Path, *, strict: bool = False) -> InitRecord:
    """Load ``source``'s matching tensors into ``model`` (in place) and say what was loaded and what is new."""
    folder = resolve_model(source)
    weights = _current_names(model, _read_weights(folder))
    own = model.state_dict()
    loaded, new = [], []
    for name, tensor in own.items():
        theirs = weights.get(name)
        if theirs is not None and tuple(theirs.shape) == tuple(tensor.shape):
            loaded.append(name)
            continue
        if strict:
            why = "is missing" if theirs is None else \
                f"has shape {list(theirs.shape)} there but {list(tensor.shape)} in this model"
            raise TsekitError(f"{folder}: tensor {name!r} {why} (strict warm start)")
        new.append(name)
    unused = [name for name in weights if name not in loaded]
    if strict and unused:
        raise TsekitError(f"{folder}: tensor {unused[0]!r} has no place in this model (strict warm start)")
    if not loaded:
        raise TsekitError(f"{folder}: no tensor matches this model by name and shape; is it the same backbone?")
    import torch

    with torch.no_grad():
        for name in loaded:
            own[name].copy_(weights[name].to(own[name].dtype))
    return InitRecord(str(folder), loaded, new, unused, seen_speakers(folder))


def freeze_loaded(model: Any, loaded: Iterable[str]) -> int:
    """``trainable="new"``: stop the loaded parameters from training; returns how many parameters still train."""
    names = set(loaded)
    for name, param in model.named_parameters():
        if name in names:
            param.requires_grad_(False)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def check_unseen(eval_speakers: Iterable[str], seen: Iterable[str] | None, what: str) -> None:
    """Refuse evaluation speakers that ``what`` was trained or tuned on."""
    if seen is None:
        return
    overlap = sorted(set(map(str, eval_speakers)) & set(map(str, seen)))
    if overlap:
        raise TsekitError(f"{what} was trained on {len(overlap)} of the evaluation speakers ({', '.join(overlap[:5])}"
                          f"{' …' if len(overlap) > 5 else ''}); evaluate on speakers it has not seen, or pass "
                          "--allow-seen-speakers")
