"""Evaluation metrics: the contract for components of kind ``metric``, :func:`compute_metrics` and :func:`summarize`.

Contract (hook ``tsekit_register_metrics``): ``factory(config)`` (or ``factory()`` without a config)
returns an object with

- ``name: str``: the key of its value in a result row (a dict result uses its own keys);
- ``higher_is_better: bool``;
- ``needs: tuple[str, ...]``: the extras it requires;
- ``__call__(estimate, target, mixture, sample_rate, **extras) -> float | dict[str, float]``.

It scores ONE utterance: ``estimate``, ``target`` and ``mixture`` are 1-D numpy arrays or tensors of
equal length at ``sample_rate`` Hz. A metric ignores extras it does not use; a missing required one
(absent or ``None``) raises :class:`~tsekit.errors.TsekitError` naming it. Subclass :class:`Metric` for
the conversion to float64 numpy, the shape checks and the ``needs`` check. The extras:

==============  ===========================  ================================================
``embed``       ``wav [T] -> embedding [D]``  speaker embedding of a 1-D float32 numpy waveform
``enrollment``  ``[D]``                      the enrollment's speaker embedding (d-vector)
==============  ===========================  ================================================

Target-absent utterances (the target speaker is silent: the target's mean power is at most
:data:`ABSENT_THRESHOLD`) have no SI-SDR, SDR, PESQ, STOI, confusion or speaker similarity: those
metrics return NaN there, and ``absent-energy`` (the output's energy relative to the mixture, dB) is
scored instead (it is NaN on target-present rows). :func:`compute_metrics` marks each row with
``"absent"`` (1.0 or 0.0) and :func:`summarize` averages the two kinds of rows separately.

Metrics that cannot score an input (PESQ on a too-short or silent signal, an estimate holding NaN, ...)
return NaN with a :class:`MetricWarning` instead of raising; :func:`summarize` counts such NaNs.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from tsekit.errors import TsekitError, require_extras

if TYPE_CHECKING:
    from tsekit.registry import Registry

__all__ = [
    "ABSENT_KEY",
    "ABSENT_THRESHOLD",
    "EXTRAS",
    "Metric",
    "MetricWarning",
    "as_signal",
    "build_metrics",
    "compute_metrics",
    "is_absent",
    "summarize",
]

EXTRAS: tuple[str, ...] = ("embed", "enrollment")
"""The extras an evaluation engine may pass to a metric."""

ABSENT_THRESHOLD = 1e-8
"""A target whose mean power is at most this (-80 dBFS) is absent; the built-in losses' default too."""

ABSENT_KEY = "absent"
"""The row key :func:`compute_metrics` sets to 1.0 on target-absent rows and 0.0 otherwise."""


class MetricWarning(UserWarning):
    """A metric could not score an utterance and returned NaN."""


def as_signal(x: Any, what: str = "signal") -> np.ndarray:
    """``x`` (numpy array, tensor or sequence) as a 1-D float64 numpy array; ``[1, T]`` is squeezed."""
    if hasattr(x, "detach"):  # a torch tensor, without importing torch
        x = x.detach().cpu().double().numpy()
    arr = np.asarray(x, dtype=np.float64)
    while arr.ndim > 1 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 1:
        raise TsekitError(f"{what} must be one utterance (1-D), got shape {tuple(np.shape(x))}")
    return arr


def is_absent(target: Any, threshold: float = ABSENT_THRESHOLD) -> bool:
    """True when ``target``'s mean power is at most ``threshold`` (the target speaker is silent)."""
    signal = as_signal(target, "target")
    return signal.size == 0 or float(np.mean(signal**2)) <= threshold


class Metric:
    """Base class: ``__call__`` checks extras and shapes, then calls :meth:`compute` on float64 arrays."""

    name: ClassVar[str] = "metric"
    higher_is_better: ClassVar[bool] = True
    needs: ClassVar[tuple[str, ...]] = ()
    uses_mixture: ClassVar[bool] = False

    def __call__(
        self, estimate: Any, target: Any, mixture: Any = None, sample_rate: int | None = None, **extras: Any
    ) -> float | dict[str, float]:
        require_extras(self.name, self.needs, extras, kind="metric")
        est, tgt = as_signal(estimate, "estimate"), as_signal(target, "target")
        mix = None if mixture is None else as_signal(mixture, "mixture")
        lengths = {len(est), len(tgt)} | ({len(mix)} if mix is not None else set())
        if len(lengths) != 1:
            raise TsekitError(
                f"metric '{self.name}': estimate, target and mixture must have equal lengths, got "
                f"{len(est)}, {len(tgt)}" + (f" and {len(mix)}" if mix is not None else "")
            )
        if self.uses_mixture and mix is None:
            raise TsekitError(f"metric '{self.name}' needs the mixture")
        if sample_rate is None or int(sample_rate) <= 0:
            raise TsekitError(f"metric '{self.name}': sample_rate must be a positive integer, got {sample_rate!r}")
        if not (np.isfinite(tgt).all() and (mix is None or np.isfinite(mix).all())):
            raise TsekitError(f"metric '{self.name}': target or mixture holds NaN or infinity")
        if not np.isfinite(est).all():  # a diverged model: score it NaN rather than stop an evaluation
            message = f"metric '{self.name}': the estimate holds NaN or infinity; returning NaN"
            warnings.warn(message, MetricWarning, stacklevel=2)
            return math.nan
        return self.compute(est, tgt, mix, int(sample_rate), **extras)

    def compute(
        self, estimate: np.ndarray, target: np.ndarray, mixture: np.ndarray | None, sample_rate: int, **extras: Any
    ) -> float | dict[str, float]:
        raise NotImplementedError

    def __repr__(self) -> str:
        config = getattr(self, "config", None)
        return f"{type(self).__name__}({self.name!r}" + (f", {config})" if config is not None else ")")


