"""ESPnet-TSE (espnet2, ``egs2/*/tse1``) TD-SpeakerBeam checkpoints → tsekit models.

:func:`convert` takes the experiment's ``config.yaml`` as ESPnet writes it (``encoder``/``encoder_conf``,
``extractor``/``extractor_conf``, ``decoder``/``decoder_conf``, ``model_conf``, ``sample_rate``; a missing
extractor argument takes ESPnet's default) and the ``*.pth`` state dict of ``ESPnetExtractionModel`` in ESPnet's
key names. It returns a tsekit model spec and state dict that compute ESPnet's ``forward_enhance`` outputs
(``tests/test_reference_speakerbeam.py`` checks them against fixtures made by ESPnet's code):

- encoder ``conv``, extractor ``td_speakerbeam``, decoder ``conv`` → backbone ``speakerbeam`` with the
  options of its ``espnet16k`` preset (cLN on the input, no biases, float32-eps norms, no end padding) and
  ESPnet's sizes, adapted at ``tcn.<i_adapt_layer>`` by fusion ``multiply`` without projection
  (``adapt_layer_type: mul``);
- the auxiliary network → encoder ``speakerbeam-aux`` sharing the backbone's encoder (``model_conf.share_encoder``),
  options of its ``espnet16k`` preset. tsekit equals ESPnet for each enrollment on its own (and for batches of
  equal enrollment lengths): ESPnet's batch results depend on the padding of shorter enrollments;
- ``use_spk_emb: true`` → encoder ``precomputed`` of ``spk_emb_dim`` and fusion ``multiply`` with projection
  (ESPnet's 1×1 conv with bias is that projection): call the model with ``embedding=``.

Anything ESPnet would compute differently (``adapt_layer_type`` concat/muladd, ``skip_dim: null``,
``norm_type: GN``, a causal gLN model, other encoders/extractors) raises a one-line
:class:`~tsekit.errors.ConfigError` naming the key; weights that do not fit the config, one naming the ESPnet
weight. :class:`ReferenceWeights` and :func:`tcn_pairs` are shared with :mod:`.but`.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from dataclasses import asdict
from typing import Any

from torch import Tensor

from tsekit.errors import ConfigError
from tsekit_builtin.speakerbeam import ESPNET_EPS

EXTRACTOR_DEFAULTS: dict[str, Any] = {
    "layer": 8, "stack": 3, "bottleneck_dim": 128, "hidden_dim": 512, "skip_dim": 128, "kernel": 3, "causal": False,
    "norm_type": "gLN", "pre_nonlinear": "prelu", "nonlinear": "relu", "i_adapt_layer": 7, "adapt_layer_type": "mul",
    "adapt_enroll_dim": 128, "use_spk_emb": False, "spk_emb_dim": 256,
}
"""ESPnet's ``TDSpeakerBeamExtractor.__init__`` arguments and defaults (after ``input_dim``)."""

NORMS = ("gLN", "cLN", "BN")
PRE_ACTIVATIONS = ("prelu", "relu", "tanh", "sigmoid", "linear")
MASK_ACTIVATIONS = ("relu", "sigmoid", "tanh", "linear")
TSEKIT_NORM_KEYS = {
    "gLN": ("weight", "bias"),
    "cLN": ("norm.weight", "norm.bias"),
    "BN": ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"),
}
"""The parameter names of tsekit's norms (``speakerbeam.modules.make_tcn_norm``)."""


class ReferenceWeights:
    """A reference toolkit's state dict, consumed key by key with shape checks; ``out`` is tsekit's state dict."""

    def __init__(self, state: Mapping[str, Tensor], toolkit: str, config_name: str) -> None:
        self.state, self.toolkit, self.config_name = dict(state), toolkit, config_name
        self.used: set[str] = set()
        self.out: dict[str, Tensor] = {}

    def take(self, key: str, shape: tuple[int, ...], flatten: bool = False) -> Tensor:
        """The tensor at ``key``, of ``shape`` (``flatten``: any shape of as many elements, e.g. [1, C, 1] → [C])."""
        if key not in self.state:
            close = difflib.get_close_matches(key, [k for k in self.state if k not in self.used], n=1)
            hint = f" (the closest is {close[0]!r})" if close else ""
            raise ConfigError(f"{self.toolkit} weights", f"no {key!r}, which {self.config_name} implies{hint}")
        tensor = self.state[key]
        fits = tensor.numel() == _numel(shape) if flatten else tuple(tensor.shape) == shape
        if not fits:
            raise ConfigError(f"{self.toolkit} weights",
                              f"{key!r} has shape {tuple(tensor.shape)} but {self.config_name} implies {shape}")
        self.used.add(key)
        return tensor.detach().reshape(shape).clone()

    def copy(self, pairs: list[tuple[str, str, tuple[int, ...], bool]]) -> None:
        """``(tsekit key, reference key, shape, flatten)`` → ``out``."""
        for dst, src, shape, flatten in pairs:
            self.out[dst] = self.take(src, shape, flatten)

    def check_all_used(self) -> None:
        left = sorted(k for k in self.state if k not in self.used)
        if left:
            more = f" and {len(left) - 1} more" if len(left) > 1 else ""
            raise ConfigError(f"{self.toolkit} weights",
                              f"{left[0]!r}{more} are not part of the model that {self.config_name} describes")


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def norm_pairs(dst: str, src: str, kind: str, channels: int, src_names: tuple[str, ...]) -> list[Any]:
    """tsekit norm ``dst`` ← reference norm ``src`` (its parameter names ``src_names``, in tsekit's order)."""
    shapes = [(channels,)] * 4 + [()]
    return [(f"{dst}.{d}", f"{src}.{s}", shape, True)
            for d, s, shape in zip(TSEKIT_NORM_KEYS[kind], src_names, shapes, strict=False)]


