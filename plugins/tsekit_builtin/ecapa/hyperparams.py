"""speechbrain pretrained folders' ``hyperparams.yaml``, read and written as plain data (torch-free).

:func:`architecture` resolves an encoder's architecture from its config, the ``source`` folder's
hyperparams.yaml and the family defaults; capabilities need it (the embedding size) before anything
is built, so this module must stay importable without torch. hyperparams.yaml is read as plain YAML
data: tags are kept as labels and ``!ref <key>`` is resolved here; nothing in it is ever executed.
:func:`hyperparams_text` writes the file back for a folder that ``source=`` (and speechbrain's
``EncoderClassifier``) can load.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tsekit.errors import TsekitError

BUILTIN = "builtin"
PRETRAINED = Path(__file__).with_name("pretrained")
"""The shipped ECAPA-TDNN (``source=builtin``)."""


def source_folder(source: str | None) -> Path | None:
    """The pretrained folder a ``source`` option names (``builtin``: :data:`PRETRAINED`), or None."""
    if not source or source.lower() in ("none", "null"):
        return None
    return PRETRAINED if source == BUILTIN else Path(source).expanduser()

if TYPE_CHECKING:
    from tsekit_builtin.ecapa import SpeechBrainEncoderConfig

SAMPLE_RATE = 16000

# -- architectures -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Family:
    name: str
    class_path: str
    input_key: str
    channels_key: str
    model_keys: tuple[str, ...]
    default_channels: int
    default_lin_neurons: int
    default_n_mels: int
    fixed: tuple[tuple[str, Any], ...]

    def expand(self, c: int) -> list[int]:
        last = 3 * c if self.name == "ecapa" else round(1500 * c / 512)
        return [c, c, c, c, last]


FAMILIES = {
    "ecapa": Family(
        "ecapa", "speechbrain.lobes.models.ECAPA_TDNN.ECAPA_TDNN", "input_size", "channels",
        ("input_size", "channels", "kernel_sizes", "dilations", "attention_channels", "res2net_scale",
         "se_channels", "global_context", "groups", "lin_neurons"),
        1024, 192, 80,
        (("kernel_sizes", [5, 3, 3, 3, 1]), ("dilations", [1, 2, 3, 4, 1]), ("attention_channels", 128)),
    ),
    "xvector": Family(
        "xvector", "speechbrain.lobes.models.Xvector.Xvector", "in_channels", "tdnn_channels",
        ("in_channels", "tdnn_blocks", "tdnn_channels", "tdnn_kernel_sizes", "tdnn_dilations", "lin_neurons"),
        512, 512, 24,
        (("tdnn_blocks", 5), ("tdnn_kernel_sizes", [5, 3, 3, 1, 1]), ("tdnn_dilations", [1, 2, 3, 1, 1])),
    ),
}
FBANK_KEYS = ("n_mels", "n_fft", "win_length", "hop_length", "f_min", "f_max", "filter_shape",
              "deltas", "context", "left_frames", "right_frames")


@dataclass
class Architecture:
    """Everything needed to build the speechbrain modules, resolved from config + hyperparams.yaml."""

    family: str
    model: dict[str, Any]
    features: dict[str, Any]
    std_norm: bool = False
    activation: str | None = None  # a torch.nn class name
    embedding_std_norm: bool = False
    origin: str = "defaults"

    @property
    def embedding_dim(self) -> int:
        return int(self.model["lin_neurons"])


@dataclass(frozen=True)
class Tagged:
    """A YAML node with a hyperpyyaml tag (``!new:...``, ``!ref``, ``!name:...``), kept as data."""

    tag: str
    value: Any


def read_hyperparams(path: Any) -> dict[str, Any]:
    """hyperparams.yaml as plain data; tags become :class:`Tagged`; nothing is constructed or run."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    def tagged(loader: Any, suffix: str, node: Any) -> Tagged:
        if isinstance(node, yaml.ScalarNode):
            value: Any = loader.construct_scalar(node)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)
        return Tagged("!" + suffix, value)

    Loader.add_multi_constructor("!", tagged)
    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.load(fh, Loader=Loader)  # a SafeLoader subclass: plain data only
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        reason = " ".join(str(exc).split())[:200]
        raise TsekitError(f"{path}: not a readable hyperparams file ({type(exc).__name__}: {reason})") from None
    if not isinstance(data, dict):
        raise TsekitError(f"{path}: expected a YAML mapping at the top level")
    return data


