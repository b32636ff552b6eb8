"""BUT speakerbeam (BUTSpeechFIT/speakerbeam, asteroid) TD-SpeakerBeam checkpoints → tsekit models.

:func:`convert` takes the experiment's ``conf.yml`` as BUT's ``egs/libri2mix/train.py`` writes it (sections
``filterbank``, ``masknet``, ``enroll`` and ``data``; the model is
``TimeDomainSpeakerBeam(**filterbank, **masknet, sample_rate=data.sample_rate, **enroll)``, a missing argument
taking its default) and the model's state dict in BUT's key names (asteroid's package ``state_dict``; a
Lightning checkpoint's ``model.`` prefix is dropped). It returns a tsekit model spec and state dict that compute
BUT's outputs (``tests/test_reference_speakerbeam.py`` checks them against fixtures made by BUT's code):

- the free-filterbank encoder/decoder and the masker (asteroid's ``TDConvNet`` with an adaptation layer) →
  backbone ``speakerbeam`` with the options of its ``but8k`` preset (a linear encoder unless
  ``encoder_activation: relu``, gLN/cLN epsilon 1e-8, no end padding) and BUT's sizes, adapted at
  ``tcn.<i_adapt_layer>`` by fusion ``multiply`` without projection (``adapt_layer_type: mul``);
- the auxiliary network (its own linear free-filterbank encoder, a one-repeat ``TDConvNet``, the mean over
  frames) → encoder ``speakerbeam-aux`` with its own encoder (``share_encoder: false``), as its ``but8k`` preset.
  BUT's auxiliary network has no enrollment lengths (it averages every frame it is given): tsekit equals it for
  each enrollment cropped to its length.

Anything BUT would compute differently (``adapt_layer_type`` concat/muladd, ``skip_chan: 0``, another
filterbank, cumulative norms, a causal gLN model, other activations) raises a one-line
:class:`~tsekit.errors.ConfigError` naming the key; weights that do not fit the config, one naming the BUT weight.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from torch import Tensor

from tsekit.errors import ConfigError
from tsekit_builtin.importers.espnet import TSEKIT_NORM_KEYS, ReferenceWeights, full_config, tcn_pairs

MODEL_DEFAULTS: dict[str, Any] = {
    "out_chan": None, "n_blocks": 8, "n_repeats": 3, "bn_chan": 128, "hid_chan": 512, "skip_chan": 128,
    "conv_kernel_size": 3, "norm_type": "gLN", "mask_act": "sigmoid", "in_chan": None, "causal": False,
    "fb_name": "free", "kernel_size": 16, "n_filters": 512, "stride": 8, "encoder_activation": None,
    "sample_rate": 8000,
}
"""BUT's ``TimeDomainSpeakerBeam.__init__`` defaults (src/models/td_speakerbeam.py); ``i_adapt_layer``,
``adapt_layer_type`` and ``adapt_enroll_dim`` have none. Other keys go to the filterbank, which ignores them."""

SECTIONS = ("filterbank", "masknet", "enroll")
NORMS = {"gLN": "gLN", "GlobLN": "gLN", "cLN": "cLN", "ChanLN": "cLN", "bN": "BN", "BatchNorm": "BN"}
"""asteroid's norm names (``asteroid.masknn.norms.get``) → tsekit's."""
MASK_ACTIVATIONS = ("relu", "sigmoid", "tanh", "linear")
BUT_EPS = 1e-8
"""asteroid's gLN/cLN epsilon."""