def tcn_pairs(
    dst: str, sizes: Mapping[str, Any], names: Callable[[str, int], str], norm_names: Callable[[str], tuple[str, ...]],
) -> list[Any]:
    """Pairs for a tsekit :class:`~tsekit_builtin.speakerbeam.modules.TCN` at ``dst`` from a reference TCN whose
    key for ``part`` of block ``i`` (or ``-1`` for the parts outside the blocks) is ``names(part, i)``.

    ``sizes``: in_chan, out_chan, bn, hid, skip, kernel, blocks, norm, input_norm, bias, pre_act."""
    s = sizes
    bias = [("bias", (s["bn"],))] if s["bias"] else []
    pairs: list[Any] = []
    pairs += norm_pairs(f"{dst}.in_norm", names("in_norm", -1), s["input_norm"], s["in_chan"],
                        norm_names(s["input_norm"]))
    pairs += [(f"{dst}.bottleneck.{p}", f"{names('bottleneck', -1)}.{p}", shape, False)
              for p, shape in [("weight", (s["bn"], s["in_chan"], 1)), *bias]]
    for i in range(s["blocks"]):
        d = f"{dst}.blocks.{i}"
        convs = {
            "in_conv": ((s["hid"], s["bn"], 1), s["hid"]),
            "dconv": ((s["hid"], 1, s["kernel"]), s["hid"]),
            "res_conv": ((s["bn"], s["hid"], 1), s["bn"]),
            "skip_conv": ((s["skip"], s["hid"], 1), s["skip"]),
        }
        for conv, (shape, out) in convs.items():
            pairs.append((f"{d}.{conv}.weight", f"{names(conv, i)}.weight", shape, False))
            if s["bias"]:
                pairs.append((f"{d}.{conv}.bias", f"{names(conv, i)}.bias", (out,), False))
        for act in ("act1", "act2"):
            pairs.append((f"{d}.{act}.weight", f"{names(act, i)}.weight", (1,), False))
        for norm in ("norm1", "norm2"):
            pairs += norm_pairs(f"{d}.{norm}", names(norm, i), s["norm"], s["hid"], norm_names(s["norm"]))
    if s["pre_act"] == "prelu":
        pairs.append((f"{dst}.mask.0.weight", f"{names('pre_act', -1)}.weight", (1,), False))
    pairs.append((f"{dst}.mask.1.weight", f"{names('mask', -1)}.weight", (s["out_chan"], s["skip"], 1), False))
    if s["bias"]:
        pairs.append((f"{dst}.mask.1.bias", f"{names('mask', -1)}.bias", (s["out_chan"],), False))
    return pairs


def full_config(config_class: Callable[..., Any], values: Mapping[str, Any], key: str) -> dict[str, Any]:
    """A tsekit component's full config dict; a value it refuses names the reference's ``key``."""
    try:
        return asdict(config_class(**values))
    except ValueError as exc:
        raise ConfigError(key, f"not convertible: {exc}") from None


def site_key(site: str) -> str:
    """The key of a site's fusion in ``TSEModel.fusions``."""
    return site.replace(".", "__")


# ---------------------------------------------------------------------------------------------------- ESPnet


def _section(config: Mapping[str, Any], name: str, required: bool = True) -> Mapping[str, Any]:
    section = config.get(name) if isinstance(config, Mapping) else None
    if section is None and not required:
        return {}
    if not isinstance(section, Mapping):
        raise ConfigError(name, f"missing or not a mapping: an ESPnet TSE config.yaml has {name}")
    return section


def _choice(config: Mapping[str, Any], key: str, expected: str) -> None:
    value = config.get(key) if isinstance(config, Mapping) else None
    if value != expected:
        raise ConfigError(key, f"{value!r} is not convertible; tsekit's TD-SpeakerBeam maps {key}: {expected}")