def _resolve(value: Any, root: dict[str, Any], path: Any, depth: int = 0) -> Any:
    """Resolve ``!ref <key>`` (also dotted ``<a.b>``) recursively; other tags keep their label."""
    import re

    if depth > 32:
        raise TsekitError(f"{path}: !ref cycle")
    if isinstance(value, Tagged):
        if value.tag == "!ref":
            match = re.fullmatch(r"\s*<([\w.]+)>\s*", str(value.value))
            if not match:
                raise TsekitError(f"{path}: unsupported !ref expression {value.value!r}")
            target: Any = root
            for part in match.group(1).split("."):
                target = target.value if isinstance(target, Tagged) else target
                if not isinstance(target, dict) or part not in target:
                    raise TsekitError(f"{path}: !ref to an undefined key <{match.group(1)}>")
                target = target[part]
            return _resolve(target, root, path, depth + 1)
        if value.tag == "!PLACEHOLDER":
            raise TsekitError(f"{path}: a value needed here is !PLACEHOLDER")
        return Tagged(value.tag, _resolve(value.value, root, path, depth + 1))
    if isinstance(value, dict):
        return {k: _resolve(v, root, path, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, root, path, depth + 1) for v in value]
    return value


def _section(data: dict[str, Any], key: str, path: Any) -> tuple[str | None, dict[str, Any]] | None:
    """``(class path, options)`` of a ``key: !new:cls`` block, or None when absent."""
    if key not in data:
        return None
    node = _resolve(data[key], data, path)
    cls = None
    if isinstance(node, Tagged):
        cls = node.tag.split(":", 1)[1] if ":" in node.tag else None
        node = node.value
    if node in (None, ""):
        node = {}
    if not isinstance(node, dict):
        raise TsekitError(f"{path}: '{key}' is not a mapping of options")
    return cls, node


def _pick(name: str, explicit: Any, found: Any, default: Any, path: Any) -> Any:
    if explicit is not None and found is not None and explicit != found:
        hint = "; add source=none for an untrained encoder" if PRETRAINED in Path(path).parents else ""
        raise TsekitError(f"{path}: {name} is {found}, but the config asks for {explicit}{hint}")
    return found if found is not None else explicit if explicit is not None else default