def convert(config: Mapping[str, Any], state: Mapping[str, Tensor]) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """BUT's parsed ``conf.yml`` and ``TimeDomainSpeakerBeam`` state dict → (tsekit model spec, state dict)."""
    from tsekit_builtin.auxnet import AuxNetConfig
    from tsekit_builtin.speakerbeam import SpeakerBeamConfig

    args, where = _model_args(config)

    def get(key: str, check: Callable[[Any], bool], expected: str) -> Any:
        value = args[key]
        if not check(value):
            raise ConfigError(where[key], f"expected {expected}, got {value!r}")
        return value

    def size(key: str, minimum: int = 1) -> int:
        return int(get(key, lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= minimum,
                       f"an integer ≥ {minimum}"))

    if args["fb_name"] != "free":
        raise ConfigError(where["fb_name"], f"{args['fb_name']!r} is not convertible; tsekit's encoder is asteroid's "
                          "free filterbank (a convolution)")
    rate = size("sample_rate", 1000)
    n_filters, window = size("n_filters"), size("kernel_size")
    hop = window // 2 if args["stride"] is None else size("stride")
    if args["in_chan"] not in (None, n_filters):
        raise ConfigError(where["in_chan"], f"{args['in_chan']!r} must equal n_filters ({n_filters}), as BUT asserts")
    if args["out_chan"] not in (None, n_filters):
        raise ConfigError(where["out_chan"], f"{args['out_chan']!r} is not convertible: the masks have n_filters "
                          f"({n_filters}) channels")
    blocks, repeats = size("n_blocks"), size("n_repeats")
    bn, hid, kernel = size("bn_chan"), size("hid_chan"), size("conv_kernel_size")
    if not args["skip_chan"]:
        raise ConfigError(where["skip_chan"], f"{args['skip_chan']!r} (no skip paths) is not convertible: speakerbeam "
                          "always has skip paths")
    skip = size("skip_chan")
    causal = get("causal", lambda v: isinstance(v, bool), "true or false")
    norm = NORMS.get(args["norm_type"])
    if norm is None:
        raise ConfigError(where["norm_type"], f"{args['norm_type']!r} is not convertible; one of {', '.join(NORMS)}")
    if causal and norm == "gLN":
        raise ConfigError(where["norm_type"], "gLN in a causal model is not convertible: tsekit's causal models use "
                          "cLN or BN")
    mask_act = args["mask_act"]
    if mask_act not in MASK_ACTIVATIONS:
        raise ConfigError(where["mask_act"], f"{mask_act!r} is not convertible; one of {', '.join(MASK_ACTIVATIONS)}")
    activation = args["encoder_activation"] or "linear"
    if activation not in ("linear", "relu"):
        raise ConfigError(where["encoder_activation"], f"{activation!r} is not convertible; one of null, linear, relu")
    if args["adapt_layer_type"] != "mul":
        raise ConfigError(where["adapt_layer_type"], f"{args['adapt_layer_type']!r} is not convertible; tsekit maps "
                          "mul (the multiply fusion without projection)")
    if size("adapt_enroll_dim") != bn or skip != bn:
        raise ConfigError(where["adapt_enroll_dim"], f"mul needs adapt_enroll_dim ({args['adapt_enroll_dim']}), "
                          f"bn_chan ({bn}) and skip_chan ({skip}) to be equal")
    adapt = size("i_adapt_layer", 0)
    if adapt >= blocks * repeats:
        raise ConfigError(where["i_adapt_layer"], f"{adapt} is past the last block ({blocks * repeats - 1}); BUT "
                          "would adapt nowhere")

    site = f"tcn.{adapt}"
    input_norm = "auto" if ("cLN" if causal else norm) == norm else norm  # asteroid: the blocks' norm
    backbone = full_config(SpeakerBeamConfig, {
        "sample_rate": rate, "n_filters": n_filters, "kernel_size": window, "stride": hop, "n_blocks": blocks,
        "n_repeats": repeats, "bn_chan": bn, "hid_chan": hid, "skip_chan": skip, "conv_kernel_size": kernel,
        "norm": norm, "mask_act": mask_act, "causal": causal, "adapt_layer": adapt, "input_norm": input_norm,
        "bias": True, "norm_eps": BUT_EPS, "encoder_activation": activation, "pre_mask_act": "prelu",
        "pad_end": False,
    }, "masknet")
    encoder = full_config(AuxNetConfig, {
        "embedding_dim": 2 * bn, "sample_rate": rate, "share_encoder": False, "n_filters": n_filters,
        "kernel_size": window, "stride": hop, "encoder_activation": "linear", "n_blocks": blocks, "bn_chan": bn,
        "hid_chan": hid, "skip_chan": skip, "conv_kernel_size": kernel, "norm": norm, "input_norm": input_norm,
        "bias": True, "norm_eps": BUT_EPS, "pre_mask_act": "prelu",
    }, "masknet")

    if state and all(str(k).startswith("model.") for k in state):  # a Lightning checkpoint of BUT's System
        state = {str(k)[len("model."):]: v for k, v in state.items()}
    weights = ReferenceWeights(state, "BUT", "conf.yml")
    filters = (n_filters, 1, window)
    weights.copy([
        ("backbone.encoder.weight", "encoder.filterbank._filters", filters, False),
        ("backbone.decoder.weight", "decoder.filterbank._filters", filters, False),
        ("encoder.frontend.weight", "auxiliary.1.filterbank._filters", filters, False),
    ])
    sizes = {"in_chan": n_filters, "bn": bn, "hid": hid, "skip": skip, "kernel": kernel, "norm": norm,
             "input_norm": norm, "bias": True, "pre_act": "prelu"}
    weights.copy(tcn_pairs("backbone.tcn", {**sizes, "out_chan": n_filters, "blocks": blocks * repeats},
                           _asteroid_names("masker", causal), _norm_names))
    weights.copy(tcn_pairs("encoder.tcn", {**sizes, "out_chan": 2 * bn, "blocks": blocks},
                           _asteroid_names("auxiliary.2", False), _norm_names))
    weights.check_all_used()
    spec = {
        "encoder": "speakerbeam-aux", "fusion": "multiply", "backbone": "speakerbeam", "adapt_layers": [site],
        "encoder_config": encoder, "fusion_config": {"project": False}, "backbone_config": backbone,
        "share_fusion": False,
    }
    return spec, weights.out


