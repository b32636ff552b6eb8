"""Quantisation-aware training (``tsekit train --qat``, ``train.qat: int8``): the layers that ``tsekit export
--quantize int8`` quantises compute during training as onnxruntime will compute them.

The exporter (:func:`tsekit.export.quantize_int8`) quantises the extract graph's Conv, MatMul and Gemm nodes but
the grouped (depthwise) convolutions, statically (QDQ): weights int8, symmetric ([-127, 127], zero point 0), one
scale per output channel; the inputs and outputs of those nodes uint8, asymmetric, one scale and zero point per
tensor from its calibrated range (widened to include 0); biases int32 at input scale × weight scale. Here the same
layers of the extract path (the backbone's and the fusions' ``nn.Conv1d``/``nn.Conv2d`` with ``groups=1`` and
``nn.Linear``) round their weights, bias, input and output onto those grids in the forward pass, and the gradient
passes through the rounding unchanged (straight-through estimator). An activation's range is that of the tensor
itself (the batch at hand) instead of a calibration set's (:func:`calibrate` measures fixed ranges as the exporter
does). Two differences remain: a tensor entering a layer is rounded for that layer only, while onnxruntime rounds it
for every node that reads it (a residual sum too); and matrix products written as functions (attention's) stay in
float. The speaker encoder is not touched (the enroll graph stays fp32).

Nothing is stored: the layers keep their parameters and state-dict names, so checkpoints, a resumed run and the
saved model are an ordinary float tsekit model, which the exporter then quantises.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tsekit.errors import TsekitError

SCHEMES = ("int8",)
WEIGHT_LEVELS = 127
"""Symmetric int8 weights: integers in [-127, 127] (onnxruntime's symmetric int8 range)."""
ACTIVATION_LEVELS = 255
"""Asymmetric uint8 activations: integers in [0, 255]."""
Layer = nn.Linear | nn.Conv1d | nn.Conv2d
Range = tuple[float, float]
Ranges = dict[str, tuple[Range, Range]]
"""A layer's (input, output) ranges by its name in :func:`quantized_layers`."""


def _straight_through(x: Tensor, rounded: Tensor) -> Tensor:
    """``rounded`` in the forward pass, the identity's gradient to ``x`` in the backward pass."""
    return x + (rounded - x).detach()


def quantize_activation(x: Tensor, limits: Range | None = None) -> tuple[Tensor, Tensor]:
    """``x`` rounded onto a uint8 grid over ``limits`` (None: its own range), widened to include 0 → (the
    dequantised tensor, its scale)."""
    with torch.no_grad():
        low, high = (x.min(), x.max()) if limits is None else (x.new_tensor(limits[0]), x.new_tensor(limits[1]))
        low, high = low.clamp(max=0.0), high.clamp(min=0.0)
        scale = (high - low) / ACTIVATION_LEVELS
        scale = torch.where(scale > torch.finfo(x.dtype).tiny, scale, torch.ones_like(scale))  # all 0: as onnxruntime
        zero = torch.round(-low / scale)
        q = torch.clamp(torch.round(x / scale) + zero, 0, ACTIVATION_LEVELS)
        dequantised = (q - zero) * scale
    return _straight_through(x, dequantised), scale


def quantize_weight(weight: Tensor) -> tuple[Tensor, Tensor]:
    """``weight`` ``[out, ...]`` rounded onto a symmetric int8 grid per output channel → (the dequantised
    tensor, the scales ``[out]``)."""
    with torch.no_grad():
        peak = weight.abs().flatten(1).amax(dim=1)
        scale = torch.where(peak > torch.finfo(weight.dtype).tiny, peak / WEIGHT_LEVELS, torch.ones_like(peak))
        shape = (-1,) + (1,) * (weight.dim() - 1)
        q = torch.clamp(torch.round(weight / scale.reshape(shape)), -WEIGHT_LEVELS, WEIGHT_LEVELS)
        dequantised = q * scale.reshape(shape)
    return _straight_through(weight, dequantised), scale


def quantize_bias(bias: Tensor, scale: Tensor) -> Tensor:
    """``bias`` ``[out]`` rounded onto the int32 grid of ``scale`` (input scale × weight scales)."""
    with torch.no_grad():
        dequantised = torch.round(bias / scale) * scale
    return _straight_through(bias, dequantised)


def _matmul_then_bias(layer: Layer, x: Tensor) -> bool:
    """A ``Linear`` over more than two dimensions is exported as MatMul, its bias added after it in float."""
    return isinstance(layer, nn.Linear) and x.dim() != 2


def _forward(layer: Layer, limits: tuple[Range, Range] | None, x: Tensor) -> Tensor:
    """A quantised layer's forward pass as onnxruntime's int8 graph computes it (``limits``: fixed input and
    output ranges; None: each tensor's own)."""
    x_limits, y_limits = limits or (None, None)
    x, x_scale = quantize_activation(x, x_limits)
    weight, w_scale = quantize_weight(layer.weight)
    if _matmul_then_bias(layer, x):
        y = quantize_activation(torch.matmul(x, weight.t()), y_limits)[0]
        return y if layer.bias is None else y + layer.bias
    bias = None if layer.bias is None else quantize_bias(layer.bias, x_scale * w_scale)
    y = F.linear(x, weight, bias) if isinstance(layer, nn.Linear) else layer._conv_forward(x, weight, bias)
    return quantize_activation(y, y_limits)[0]


def quantized_layers(model: Any) -> list[tuple[str, Layer]]:
    """The layers of a ``TSEModel``'s extract path that the int8 export quantises, with their names."""
    layers: list[tuple[str, Layer]] = []
    for part_name in ("backbone", "fusions"):
        for name, module in getattr(model, part_name).named_modules():
            if isinstance(module, nn.Linear) or (isinstance(module, nn.Conv1d | nn.Conv2d) and module.groups == 1):
                layers.append((f"{part_name}.{name}", module))
    return layers


def check_scheme(scheme: Any) -> str | None:
    """``train.qat``'s value: None/false (off) or a name in :data:`SCHEMES`; a one-line error otherwise."""
    if scheme is None or scheme is False:
        return None
    if scheme not in SCHEMES:
        raise TsekitError(f"train.qat {scheme!r}: use {' or '.join(SCHEMES)} (or null for none)")
    return str(scheme)


def calibrate(model: Any, batches: Iterable[tuple[Tensor, Tensor]]) -> Ranges:
    """Each quantised layer's input and output range in float over ``model.extract`` of ``(mixture, embedding)``
    batches: what the exporter's MinMax calibration measures. Layers that ``extract`` does not run are left out."""
    ranges: dict[str, list[float]] = {}

    def record(name: str) -> Any:
        def hook(layer: Layer, args: tuple[Tensor, ...], out: Tensor) -> None:
            if _matmul_then_bias(layer, args[0]) and layer.bias is not None:
                out = out - layer.bias
            low_in, high_in, low_out, high_out = (float(args[0].min()), float(args[0].max()), float(out.min()),
                                                  float(out.max()))
            old = ranges.get(name, [low_in, high_in, low_out, high_out])
            ranges[name] = [min(old[0], low_in), max(old[1], high_in), min(old[2], low_out), max(old[3], high_out)]
        return hook

    handles = [layer.register_forward_hook(record(name)) for name, layer in quantized_layers(model)]
    try:
        with torch.no_grad():
            for mixture, embedding in batches:
                model.extract(mixture, embedding)
    finally:
        for handle in handles:
            handle.remove()
    return {name: ((r[0], r[1]), (r[2], r[3])) for name, r in ranges.items()}


class FakeQuantization:
    """Fake quantisation attached to a model's layers (:func:`attach`); :meth:`remove` detaches it."""

    def __init__(self, layers: list[tuple[str, Layer]], ranges: Ranges | None = None) -> None:
        self.layers = layers
        for name, layer in layers:
            if "forward" in vars(layer):
                raise TsekitError(f"cannot fake-quantise {name}: its forward is already replaced")
        for name, layer in layers:
            layer.forward = partial(_forward, layer, (ranges or {}).get(name))  # type: ignore[method-assign]

    def remove(self) -> None:
        for _, layer in self.layers:
            vars(layer).pop("forward", None)
        self.layers = []


def attach(model: Any, scheme: Any = "int8", ranges: Ranges | None = None) -> FakeQuantization:
    """Fake-quantise ``model``'s int8 layers (:func:`quantized_layers`) in place until ``.remove()``, activations
    over their own ranges or, for the layers in ``ranges``, fixed ones (:func:`calibrate`); ``scheme`` None attaches
    nothing."""
    return FakeQuantization(quantized_layers(model) if check_scheme(scheme) else [], ranges)


@contextmanager
def fake_quantized(model: Any, scheme: Any = "int8", ranges: Ranges | None = None) -> Iterator[Any]:
    """``model`` fake-quantised (:func:`attach`) inside the block."""
    quantization = attach(model, scheme, ranges)
    try:
        yield model
    finally:
        quantization.remove()