def architecture(config: SpeechBrainEncoderConfig, family: str) -> Architecture:
    """The architecture for ``config``: explicit options ← source's hyperparams.yaml ← defaults."""
    fam = FAMILIES[family]
    model: dict[str, Any] = {k: list(v) if isinstance(v, list) else v for k, v in fam.fixed}
    features: dict[str, Any] = {}
    found_model: dict[str, Any] = {}
    arch = Architecture(family, model, features)
    path: Any = "config"
    n_mels_found = None
    folder = source_folder(config.source)
    if folder is not None:
        if not folder.is_dir():
            raise TsekitError(f"{folder}: no such speechbrain pretrained folder")
        path = folder / "hyperparams.yaml"
        if path.is_file():
            arch.origin = str(path)
            data = read_hyperparams(path)
            emb = _section(data, "embedding_model", path)
            if emb is None:
                raise TsekitError(f"{path}: no 'embedding_model' entry")
            cls, opts = emb
            if cls is not None and cls.rsplit(".", 1)[-1] != fam.class_path.rsplit(".", 1)[-1]:
                raise TsekitError(f"{path}: embedding_model is {cls}, not {fam.class_path} ({family})")
            found_model = {k: opts[k] for k in fam.model_keys if opts.get(k) is not None}
            act = opts.get("activation")
            if isinstance(act, Tagged):
                if not act.tag.startswith("!name:torch.nn."):
                    raise TsekitError(f"{path}: unsupported activation {act.tag}")
                arch.activation = act.tag.rsplit(".", 1)[-1]
            fb = _section(data, "compute_features", path)
            if fb is not None:
                fb_cls, fb_opts = fb
                if fb_cls is not None and not fb_cls.endswith(".Fbank"):
                    raise TsekitError(f"{path}: compute_features is {fb_cls}, only speechbrain Fbank is supported")
                if fb_opts.get("sample_rate", 16000) != 16000:
                    raise TsekitError(f"{path}: sample_rate {fb_opts['sample_rate']} (only 16000 is supported)")
                features.update({k: fb_opts[k] for k in FBANK_KEYS if fb_opts.get(k) is not None})
            n_mels_found = features.get("n_mels", found_model.get(fam.input_key, _resolve(data.get("n_mels"), data, path)))
            norm = _section(data, "mean_var_norm", path)
            if norm is not None:
                norm_type = norm[1].get("norm_type", "global")
                if norm_type != "sentence":
                    raise TsekitError(f"{path}: mean_var_norm norm_type {norm_type!r} (only 'sentence' is supported)")
                arch.std_norm = bool(norm[1].get("std_norm", True))
            emb_norm = _section(data, "mean_var_norm_emb", path)
            if emb_norm is not None:
                arch.embedding_std_norm = bool(emb_norm[1].get("std_norm", True))
    n_mels = _pick("n_mels", config.n_mels, n_mels_found, fam.default_n_mels, path)
    explicit_channels = fam.expand(config.channels) if config.channels is not None else None
    model.update(found_model)
    model[fam.channels_key] = _pick(
        fam.channels_key, explicit_channels, found_model.get(fam.channels_key), fam.expand(fam.default_channels), path
    )
    model["lin_neurons"] = _pick(
        "lin_neurons", config.lin_neurons, found_model.get("lin_neurons"), fam.default_lin_neurons, path
    )
    model.setdefault(fam.input_key, n_mels)
    features["n_mels"] = n_mels
    if not isinstance(model["lin_neurons"], int) or model["lin_neurons"] < 1:
        raise TsekitError(f"{path}: lin_neurons must be a positive integer, got {model['lin_neurons']!r}")
    return arch


# -- writing ------------------------------------------------------------------------------------


def _yaml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_yaml_value(v) for v in value) + "]"
    if isinstance(value, str):
        return json.dumps(value)
    return repr(value)


def hyperparams_text(arch: Architecture, with_embedding_norm: bool = False) -> str:
    """A speechbrain-style hyperparams.yaml describing ``arch`` (loadable by EncoderClassifier too)."""
    fam = FAMILIES[arch.family]
    lines = [
        f"# {arch.family} speaker encoder written by tsekit (layout of speechbrain's spkrec-*-voxceleb)",
        f"n_mels: {arch.features['n_mels']}",
        f"sample_rate: {SAMPLE_RATE}",
        "",
        "compute_features: !new:speechbrain.lobes.features.Fbank",
        "    n_mels: !ref <n_mels>",
    ]
    lines += [f"    {k}: {_yaml_value(v)}" for k, v in arch.features.items() if k != "n_mels"]
    lines += [
        "",
        "mean_var_norm: !new:speechbrain.processing.features.InputNormalization",
        "    norm_type: sentence",
        f"    std_norm: {_yaml_value(arch.std_norm)}",
        "",
        f"embedding_model: !new:{fam.class_path}",
    ]
    for k, v in sorted(arch.model.items(), key=lambda kv: kv[0] != fam.input_key):
        lines.append(f"    {k}: !ref <n_mels>" if k == fam.input_key and v == arch.features["n_mels"]
                     else f"    {k}: {_yaml_value(v)}")
    if arch.activation:
        lines.append(f"    activation: !name:torch.nn.{arch.activation}")
    modules = ["compute_features", "mean_var_norm", "embedding_model"]
    if with_embedding_norm:
        lines += [
            "",
            "mean_var_norm_emb: !new:speechbrain.processing.features.InputNormalization",
            "    norm_type: global",
            f"    std_norm: {_yaml_value(arch.embedding_std_norm)}",
        ]
        modules.append("mean_var_norm_emb")
    lines += ["", "modules:"] + [f"    {m}: !ref <{m}>" for m in modules]
    lines += ["", "pretrainer: !new:speechbrain.utils.parameter_transfer.Pretrainer", "    loadables:"]
    lines += [f"        {m}: !ref <{m}>" for m in modules if m in ("embedding_model", "mean_var_norm_emb")]
    return "\n".join(lines) + "\n"
