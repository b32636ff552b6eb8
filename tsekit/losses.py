"""Training losses: the contract for components of kind ``loss``, and :func:`parse_loss`.

Contract (hook ``tsekit_register_losses``): ``factory(config)`` returns an ``nn.Module`` whose::

    forward(estimate [B, T], target [B, T], **extras) -> scalar tensor   # mean over the batch

and whose class attribute ``needs: tuple[str, ...]`` names the extras it requires. Callers (trainers)
pass whatever extras they have; a loss ignores those it does not use, and a missing required one
(absent or ``None``) raises :class:`~tsekit.errors.TsekitError` naming it. The extras:

=================  =============  ===============================================================
``mixture``        ``[B, T]``     the input mixture (reference energy for target-absent rows)
``scales``         ``[B, S, T]``  multi-scale outputs, e.g. SpEx+'s ``backbone.last_scales``
``sources``        ``[B, S, T]``  separated sources, e.g. ``sepselect``'s ``backbone.last_sources``
``speaker_logits`` ``[B, K]``     speaker-classifier logits (cosines for AAM-softmax)
``speaker_ids``    ``[B]`` long   the target speakers' class indices
``sample_rate``    ``int``        Hz of estimate and target
``embedding``      ``[B, D]``     the speaker cue the model extracted with (the enrollment's embedding)
``reencode``       callable       ``reencode(wav [B, T]) -> [B, D]``: the model's encoder on a waveform at the
                                  model's rate, gradients flowing to the waveform (a frozen encoder's weights
                                  stay fixed): the estimate re-encoded (embedding consistency)
``step``           ``int``        the training step (adversarial terms start at a step)
=================  =============  ===============================================================

A loss that owns a discriminator subclasses :class:`AdversarialLoss`: the trainer finds it among the
loss's modules (also inside ``weighted``) and trains its discriminator with its own optimiser, learning-rate
warm-up and checkpointed state (see :class:`AdversarialLoss`).

Loss values are "lower is better"; SI-SDR and SNR losses are negated dB values. Rows whose target
is silent (target-absent samples) are scored on the estimate's energy relative to ``mixture`` instead,
in dB on the same scale (0 dB: mixture passed through; the built-in losses floor it at -30 dB).
Subclass :class:`Loss` for the ``needs`` check. :func:`parse_loss` turns ``"si-sdr+0.5*speaker-ce"``
into a built loss (a ``weighted`` sum when there are several terms or a weight ≠ 1).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, ClassVar

from torch import nn

from tsekit.errors import ConfigError, require_extras

if TYPE_CHECKING:
    from tsekit.registry import Registry

__all__ = ["EXTRAS", "AdversarialLoss", "Loss", "parse_loss", "parse_terms", "require_extras"]

EXTRAS: tuple[str, ...] = ("mixture", "scales", "sources", "speaker_logits", "speaker_ids", "sample_rate",
                           "embedding", "reencode", "step")
"""The extras a trainer may pass to a loss."""


class Loss(nn.Module):
    """Base class for losses: ``__call__`` checks ``needs`` before ``forward``."""

    needs: ClassVar[tuple[str, ...]] = ()
    name: str = "loss"

    def required(self) -> tuple[str, ...]:
        """The extras this instance requires (instances may widen the class's ``needs``)."""
        return tuple(getattr(self, "needs", ()))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        require_extras(self.name, self.required(), kwargs)
        return super().__call__(*args, **kwargs)


class AdversarialLoss(Loss):
    """A loss that owns a ``discriminator``; ``forward`` is the generator's term.

    The trainer gives the discriminator its own Adam (``d_lr``, ``d_betas``, linear warm-up over
    ``d_warmup_steps``), and from ``start_step`` on, before each micro-batch's generator loss, one
    discriminator update on ``discriminator_loss(estimate.detach(), target, **extras)``. Its weights and
    optimiser state are checkpointed with the run, so a resumed run continues exactly; under DDP its
    gradients are averaged over the ranks. Before ``start_step`` the generator term should be 0.
    """

    discriminator: nn.Module
    start_step: int = 0
    d_lr: float = 1e-4
    d_betas: tuple[float, float] = (0.5, 0.9)
    d_warmup_steps: int = 0

    def discriminator_loss(self, estimate: Any, target: Any, **extras: Any) -> Any:
        raise NotImplementedError

    def d_lr_at(self, step: int) -> float:
        """The discriminator's learning rate at ``step`` (linear warm-up from ``start_step``)."""
        done = step - self.start_step + 1
        return self.d_lr * min(1.0, done / self.d_warmup_steps) if self.d_warmup_steps else self.d_lr


_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_TERM = re.compile(rf"\s*(?:({_NUMBER})\s*\*\s*)?([A-Za-z0-9][A-Za-z0-9._:-]*)\s*")


def parse_terms(spec: str) -> list[tuple[str, float]]:
    """``"0.8*si-sdr + 0.2*spectral-mse"`` → ``[("si-sdr", 0.8), ("spectral-mse", 0.2)]``.

    Terms are ``[weight *] name`` joined by ``+``; names may be qualified (``provider:name``).
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError("loss spec", f"expected e.g. 'si-sdr+0.5*speaker-ce', got {spec!r}")
    terms: list[tuple[str, float]] = []
    pos = 0
    while True:
        m = _TERM.match(spec, pos)
        if m is None:
            raise ConfigError("loss spec", f"cannot parse {spec!r} at {spec[pos:]!r}; use '[weight*]name + ...'")
        weight = float(m.group(1)) if m.group(1) else 1.0
        terms.append((m.group(2), weight))
        pos = m.end()
        if pos == len(spec):
            return terms
        if spec[pos] != "+":
            raise ConfigError("loss spec", f"cannot parse {spec!r} at {spec[pos:]!r}; join terms with '+'")
        pos += 1


def parse_loss(spec: str, registry: Registry | None = None) -> nn.Module:
    """Build the loss described by ``spec`` (see :func:`parse_terms`) from ``registry``.

    One unweighted term builds that loss with its default config; otherwise the ``weighted`` loss
    is built over the terms. Unknown names raise :class:`~tsekit.errors.UnknownComponentError`.
    """
    if registry is None:
        from tsekit.registry import get_registry

        registry = get_registry()
    terms = parse_terms(spec)
    names = [registry.get("loss", name).name for name, _ in terms]  # unknown names fail here, with hints
    if len(terms) == 1 and terms[0][1] == 1.0:
        module: nn.Module = registry.create("loss", terms[0][0])
        return module
    if len(set(names)) != len(names):
        raise ConfigError("loss spec", f"{spec!r} names a loss twice; merge its weights")
    weighted = registry.get("loss", "weighted")
    config = weighted.make_config(overrides={"terms": [n for n, _ in terms], "weights": [w for _, w in terms]})
    module = weighted.create(config, registry=registry)
    return module
