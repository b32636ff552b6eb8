"""WeSep (wenet-e2e/wesep) checkpoints → tsekit models.

:func:`convert` takes WeSep's experiment config as its recipe writes it (``model.tse_model`` names the class,
``model_args.tse_model`` holds its arguments, a missing one takes WeSep's default; ``dataset_args.resample_rate``
is the rate) and the model's state dict in WeSep's key names. It returns a tsekit model spec and state dict that
compute WeSep's outputs (``tests/test_reference_wesep.py`` checks them against fixtures made by WeSep's code).

- ``BSRNN`` → backbone ``bsrnn`` (its default, alias preset ``wesep``). WeSep orders a band's input channels
  real parts first, then imaginary parts; tsekit puts each bin's pair side by side, so the band-split norm's
  and linear's weights are permuted. ``spk_fuse_type`` multiply / additive / concat / FiLM → fusion
  ``multiply`` / ``add`` / ``concat`` / ``film`` at ``bandsplit`` (``multi_fuse``: before every repeat,
  i.e. also at ``repeat.0 … repeat.R-2``).
- ``ConvTasNet`` as SpEx+ (``encoder_type``/``decoder_type: Multi``, ``spk_fuse_type: concatConv``,
  ``multi_fuse``) → backbone ``spexplus`` with its ``wesep`` preset's options and fusion ``add`` at the hidden
  site of each stack's first block: WeSep's 1×1 conv over ``[x; e]`` splits into the block's conv (the x
  columns and the bias) and the fusion's projection (the e columns, zero bias). Its ``ResNet4SpExplus``
  speaker encoder (``joint_training``, ``spk_feat: false``) → encoder ``joint`` sharing the backbone's speech
  encoder, with the joint ``wesep`` preset's options; the ResNet's widths are read from the weights;
  ``pred_linear`` (``multi_task``) → its classifier.

Speaker models. A WeSep separator either takes an embedding computed outside it (``joint_training: false``,
as in the v1 recipes, which feed embeddings of a pretrained wespeaker model) or embeds the enrollment itself
with a jointly trained wespeaker network (ResNet34, ECAPA_TDNN_GLOB_c512, CAMPPlus …; the v2 recipes and the
released ``bsrnn_ecapa_vox1``). The first converts exactly, to encoder ``precomputed`` of ``spk_emb_dim``:
call the model with ``embedding=`` the same embeddings. The second is refused with a ConfigError naming
``joint_training`` (``spk_feat`` for ConvTasNet): tsekit has no wespeaker network, and an untrained encoder
of the same size would throw away trained weights that the checkpoint holds and make a model that is not
WeSep's. SpEx+'s own ResNet encoder converts (above).

Anything else that WeSep's code would build differently (``use_spk_transform``, other models, fuse types,
encoders, decoders, ``skip_con``, ``activate``, ``norm: BN``, a causal gLN model) raises a one-line
:class:`~tsekit.errors.ConfigError` naming the key; weights that do not fit the config, a one-line
:class:`~tsekit.errors.TsekitError` naming the WeSep key.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from dataclasses import asdict
from typing import Any

import torch
from torch import Tensor

from tsekit.errors import ConfigError, TsekitError

BSRNN_DEFAULTS: dict[str, Any] = {
    "spk_emb_dim": 256, "sr": 16000, "win": 512, "stride": 128, "feature_dim": 128, "num_repeat": 6,
    "use_spk_transform": True, "use_bidirectional": True, "spk_fuse_type": "concat", "multi_fuse": True,
    "joint_training": True, "multi_task": False, "spksInTrain": 251, "spk_model": None, "spk_model_init": None,
    "spk_model_freeze": False, "spk_args": None, "spk_feat": False, "feat_type": "consistent",
}
"""WeSep's ``BSRNN.__init__`` arguments and defaults (wesep/models/bsrnn.py)."""