def _model_args(config: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """``TimeDomainSpeakerBeam``'s arguments as ``train.py`` passes them, and the conf.yml key of each."""
    if not isinstance(config, Mapping):
        raise ConfigError("conf.yml", f"must be a mapping, got {type(config).__name__}")
    filterbank = ("fb_name", "kernel_size", "n_filters", "stride")
    args = dict(MODEL_DEFAULTS)
    where = {key: f"{'filterbank' if key in filterbank else 'masknet'}.{key}" for key in MODEL_DEFAULTS}
    for name in SECTIONS:
        section = config.get(name)
        if not isinstance(section, Mapping):
            raise ConfigError(name, "missing or not a mapping: a BUT conf.yml has filterbank, masknet, enroll and data")
        for key, value in section.items():
            args[str(key)], where[str(key)] = value, f"{name}.{key}"
    data = config.get("data")
    if isinstance(data, Mapping) and "sample_rate" in data:
        args["sample_rate"], where["sample_rate"] = data["sample_rate"], "data.sample_rate"
    for key in ("i_adapt_layer", "adapt_layer_type", "adapt_enroll_dim"):
        if key not in args:
            raise ConfigError(f"enroll.{key}", "missing: BUT's TimeDomainSpeakerBeam has no default for it")
    return args, where


def _norm_names(kind: str) -> tuple[str, ...]:
    """asteroid's norm parameters in tsekit's order: its gLN/cLN have gamma and beta; its BatchNorm is torch's."""
    return TSEKIT_NORM_KEYS["BN"] if kind == "BN" else ("gamma", "beta")


def _asteroid_names(prefix: str, causal: bool) -> Callable[[str, int], str]:
    """Key prefixes in asteroid's ``TDConvNet`` at ``prefix`` (``bottleneck`` = norm, 1×1 conv; ``TCN.i`` =
    ``Conv1DBlock``: ``shared_block`` = 1×1 conv, PReLU, norm, depthwise conv [+ chop when causal], PReLU, norm;
    ``res_conv``, ``skip_conv``; ``mask_net`` = PReLU, 1×1 conv)."""
    outer = {"in_norm": "bottleneck.0", "bottleneck": "bottleneck.1", "pre_act": "mask_net.0", "mask": "mask_net.1"}
    inner = {"in_conv": "shared_block.0", "act1": "shared_block.1", "norm1": "shared_block.2",
             "dconv": "shared_block.3.0" if causal else "shared_block.3", "act2": "shared_block.4",
             "norm2": "shared_block.5", "res_conv": "res_conv", "skip_conv": "skip_conv"}

    def name(part: str, block: int) -> str:
        return f"{prefix}.{outer[part]}" if block < 0 else f"{prefix}.TCN.{block}.{inner[part]}"

    return name