def build_metrics(names: Iterable[str | Any], registry: Registry | None = None) -> list[Any]:
    """Metric objects for ``names`` (registered names, ``provider:name``, or already-built metrics)."""
    if isinstance(names, str):
        names = [n for n in names.split(",") if n.strip()]
    metrics = []
    for item in names:
        if isinstance(item, str):
            if registry is None:
                from tsekit.registry import get_registry

                registry = get_registry()
            metrics.append(registry.create("metric", item.strip()))
        elif callable(item) and hasattr(item, "name"):
            metrics.append(item)
        else:
            raise TsekitError(f"not a metric name or metric: {item!r}")
    return metrics


def compute_metrics(
    names: Iterable[str | Any],
    estimate: Any,
    target: Any,
    mixture: Any,
    sample_rate: int,
    *,
    registry: Registry | None = None,
    **extras: Any,
) -> dict[str, float]:
    """Score one utterance with each metric in ``names``; the row also holds ``"absent"`` (1.0/0.0).

    ``names`` may hold built metrics (see :func:`build_metrics`): build them once when scoring many
    utterances. Two metrics producing the same key raise :class:`TsekitError`.
    """
    est, tgt = as_signal(estimate, "estimate"), as_signal(target, "target")
    mix = None if mixture is None else as_signal(mixture, "mixture")
    row: dict[str, float] = {ABSENT_KEY: float(is_absent(tgt))}
    for metric in build_metrics(names, registry):
        value = metric(est, tgt, mix, sample_rate, **extras)
        values = value if isinstance(value, Mapping) else {metric.name: value}
        for key, v in values.items():
            if key in row:
                raise TsekitError(f"metric '{metric.name}' produces '{key}', which another metric already produced")
            row[key] = float(v)
    return row


def _numeric(value: Any) -> float | None:
    if isinstance(value, bool | int | float | np.number):
        return float(value)
    return None


def _nanmean(values: list[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return float(np.mean(finite)) if finite else math.nan


def summarize(rows: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Aggregate :func:`compute_metrics` rows (other, non-numeric columns such as ids are ignored).

    Returns ``{"rows", "present_rows", "absent_rows", "means", "absent_means", "confusion_rate", "nan_counts"}``:
    ``means`` averages each metric over target-present rows and ``absent_means`` over target-absent
    rows (a metric that is NaN on every row of a kind is left out of that kind's means; other NaNs
    are skipped and counted in ``nan_counts``, over present rows). ``confusion_rate`` is the mean of
    ``confusion`` over present rows (from ``si-sdri < 0`` when rows have no ``confusion``; NaN when
    neither is there).
    """
    present: dict[str, list[float]] = {}
    absent: dict[str, list[float]] = {}
    n_rows = n_absent = 0
    for row in rows:
        n_rows += 1
        is_absent_row = bool(row.get(ABSENT_KEY, 0.0))
        n_absent += is_absent_row
        group = absent if is_absent_row else present
        for key, value in row.items():
            number = _numeric(value)
            if key != ABSENT_KEY and number is not None:
                group.setdefault(key, []).append(number)
    means = {k: _nanmean(v) for k, v in present.items()}
    means = {k: m for k, m in means.items() if not math.isnan(m)}
    absent_means = {k: _nanmean(v) for k, v in absent.items()}
    absent_means = {k: m for k, m in absent_means.items() if not math.isnan(m)}
    nan_counts = {k: n for k in means if (n := sum(math.isnan(v) for v in present[k]))}
    if "confusion" in means:
        confusion_rate = means["confusion"]
    elif "si-sdri" in means:
        confusion_rate = _nanmean([float(v < 0) if not math.isnan(v) else math.nan for v in present["si-sdri"]])
    else:
        confusion_rate = math.nan
    return {
        "rows": n_rows,
        "present_rows": n_rows - n_absent,
        "absent_rows": n_absent,
        "means": means,
        "absent_means": absent_means,
        "confusion_rate": confusion_rate,
        "nan_counts": nan_counts,
    }