CONVTASNET_DEFAULTS: dict[str, Any] = {
    "N": 512, "L": 16, "B": 128, "H": 512, "P": 3, "X": 8, "R": 3, "spk_emb_dim": 256, "norm": "gLN",
    "activate": "relu", "causal": False, "skip_con": False, "spk_fuse_type": "concatConv", "multi_fuse": True,
    "use_spk_transform": True, "encoder_type": "Multi", "decoder_type": "Multi", "joint_training": True,
    "multi_task": False, "spksInTrain": 251, "spk_model": None, "spk_model_init": None, "spk_model_freeze": False,
    "spk_args": None, "spk_feat": False, "feat_type": "consistent",
}
"""WeSep's ``ConvTasNet.__init__`` arguments and defaults (wesep/models/convtasnet.py)."""

BSRNN_FUSIONS = {"multiply": "multiply", "additive": "add", "concat": "concat", "FiLM": "film"}
"""WeSep's ``SpeakerFuseLayer`` types → tsekit fusions."""

ARGS = "model_args.tse_model"


def convert(config: Mapping[str, Any], state: Mapping[str, Tensor]) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """WeSep's parsed config and model state dict → (tsekit model spec, tsekit ``TSEModel`` state dict)."""
    model = _section(config, "model").get("tse_model")
    if model not in ("BSRNN", "ConvTasNet"):
        reason = f"{model!r} has no tsekit counterpart; convertible: BSRNN, ConvTasNet (SpEx+)"
        raise ConfigError("model.tse_model", reason)
    args = _section(config, "model_args").get("tse_model") or {}
    if not isinstance(args, Mapping):
        raise ConfigError(ARGS, f"must be a mapping of {model}'s arguments, got {type(args).__name__}")
    defaults = BSRNN_DEFAULTS if model == "BSRNN" else CONVTASNET_DEFAULTS
    for key in args:
        if key not in defaults:
            close = difflib.get_close_matches(str(key), list(defaults), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ConfigError(f"{ARGS}.{key}", f"not an argument of WeSep's {model}{hint}")
    weights = _Weights(state)
    if model == "BSRNN":
        spec = _bsrnn(_Args({**defaults, **args}), weights)
    else:
        dataset = config.get("dataset_args") or {}
        rate = dataset.get("resample_rate", 16000) if isinstance(dataset, Mapping) else 16000
        if isinstance(rate, bool) or not isinstance(rate, int) or rate < 1000:
            raise ConfigError("dataset_args.resample_rate", f"expected a sample rate in Hz, got {rate!r}")
        spec = _spexplus(_Args({**defaults, **args}), rate, weights)
    weights.check_all_used()
    return spec, weights.out


def _section(config: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    section = config.get(name) if isinstance(config, Mapping) else None
    if not isinstance(section, Mapping):
        raise ConfigError(name, "missing: a WeSep config has the sections model and model_args (tse_model in each)")
    return section


class _Args:
    """WeSep's model arguments, read with type checks that name the key."""

    def __init__(self, values: Mapping[str, Any]) -> None:
        self.values = values

    def integer(self, key: str, minimum: int = 1) -> int:
        value = self.values[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ConfigError(f"{ARGS}.{key}", f"expected an integer ≥ {minimum}, got {value!r}")
        return value

    def flag(self, key: str) -> bool:
        value = self.values[key]
        if not isinstance(value, bool):
            raise ConfigError(f"{ARGS}.{key}", f"expected true or false, got {value!r}")
        return value

    def require(self, key: str, expected: Any, reason: str) -> None:
        if self.values[key] != expected:
            value = self.values[key]
            raise ConfigError(f"{ARGS}.{key}", f"{value!r} is not convertible ({reason}); tsekit needs {expected!r}")

    def refuse_joint_speaker_model(self, key: str) -> None:
        speaker_model = self.values.get("spk_model") or "a wespeaker model"
        raise ConfigError(
            f"{ARGS}.{key}",
            f"the checkpoint's speaker encoder is the jointly trained wespeaker network {speaker_model}, which tsekit "
            "does not have; only separators that take a given embedding (joint_training: false) convert",
        )


class _Weights:
    """WeSep's state dict, consumed key by key with shape checks; ``out`` collects the tsekit state dict."""

    def __init__(self, state: Mapping[str, Tensor]) -> None:
        self.state = dict(state)
        self.used: set[str] = set()
        self.out: dict[str, Tensor] = {}

    def take(self, key: str, shape: tuple[int, ...]) -> Tensor:
        if key not in self.state:
            raise TsekitError(f"WeSep weights: no {key!r}, which the config ({ARGS}) implies")
        tensor = self.state[key]
        if tuple(tensor.shape) != shape:
            raise TsekitError(
                f"WeSep weights: {key!r} has shape {tuple(tensor.shape)} but the config ({ARGS}) implies {shape}"
            )
        self.used.add(key)
        return tensor.detach().clone()

    def has(self, key: str) -> bool:
        return key in self.state

    def copy(self, pairs: Mapping[str, str], shapes: Mapping[str, tuple[int, ...]], src: str, dst: str) -> None:
        """``src + a`` → ``dst + b`` for each suffix pair ``a: b``, with ``shapes[a]``."""
        for a, b in pairs.items():
            self.out[dst + b] = self.take(src + a, shapes[a])

    def check_all_used(self) -> None:
        left = [k for k in self.state if k not in self.used]
        if left:
            more = f" and {len(left) - 3} more" if len(left) > 3 else ""
            raise TsekitError(f"WeSep weights: {left[:3]}{more} are not part of the model that {ARGS} describes")


def _full_config(config_class: Callable[..., Any], values: Mapping[str, Any], key: str) -> dict[str, Any]:
    """A tsekit component's full config dict; a value it refuses names WeSep's ``key``."""
    try:
        return asdict(config_class(**values))
    except ValueError as exc:
        raise ConfigError(f"{ARGS}.{key}", f"not convertible: {exc}") from None


def _site_key(site: str) -> str:
    return site.replace(".", "__")


# ---------------------------------------------------------------------------------------------------- BSRNN


def _bsrnn(args: _Args, weights: _Weights) -> dict[str, Any]:
    from tsekit_builtin.bsrnn import BSRNNConfig
    from tsekit_builtin.core import PrecomputedConfig
    from tsekit_builtin.fusions import ConcatConfig, FiLMConfig, ProjectConfig

    args.require("use_spk_transform", False, "WeSep's speaker-transform MLP has no tsekit counterpart")
    args.require("use_bidirectional", True, "WeSep's BSRNN is built for bidirectional LSTMs only")
    if args.flag("joint_training"):
        args.refuse_joint_speaker_model("joint_training")
    fuse = args.values["spk_fuse_type"]
    if fuse not in BSRNN_FUSIONS:
        raise ConfigError(f"{ARGS}.spk_fuse_type", f"{fuse!r} is not convertible; one of {', '.join(BSRNN_FUSIONS)}")
    rate, dim = args.integer("sr"), args.integer("spk_emb_dim")
    n, repeats = args.integer("feature_dim"), args.integer("num_repeat")
    win, hop = args.integer("win"), args.integer("stride")
    if hop > win // 2:
        reason = f"{hop} is not convertible: tsekit's bsrnn needs hop ≤ win/2 = {win // 2}"
        raise ConfigError(f"{ARGS}.stride", reason)
    backbone = _full_config(
        BSRNNConfig,
        {
            "sample_rate": rate, "win": win, "hop": hop,
            "band_widths_hz": (100, 200, 500, 2000), "band_counts": (15, 10, 5, 1),
            "feature_dim": n, "num_repeats": repeats, "rnn_hidden": 2 * n, "mask_hidden_mult": 4,
        },
        "sr",
    )
    widths = BSRNNConfig(**backbone).bands()
    multi_fuse = args.flag("multi_fuse")
    sites = ["bandsplit", *(f"repeat.{r}" for r in range(repeats - 1))] if multi_fuse else ["bandsplit"]

    for i, w in enumerate(widths):
        order = torch.arange(2 * w).reshape(2, w).T.reshape(-1)  # tsekit channel (bin, re|im) ← WeSep (re|im, bin)
        src, dst = f"BN.{i}.", f"backbone.band_split.{i}."
        weights.out[dst + "0.weight"] = weights.take(src + "0.weight", (2 * w,))[order]
        weights.out[dst + "0.bias"] = weights.take(src + "0.bias", (2 * w,))[order]
        weights.out[dst + "1.weight"] = weights.take(src + "1.weight", (n, 2 * w, 1))[:, order, 0]
        weights.out[dst + "1.bias"] = weights.take(src + "1.bias", (n,))
        src, dst = f"mask.{i}.", f"backbone.mask.{i}."
        for layer, (rows, cols) in {1: (4 * n, n), 3: (4 * n, 4 * n), 5: (4 * w, 4 * n)}.items():
            weights.out[f"{dst}{layer}.weight"] = weights.take(f"{src}{layer}.weight", (rows, cols, 1))[..., 0]
            weights.out[f"{dst}{layer}.bias"] = weights.take(f"{src}{layer}.bias", (rows,))
        weights.copy({"0.weight": "0.weight", "0.bias": "0.bias"}, {"0.weight": (n,), "0.bias": (n,)}, src, dst)

    for r in range(repeats):
        block = f"separator.separation.{2 * r + 1 if multi_fuse else r + 1}."
        for wesep_name, tsekit_name in (("band_rnn", "time_rnn"), ("band_comm", "band_rnn")):
            _lstm(weights, f"{block}{wesep_name}.", f"backbone.blocks.{r}.{tsekit_name}.", n, 2 * n)
    for index, site in enumerate(sites):
        _bsrnn_fusion(weights, fuse, f"separator.separation.{2 * index}.fc.", f"fusions.{_site_key(site)}.", n, dim)

    fusion = BSRNN_FUSIONS[fuse]
    fusion_configs: dict[str, Any] = {"film": FiLMConfig(hidden=0), "concat": ConcatConfig(activation=False)}
    fusion_config = fusion_configs.get(fusion, ProjectConfig(project=True))
    return {
        "encoder": "precomputed",
        "fusion": fusion,
        "backbone": "bsrnn",
        "adapt_layers": sites,
        "encoder_config": asdict(PrecomputedConfig(embedding_dim=dim, sample_rate=rate)),
        "fusion_config": asdict(fusion_config),
        "backbone_config": backbone,
        "share_fusion": False,
    }


def _lstm(weights: _Weights, src: str, dst: str, n: int, hidden: int) -> None:
    """WeSep's ``ResRNN`` (GroupNorm, BLSTM, projection) → tsekit's ``ResidualBLSTM``: the same keys."""
    shapes: dict[str, tuple[int, ...]] = {"norm.weight": (n,), "norm.bias": (n,), "proj.weight": (n, 2 * hidden),
                                          "proj.bias": (n,)}
    for suffix in ("", "_reverse"):
        shapes |= {f"rnn.weight_ih_l0{suffix}": (4 * hidden, n), f"rnn.weight_hh_l0{suffix}": (4 * hidden, hidden),
                   f"rnn.bias_ih_l0{suffix}": (4 * hidden,), f"rnn.bias_hh_l0{suffix}": (4 * hidden,)}
    weights.copy({k: k for k in shapes}, shapes, src, dst)


def _bsrnn_fusion(weights: _Weights, fuse: str, src: str, dst: str, n: int, dim: int) -> None:
    if fuse == "FiLM":  # (1 + γ) x + β, γ and β linear in e: tsekit's film with one linear giving [γ; β]
        gamma = [weights.take(f"{src}gamma_fcs.0.{p}", (n, dim) if p == "weight" else (n,)) for p in ("weight", "bias")]
        beta = [weights.take(f"{src}beta_fcs.0.{p}", (n, dim) if p == "weight" else (n,)) for p in ("weight", "bias")]
        weights.out[dst + "net.weight"] = torch.cat([gamma[0], beta[0]])
        weights.out[dst + "net.bias"] = torch.cat([gamma[1], beta[1]])
        return
    cols = n + dim if fuse == "concat" else dim  # concat: Linear over [x; e]
    weights.copy({"linear.weight": "proj.weight", "linear.bias": "proj.bias"},
                 {"linear.weight": (n, cols), "linear.bias": (n,)}, src, dst)


# ---------------------------------------------------------------------------------------------------- SpEx+

MIDDLE_WINDOW, LONG_WINDOW = 80, 160
"""WeSep's ``MultiEncoder``/``MultiDecoder`` fix the middle and long windows."""


def _spexplus(args: _Args, rate: int, weights: _Weights) -> dict[str, Any]:
    from tsekit_builtin.core import PrecomputedConfig
    from tsekit_builtin.fusions import ProjectConfig
    from tsekit_builtin.spexplus import PRESETS, SpExPlusConfig

    for key in ("encoder_type", "decoder_type"):
        args.require(key, "Multi", "SpEx+'s multi-scale encoder and decoder are what tsekit's spexplus has")
    args.require("spk_fuse_type", "concatConv", "SpEx+'s speaker block; the others add a fuse layer, PReLU and norm")
    args.require("multi_fuse", True, "WeSep builds no working model with concatConv and multi_fuse false")
    args.require("use_spk_transform", False, "WeSep's speaker-transform MLP has no tsekit counterpart")
    args.require("skip_con", False, "skip connections replace the TCN stacks' outputs in WeSep's FuseSeparation")
    args.require("activate", "relu", "spexplus's masks are ReLU")
    norm = args.values["norm"]
    if norm not in ("gLN", "cLN"):
        raise ConfigError(f"{ARGS}.norm", f"{norm!r} is not convertible; gLN or cLN")
    causal = args.flag("causal")
    if causal and norm == "gLN":
        raise ConfigError(f"{ARGS}.causal", "a causal model with gLN (which sees the whole signal) is not convertible")
    n, short, b, h = args.integer("N"), args.integer("L", 2), args.integer("B"), args.integer("H")
    kernel, blocks, stacks, dim = args.integer("P"), args.integer("X"), args.integer("R"), args.integer("spk_emb_dim")
    wesep = PRESETS["wesep"]
    backbone = _full_config(
        SpExPlusConfig,
        {
            "sample_rate": rate, "short_window": short, "middle_window": MIDDLE_WINDOW, "long_window": LONG_WINDOW,
            "stride": short // 2, "n_filters": n, "bn_chan": b, "hid_chan": h, "conv_kernel_size": kernel,
            "n_blocks": blocks, "n_stacks": stacks, "norm": norm, "causal": causal, "gln_eps": wesep["gln_eps"],
            "site_position": wesep["site_position"], "tail": wesep["tail"],
        },
        "L",
    )
    sites = [f"tcn.{s * blocks}" for s in range(stacks)]

    windows = {"short": short, "middle": MIDDLE_WINDOW, "long": LONG_WINDOW}
    for i, (scale, window) in enumerate(windows.items()):
        weights.copy({"weight": "weight", "bias": "bias"}, {"weight": (n, 1, window), "bias": (n,)},
                     f"encoder.encoder_1d_{scale}.", f"backbone.encoders.{i}.")
        weights.copy({"weight": "weight", "bias": "bias"}, {"weight": (n, b, 1), "bias": (n,)},
                     f"decoder.mask{i + 1}.", f"backbone.masks.{i}.")
        weights.copy({"weight": "weight", "bias": "bias"}, {"weight": (n, 1, window), "bias": (1,)},
                     f"decoder.decoder_1d_{i + 1}.", f"backbone.decoders.{i}.")
    weights.copy({"weight": "norm.weight", "bias": "norm.bias"}, {"weight": (3 * n,), "bias": (3 * n,)},
                 "encoder.ln.", "backbone.in_norm.")
    weights.copy({"weight": "weight", "bias": "bias"}, {"weight": (b, 3 * n, 1), "bias": (b,)},
                 "encoder.proj.", "backbone.bottleneck.")

    for s in range(stacks):
        first, dst = f"separation.separation.{2 * s}.", f"backbone.blocks.{s * blocks}."
        conv = weights.take(first + "conv1x1.weight", (h, b + dim, 1))
        fusion = f"fusions.{_site_key(sites[s])}."
        weights.out[dst + "in_conv.weight"] = conv[:, :b].clone()
        weights.out[dst + "in_conv.bias"] = weights.take(first + "conv1x1.bias", (h,))
        weights.out[fusion + "proj.weight"] = conv[:, b:, 0].clone()
        weights.out[fusion + "proj.bias"] = torch.zeros(h, dtype=conv.dtype)  # the conv's bias is in_conv's
        _tcn_block(weights, first, dst, norm, b, h, kernel,
                   {"prelu1": "act1", "lnorm1": "norm1", "dconv": "dconv", "prelu2": "act2", "lnorm2": "norm2",
                    "sconv": "out_conv"})
        for k in range(blocks - 1):
            src = f"separation.separation.{2 * s + 1}.separation.{k}."
            _tcn_block(weights, src, f"backbone.blocks.{s * blocks + 1 + k}.", norm, b, h, kernel,
                       {"conv1x1": "in_conv", "PReLU_1": "act1", "norm_1": "norm1", "dwconv": "dconv",
                        "PReLU_2": "act2", "norm_2": "norm2", "Output": "out_conv"})

    if args.flag("joint_training"):
        if args.flag("spk_feat") or args.values["feat_type"] != "consistent":
            args.refuse_joint_speaker_model("spk_feat" if args.flag("spk_feat") else "feat_type")
        encoder, encoder_config = "joint", _resnet4spexplus(args, weights, rate, n, dim)
    else:
        encoder, encoder_config = "precomputed", asdict(PrecomputedConfig(embedding_dim=dim, sample_rate=rate))
    return {
        "encoder": encoder,
        "fusion": "add",
        "backbone": "spexplus",
        "adapt_layers": sites,
        "encoder_config": encoder_config,
        "fusion_config": asdict(ProjectConfig(project=True)),
        "backbone_config": backbone,
        "share_fusion": False,
    }


def _norm(weights: _Weights, src: str, dst: str, norm: str, channels: int) -> None:
    """WeSep's gLN (weight ``[C, 1]``) → GroupNorm; its cLN (a LayerNorm) → tsekit's ChannelLayerNorm."""
    if norm == "gLN":
        for p in ("weight", "bias"):
            weights.out[f"{dst}.{p}"] = weights.take(f"{src}.{p}", (channels, 1))[:, 0]
    else:
        weights.copy({"weight": "norm.weight", "bias": "norm.bias"}, {"weight": (channels,), "bias": (channels,)},
                     f"{src}.", f"{dst}.")


def _tcn_block(
    weights: _Weights, src: str, dst: str, norm: str, b: int, h: int, kernel: int, names: Mapping[str, str]
) -> None:
    """One of WeSep's TCN blocks (its layer ``names`` → tsekit's) into ``backbone.blocks.i``."""
    shapes = {"conv1x1": (h, b, 1), "dconv": (h, 1, kernel), "out": (b, h, 1)}
    for wesep_name, tsekit_name in names.items():
        if tsekit_name in ("norm1", "norm2"):
            _norm(weights, src + wesep_name, dst + tsekit_name, norm, h)
        elif tsekit_name.startswith("act"):
            weights.out[f"{dst}{tsekit_name}.weight"] = weights.take(f"{src}{wesep_name}.weight", (1,))
        else:
            shape = shapes["out" if tsekit_name == "out_conv" else "dconv" if tsekit_name == "dconv" else "conv1x1"]
            weights.out[f"{dst}{tsekit_name}.weight"] = weights.take(f"{src}{wesep_name}.weight", shape)
            weights.out[f"{dst}{tsekit_name}.bias"] = weights.take(f"{src}{wesep_name}.bias", (shape[0],))


def _resnet4spexplus(args: _Args, weights: _Weights, rate: int, n: int, dim: int) -> dict[str, Any]:
    """WeSep's ``ResNet4SpExplus`` (cLN, 1×1 conv, ResBlocks, 1×1 conv, mean) → encoder ``joint``, shared."""
    from tsekit_builtin.joint import PRESETS, JointConfig

    src, dst = "spk_model.aux_enc3.", "encoder.body."
    stem = weights.state.get(src + "1.weight")
    n_blocks = sum(1 for i in range(2, 64) if weights.has(f"{src}{i}.conv1.weight"))
    last = weights.state.get(f"{src}{n_blocks + 2}.weight")
    if stem is None or last is None or n_blocks < 1:
        raise TsekitError(f"WeSep weights: no ResNet4SpExplus under {src!r}, which {ARGS}.joint_training implies")
    channels, hidden = int(stem.shape[0]), int(last.shape[1])  # WeSep: 256 and 512
    weights.copy({"0.weight": "norm.weight", "0.bias": "norm.bias", "1.weight": "stem.weight", "1.bias": "stem.bias"},
                 {"0.weight": (3 * n,), "0.bias": (3 * n,), "1.weight": (channels, 3 * n, 1), "1.bias": (channels,)},
                 src, dst)
    widths = [channels] + [channels if i == 0 else hidden for i in range(n_blocks)]
    for i in range(n_blocks):
        a, b = widths[i], widths[i + 1]
        block, out = f"{src}{i + 2}.", f"{dst}blocks.{i}."
        pairs = {"conv1.weight": "conv1.weight", "conv2.weight": "conv2.weight", "prelu1.weight": "act1.weight",
                 "prelu2.weight": "act2.weight"}
        shapes: dict[str, tuple[int, ...]] = {"conv1.weight": (b, a, 1), "conv2.weight": (b, b, 1),
                                              "prelu1.weight": (1,), "prelu2.weight": (1,)}
        for j in (1, 2):
            for p in ("weight", "bias", "running_mean", "running_var"):
                pairs[f"batch_norm{j}.{p}"], shapes[f"batch_norm{j}.{p}"] = f"bn{j}.{p}", (b,)
        if a != b:
            pairs["conv_downsample.weight"], shapes["conv_downsample.weight"] = "shortcut.weight", (b, a, 1)
        weights.copy(pairs, shapes, block, out)
        for j in (1, 2):  # WeSep's average_model divides this counter too, making it a float
            key = f"{block}batch_norm{j}.num_batches_tracked"
            if weights.has(key):
                weights.out[f"{out}bn{j}.num_batches_tracked"] = weights.take(key, ()).round().to(torch.long)
    head = f"{src}{n_blocks + 2}."
    weights.out["encoder.proj.weight"] = weights.take(head + "weight", (dim, hidden, 1))[..., 0]
    weights.out["encoder.proj.bias"] = weights.take(head + "bias", (dim,))
    speakers = 0
    if args.flag("multi_task"):
        speakers = args.integer("spksInTrain")
        weights.copy({"weight": "weight", "bias": "bias"}, {"weight": (speakers, dim), "bias": (speakers,)},
                     "pred_linear.", "encoder.classifier.")
    options = {
        **PRESETS["wesep"], "embedding_dim": dim, "sample_rate": rate, "share_encoder": True,
        "shared_channels": channels, "shared_hidden": hidden, "n_resblocks": n_blocks, "num_speakers": speakers,
        "head": "ce",
    }
    return _full_config(JointConfig, options, "spk_emb_dim")
