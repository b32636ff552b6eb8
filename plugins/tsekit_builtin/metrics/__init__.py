"""Evaluation metrics (kind ``metric``); the contract is in :mod:`tsekit.metrics`. One utterance per call.

- ``si-sdr``: scale-invariant SDR in dB, zero-mean (Le Roux et al., "SDR – half-baked or well done?",
  ICASSP 2019): ``10·log10(‖αs‖² / ‖αs − ŝ‖²)``, α = ⟨ŝ, s⟩ / ‖s‖².
- ``sdr``: plain SDR (= SNR) in dB, ``10·log10(‖s‖² / ‖s − ŝ‖²)``; NOT BSS-eval's SDR, which allows a
  distortion filter; that one is ``sdr-bss``.
- ``sdr-bss``: BSS-eval SDR (Vincent et al., IEEE TASLP 2006; mir_eval's ``bss_eval_sources`` for one
  source, without framing): ŝ is projected onto the span of the target delayed by 0..511 samples
  (a 512-tap distortion filter), ``10·log10(‖Pŝ‖² / ‖ŝ − Pŝ‖²)``.
- ``si-sdri``, ``sdri``, ``sdri-bss``: the improvement over the mixture, ``metric(ŝ) − metric(y)``.
- ``pesq``: ITU-T P.862.2 wide-band PESQ (MOS-LQO) at 16 kHz via the ``pesq`` package; narrow-band
  P.862 at 8 kHz; other rates are resampled to 16 kHz for wide-band (presets ``wb``/``nb`` force a mode).
- ``stoi``/``estoi``: (extended) short-time objective intelligibility via ``pystoi`` (Taal et al. 2011;
  Jensen & Taal 2016), 0..1.
- ``confusion``: 1.0 when SI-SDRi < 0 dB (the output is closer to another speaker than the mixture
  was: the model extracted the wrong speaker), else 0.0. Its mean over target-present utterances is the
  target-confusion rate (:func:`tsekit.metrics.summarize` reports it as ``confusion_rate``).
- ``speaker-similarity``: cosine between ``embed(ŝ)`` and the ``enrollment`` embedding (extras).
- ``dnsmos``: DNSMOS P.835 (Reddy et al., ICASSP 2022), a non-intrusive MOS of the estimate alone, 1..5:
  ``dnsmos-sig`` (speech signal), ``dnsmos-bak`` (background noise) and ``dnsmos-ovrl`` (overall), at 16 kHz
  (other rates are resampled); the ONNX models ship in the ``speechmos`` package (extra ``dnsmos``), run with
  the windows and polynomials of speechmos and the DNS Challenge's ``dnsmos_local.py`` (16 kHz scores equal
  speechmos's). An estimate peaking above 1 is scaled to peak 1 first (the models take [-1, 1] audio).
- ``pdnsmos``: the DNS Challenge's personalized DNSMOS (``pdnsmos-sig``/``-bak``/``-ovrl``), made for
  personalized noise suppression, where interfering talkers count as background.
- ``absent-energy``: for target-absent utterances, the output's energy relative to the mixture,
  ``10·log10(‖ŝ‖² / ‖y‖²)`` dB (0: the mixture passed through; lower is better); NaN when the target is present.

Target-referenced metrics and DNSMOS are NaN on target-absent utterances. Energy ratios add ``eps`` to numerator
and denominator, so a perfect estimate scores a large finite value and a silent one 0 dB.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import tsekit
from tsekit.contracts import GenericCaps

if TYPE_CHECKING:
    from tsekit.registry import Registrar

IMPL = "tsekit_builtin.metrics.modules"

# Extras each metric requires and its direction (the impl classes' ``needs``/``higher_is_better``).
NEEDS: dict[str, tuple[str, ...]] = {"speaker-similarity": ("embed", "enrollment")}
LOWER_IS_BETTER: frozenset[str] = frozenset({"confusion", "absent-energy"})


@dataclass(frozen=True)
class RatioConfig:
    eps: float = field(
        default=1e-8, metadata={"help": "added to both energies of a ratio (caps a perfect estimate's score)"}
    )

    def __post_init__(self) -> None:
        if not self.eps > 0:
            raise ValueError(f"eps must be > 0, got {self.eps}")


@dataclass(frozen=True)
class BSSConfig(RatioConfig):
    filter_length: int = field(default=512, metadata={"help": "taps of the allowed distortion filter (BSS-eval: 512)"})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.filter_length < 1:
            raise ValueError(f"filter_length must be ≥ 1, got {self.filter_length}")


@dataclass(frozen=True)
class ConfusionConfig(RatioConfig):
    threshold_db: float = field(default=0.0, metadata={"help": "SI-SDRi below this (dB) counts as confusion"})


@dataclass(frozen=True)
class PESQConfig:
    mode: Literal["auto", "wb", "nb"] = field(
        default="auto",
        metadata={"help": "'auto': narrow-band at 8 kHz, else wide-band at 16 kHz (resampled); 'wb'/'nb' force it"},
    )

    def __post_init__(self) -> None:
        if self.mode not in ("auto", "wb", "nb"):
            raise ValueError(f"mode must be 'auto', 'wb' or 'nb', got {self.mode!r}")


def _caps(name: str, description: str) -> GenericCaps:
    extras = {"needs": list(NEEDS.get(name, ())), "higher_is_better": name not in LOWER_IS_BETTER}
    return GenericCaps(description, extras=extras)


@tsekit.hookimpl
def tsekit_register_metrics(register: Registrar) -> None:
    signal = (
        ("si-sdr", "SISDR", RatioConfig, "scale-invariant SDR (dB), zero-mean", ("sisdr", "si-snr")),
        ("si-sdri", "SISDRi", RatioConfig, "SI-SDR improvement over the mixture (dB)", ("sisdri", "si-snri")),
        ("sdr", "SDR", RatioConfig, "plain SDR = SNR (dB), no distortion filter", ("snr",)),
        ("sdri", "SDRi", RatioConfig, "plain SDR improvement over the mixture (dB)", ("snri",)),
        ("sdr-bss", "BSSSDR", BSSConfig, "BSS-eval SDR (dB) with a 512-tap distortion filter", ()),
        ("sdri-bss", "BSSSDRi", BSSConfig, "BSS-eval SDR improvement over the mixture (dB)", ()),
    )
    for name, cls, config, summary, aliases in signal:
        register(
            name, f"{IMPL}:{cls}", config=config, capabilities=_caps(name, summary), summary=summary, aliases=aliases
        )
    register(
        "pesq",
        f"{IMPL}:PESQ",
        config=PESQConfig,
        capabilities=_caps("pesq", "PESQ MOS-LQO: P.862.2 wide-band at 16 kHz, P.862 narrow-band at 8 kHz"),
        presets={"wb": {"mode": "wb"}, "nb": {"mode": "nb"}},
        summary="PESQ (wide-band at 16 kHz, narrow-band at 8 kHz)",
    )
    register(
        "stoi",
        f"{IMPL}:STOI",
        capabilities=_caps("stoi", "short-time objective intelligibility, 0..1 (pystoi)"),
        summary="STOI intelligibility (0..1)",
    )
    register(
        "estoi",
        f"{IMPL}:ESTOI",
        capabilities=_caps("estoi", "extended STOI, 0..1 (pystoi)"),
        summary="extended STOI (0..1)",
    )
    register(
        "dnsmos",
        f"{IMPL}:DNSMOS",
        capabilities=_caps("dnsmos", "DNSMOS P.835 of the estimate: columns dnsmos-sig, dnsmos-bak, dnsmos-ovrl"),
        summary="DNSMOS P.835 non-intrusive MOS: speech, background, overall (1..5; extra 'dnsmos')",
    )
    register(
        "pdnsmos",
        f"{IMPL}:PDNSMOS",
        capabilities=_caps("pdnsmos", "personalized DNSMOS: interfering talkers count as background noise"),
        summary="personalized DNSMOS P.835: other talkers count as background (1..5; extra 'dnsmos')",
    )
    register(
        "confusion",
        f"{IMPL}:Confusion",
        config=ConfusionConfig,
        capabilities=_caps("confusion", "1 when SI-SDRi < threshold_db (wrong speaker extracted), else 0"),
        aliases=("target-confusion",),
        summary="target confusion: 1 if SI-SDRi < 0 dB; its mean is the confusion rate",
    )
    register(
        "speaker-similarity",
        f"{IMPL}:SpeakerSimilarity",
        capabilities=_caps("speaker-similarity", "cosine of embed(estimate) and the enrollment embedding"),
        aliases=("spk-sim",),
        summary="cosine similarity of the output's and the enrollment's speaker embeddings",
    )
    register(
        "absent-energy",
        f"{IMPL}:AbsentEnergy",
        config=RatioConfig,
        capabilities=_caps("absent-energy", "target-absent rows: output energy relative to the mixture (dB)"),
        summary="output energy relative to the mixture on target-absent rows (dB; lower is better)",
    )