def _int(section: Mapping[str, Any], where: str, key: str, minimum: int = 1) -> int:
    value = section.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{where}.{key}", f"expected an integer ≥ {minimum}, got {value!r}")
    return value


def _one_of(section: Mapping[str, Any], where: str, key: str, allowed: tuple[str, ...], why: str = "") -> str:
    value = section.get(key)
    if value not in allowed:
        raise ConfigError(f"{where}.{key}", f"{value!r} is not convertible; one of {', '.join(allowed)}{why}")
    return str(value)


def _bool(section: Mapping[str, Any], where: str, key: str) -> bool:
    value = section.get(key)
    if not isinstance(value, bool):
        raise ConfigError(f"{where}.{key}", f"expected true or false, got {value!r}")
    return value


def convert(config: Mapping[str, Any], state: Mapping[str, Tensor]) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """ESPnet's parsed ``config.yaml`` and ``ESPnetExtractionModel`` state dict → (tsekit model spec, state dict)."""
    from tsekit_builtin.auxnet import AuxNetConfig
    from tsekit_builtin.core import PrecomputedConfig
    from tsekit_builtin.speakerbeam import SpeakerBeamConfig

    for key, expected in (("encoder", "conv"), ("decoder", "conv"), ("extractor", "td_speakerbeam")):
        _choice(config, key, expected)
    rate = config.get("sample_rate", 8000)  # ESPnet's --sample_rate default
    if isinstance(rate, bool) or not isinstance(rate, int) or rate < 1000:
        raise ConfigError("sample_rate", f"expected a sample rate in Hz, got {rate!r}")
    enc = _section(config, "encoder_conf")
    channels, window, hop = (_int(enc, "encoder_conf", k) for k in ("channel", "kernel_size", "stride"))
    dec = _section(config, "decoder_conf")
    for key, value in (("channel", channels), ("kernel_size", window), ("stride", hop)):
        if dec.get(key) != value:
            raise ConfigError(f"decoder_conf.{key}", f"{dec.get(key)!r} differs from encoder_conf.{key} ({value}); "
                              "tsekit's encoder and decoder share their sizes")
    given = _section(config, "extractor_conf", required=False)
    for key in given:
        if key not in EXTRACTOR_DEFAULTS:
            close = difflib.get_close_matches(str(key), list(EXTRACTOR_DEFAULTS), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ConfigError(f"extractor_conf.{key}", f"not an argument of ESPnet's TDSpeakerBeamExtractor{hint}")
    x = {**EXTRACTOR_DEFAULTS, **given}
    w = "extractor_conf"
    layers, stacks = _int(x, w, "layer"), _int(x, w, "stack")
    bn, hid, kernel = _int(x, w, "bottleneck_dim"), _int(x, w, "hidden_dim"), _int(x, w, "kernel")
    if x["skip_dim"] is None:
        raise ConfigError(f"{w}.skip_dim", "null (no skip paths) is not convertible: speakerbeam always has skip paths")
    skip = _int(x, w, "skip_dim")
    if skip != bn:
        raise ConfigError(f"{w}.skip_dim", f"{skip} must equal bottleneck_dim ({bn}), as ESPnet asserts")
    causal, use_spk_emb = _bool(x, w, "causal"), _bool(x, w, "use_spk_emb")
    norm = _one_of(x, w, "norm_type", NORMS, " (ESPnet's GN has another epsilon than its cLN input norm)")
    if causal and norm == "gLN":
        raise ConfigError(f"{w}.norm_type", "gLN in a causal model is not convertible: tsekit's causal models use cLN or BN")
    pre_act = _one_of(x, w, "pre_nonlinear", PRE_ACTIVATIONS)
    mask_act = _one_of(x, w, "nonlinear", MASK_ACTIVATIONS)
    _one_of(x, w, "adapt_layer_type", ("mul",), " (the multiply fusion without projection)")
    if _int(x, w, "adapt_enroll_dim") != bn:
        raise ConfigError(f"{w}.adapt_enroll_dim", f"{x['adapt_enroll_dim']} must equal bottleneck_dim ({bn}) for mul")
    adapt = _int(x, w, "i_adapt_layer", minimum=0)
    if adapt >= layers * stacks:
        raise ConfigError(f"{w}.i_adapt_layer", f"{adapt} is past the last block ({layers * stacks - 1}); ESPnet "
                          "would adapt nowhere")
    model_conf = _section(config, "model_conf", required=False)
    share = model_conf.get("share_encoder", True)
    if share != (not use_spk_emb):
        why = ("the encoder cannot encode a speaker embedding" if use_spk_emb
               else "the auxiliary network needs the encoded enrollment")
        raise ConfigError("model_conf.share_encoder", f"{share!r} with extractor_conf.use_spk_emb: {use_spk_emb} "
                          f"is not a working ESPnet model ({why})")

    site = f"tcn.{adapt}"
    backbone = full_config(SpeakerBeamConfig, {
        "sample_rate": rate, "n_filters": channels, "kernel_size": window, "stride": hop, "n_blocks": layers,
        "n_repeats": stacks, "bn_chan": bn, "hid_chan": hid, "skip_chan": skip, "conv_kernel_size": kernel,
        "norm": norm, "mask_act": mask_act, "causal": causal, "adapt_layer": adapt, "input_norm": "cLN",
        "bias": False, "norm_eps": ESPNET_EPS, "encoder_activation": "relu", "pre_mask_act": pre_act,
        "pad_end": False,
    }, w)
    weights = ReferenceWeights(state, "ESPnet", "config.yaml")
    sizes = {"in_chan": channels, "bn": bn, "hid": hid, "skip": skip, "kernel": kernel, "norm": norm,
             "input_norm": "cLN", "bias": False, "pre_act": pre_act}
    weights.copy([
        ("backbone.encoder.weight", "encoder.conv1d.weight", (channels, 1, window), False),
        ("backbone.decoder.weight", "decoder.convtrans1d.weight", (channels, 1, window), False),
    ])
    tcn = {**sizes, "out_chan": channels, "blocks": layers * stacks}
    weights.copy(tcn_pairs("backbone.tcn", tcn, _espnet_names("extractor.tcn", layers, causal, pre_act), _norm_names))
    spec: dict[str, Any] = {"fusion": "multiply", "backbone": "speakerbeam", "adapt_layers": [site],
                            "backbone_config": backbone, "share_fusion": False}
    if use_spk_emb:
        dim = _int(x, w, "spk_emb_dim")
        spec["encoder"], spec["fusion_config"] = "precomputed", {"project": True}
        spec["encoder_config"] = full_config(PrecomputedConfig, {"embedding_dim": dim, "sample_rate": rate}, w)
        fusion = f"fusions.{site_key(site)}.proj"
        weights.copy([
            (f"{fusion}.weight", "extractor.auxiliary_net.weight", (2 * bn, dim), True),
            (f"{fusion}.bias", "extractor.auxiliary_net.bias", (2 * bn,), False),
        ])
    else:
        spec["encoder"], spec["fusion_config"] = "speakerbeam-aux", {"project": False}
        spec["encoder_config"] = full_config(AuxNetConfig, {
            "embedding_dim": 2 * bn, "sample_rate": rate, "share_encoder": True, "n_filters": channels,
            "kernel_size": window, "stride": hop, "encoder_activation": "relu", "n_blocks": layers, "bn_chan": bn,
            "hid_chan": hid, "skip_chan": skip, "conv_kernel_size": kernel, "norm": norm, "input_norm": "cLN",
            "bias": False, "norm_eps": ESPNET_EPS, "pre_mask_act": pre_act,
        }, w)
        aux = {**sizes, "out_chan": 2 * bn, "blocks": layers}
        names = _espnet_names("extractor.auxiliary_net", layers, False, pre_act)
        weights.copy(tcn_pairs("encoder.tcn", aux, names, _norm_names))
    weights.check_all_used()
    return {key: spec[key] for key in ("encoder", "fusion", "backbone", "adapt_layers", "encoder_config",
                                       "fusion_config", "backbone_config", "share_fusion")}, weights.out


def _norm_names(kind: str) -> tuple[str, ...]:
    """ESPnet's norm parameters in tsekit's order: its own gLN/cLN have gamma and beta; BN is torch's."""
    return TSEKIT_NORM_KEYS["BN"] if kind == "BN" else ("gamma", "beta")


def _espnet_names(prefix: str, layers: int, causal: bool, pre_act: str) -> Callable[[str, int], str]:
    """Key prefixes in ESPnet's ``TemporalConvNet`` at ``prefix`` (``network`` = norm, bottleneck, repeats,
    [activation], mask conv; a block's ``net`` = 1×1 conv, PReLU, norm, depthwise-separable conv, whose own
    ``net`` = depthwise conv, [Chomp1d when causal], PReLU, norm, pointwise conv)."""
    shift = 1 if causal else 0
    outer = {"in_norm": "0", "bottleneck": "1", "pre_act": "3", "mask": "3" if pre_act == "linear" else "4"}
    inner = {"in_conv": "net.0", "act1": "net.1", "norm1": "net.2", "dconv": "net.3.net.0",
             "act2": f"net.3.net.{1 + shift}", "norm2": f"net.3.net.{2 + shift}",
             "res_conv": f"net.3.net.{3 + shift}", "skip_conv": "net.3.skip_conv"}

    def name(part: str, block: int) -> str:
        if block < 0:
            return f"{prefix}.network.{outer[part]}"
        return f"{prefix}.network.2.{block // layers}.{block % layers}.{inner[part]}"

    return name
