"""Training parity: tsekit's ESPnet-exact TD-SpeakerBeam against ESPnet's own model.

Both start from the same weights (ESPnet's initial state dict, converted by ``tsekit_builtin.importers.espnet``),
see the same batches and train with the same Adam (ESPnet's recipe: lr 1e-3, eps 1e-8, no weight decay, gradient
clipping at 5) on ESPnet's recipe loss (``FixedOrderSolver(SNRLoss(eps=1e-7))``): ESPnet through its own
``ESPnetExtractionModel.forward``, tsekit through ``model(mixture, enrollment, lengths)`` scored by the same loss
object. Prints both loss curves, their largest difference, and the largest difference of the weights and of the
outputs on a held-out batch at the end. ``--float64`` trains both in double precision: the two are the same
function with the same gradients, and what float32 rounding adds up to over the steps is left out.

ESPnet is imported from the path, not copied (the espnet wheel plus ``torch_complex``, ``typeguard``, ``ci_sdr``):

    PYTHONPATH=<espnet wheel>:<deps> OMP_NUM_THREADS=1 python experiments/reference_parity.py --out parity.txt

The batches are synthetic "speakers" (each a fixed random filter over noise with a random envelope): the mixture
is one speaker plus another, the enrollment the first speaker again. Enrollments of one batch have one length:
with padded enrollments ESPnet's embedding depends on the padding, tsekit's does not.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator
from typing import Any

import torch

import tsekit

RATE = 8000
CONFIG: dict[str, Any] = {
    "sample_rate": RATE,
    "encoder": "conv", "encoder_conf": {"channel": 64, "kernel_size": 16, "stride": 8},
    "decoder": "conv", "decoder_conf": {"channel": 64, "kernel_size": 16, "stride": 8},
    "extractor": "td_speakerbeam",
    "extractor_conf": {"layer": 4, "stack": 2, "bottleneck_dim": 32, "hidden_dim": 64, "skip_dim": 32, "kernel": 3,
                       "causal": False, "norm_type": "gLN", "pre_nonlinear": "prelu", "nonlinear": "relu",
                       "i_adapt_layer": 3, "adapt_layer_type": "mul", "adapt_enroll_dim": 32, "use_spk_emb": False},
    "model_conf": {"num_spk": 1, "share_encoder": True},
}
"""A small ESPnet TSE config.yaml (8 kHz; the recipe's structure, smaller sizes)."""


def espnet_model(config: dict[str, Any]) -> Any:
    """ESPnet's model as ``TargetSpeakerExtractionTask.build_model`` composes it, with the recipe's loss."""
    from espnet2.enh.decoder.conv_decoder import ConvDecoder
    from espnet2.enh.encoder.conv_encoder import ConvEncoder
    from espnet2.enh.espnet_model_tse import ESPnetExtractionModel
    from espnet2.enh.extractor.td_speakerbeam_extractor import TDSpeakerBeamExtractor
    from espnet2.enh.loss.criterions.time_domain import SNRLoss
    from espnet2.enh.loss.wrappers.fixed_order import FixedOrderSolver

    encoder = ConvEncoder(**config["encoder_conf"])
    extractor = TDSpeakerBeamExtractor(encoder.output_dim, **config["extractor_conf"])
    decoder = ConvDecoder(**config["decoder_conf"])
    losses = [FixedOrderSolver(criterion=SNRLoss(eps=1.0e-7), weight=1.0)]
    return ESPnetExtractionModel(encoder=encoder, extractor=extractor, decoder=decoder, loss_wrappers=losses,
                                 **config["model_conf"])


def speaker_signal(filters: torch.Tensor, speakers: torch.Tensor, samples: int, g: torch.Generator) -> torch.Tensor:
    """Noise through each speaker's filter, under a random syllable-like envelope: ``[B, samples]``."""
    noise = torch.randn(1, len(speakers), samples + filters.shape[-1] - 1, generator=g)
    voiced = torch.nn.functional.conv1d(noise, filters[speakers].unsqueeze(1), groups=len(speakers))[0]
    rate = 2 + 4 * torch.rand(len(speakers), 1, generator=g)
    t = torch.arange(samples) / RATE
    phase = 6.3 * torch.rand(len(speakers), 1, generator=g)
    envelope = 0.05 + torch.sin(2 * torch.pi * rate * t + phase).clamp(min=0)  # no exact silence
    signal = voiced * envelope
    return 0.1 * signal / signal.std(dim=1, keepdim=True).clamp(min=1e-8)


def batches(steps: int, batch: int, seconds: float, seed: int) -> Iterator[tuple[torch.Tensor, ...]]:
    """(mixture, target, enrollment, enrollment lengths) for ``steps`` steps, from 20 synthetic speakers."""
    g = torch.Generator().manual_seed(seed)
    filters = torch.randn(20, 33, generator=g) * torch.exp(-torch.arange(33) / 8)
    samples = int(seconds * RATE)
    for _ in range(steps):
        target_spk = torch.randint(0, 20, (batch,), generator=g)
        other_spk = (target_spk + torch.randint(1, 20, (batch,), generator=g)) % 20
        target = speaker_signal(filters, target_spk, samples, g)
        mixture = target + speaker_signal(filters, other_spk, samples, g)
        enrollment = speaker_signal(filters, target_spk, samples, g)
        yield mixture, target, enrollment, torch.full((batch,), samples, dtype=torch.long)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--float64", action="store_true", help="train both in double precision")
    parser.add_argument("--out", default=None, help="also write the report to this file")
    args = parser.parse_args()
    torch.set_num_threads(1)

    import espnet2.enh.layers.tcn  # noqa: F401  (first: ESPnet fixes its norm epsilon at import, from float32)

    from tsekit_builtin.importers.espnet import convert

    if args.float64:
        torch.set_default_dtype(torch.float64)

    torch.manual_seed(0)
    reference = espnet_model(CONFIG)
    spec, state = convert(CONFIG, reference.state_dict())
    ours = tsekit.build(spec["encoder"], spec["fusion"], spec["backbone"], spec["adapt_layers"],
                        encoder_options=spec["encoder_config"], fusion_options=spec["fusion_config"],
                        backbone_options=spec["backbone_config"])
    ours.load_state_dict(state, strict=True)
    loss_of = reference.loss_wrappers[0]
    optimizers = [torch.optim.Adam(m.parameters(), lr=1e-3, eps=1e-8, weight_decay=0) for m in (reference, ours)]

    lines = [(f"ESPnet TD-SpeakerBeam vs tsekit (speakerbeam + speakerbeam-aux, converted), {args.steps} steps, "
             f"batch {args.batch} × {args.seconds} s at {RATE} Hz; {sum(p.numel() for p in ours.parameters())} params"),
             f"{'step':>5} {'ESPnet loss':>12} {'tsekit loss':>12} {'difference':>11}"]
    curves: list[tuple[float, float]] = []
    start = time.perf_counter()
    reference.train(), ours.train()
    for step, (mixture, target, enrollment, lengths) in enumerate(batches(args.steps, args.batch, args.seconds, 1)):
        mixture_lengths = torch.full((args.batch,), mixture.shape[-1], dtype=torch.long)
        loss_ref, _, _ = reference(mixture, mixture_lengths, speech_ref1=target, enroll_ref1=enrollment,
                                   enroll_ref1_lengths=lengths)
        loss_ours = loss_of([target], [ours(mixture, enrollment, lengths)], {})[0]
        for model, loss, optimizer in zip((reference, ours), (loss_ref, loss_ours), optimizers, strict=True):
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            optimizer.step()
        curves.append((float(loss_ref.detach()), float(loss_ours.detach())))
        if step % 10 == 0 or step == args.steps - 1:
            a, b = curves[-1]
            lines.append(f"{step:>5} {a:>12.6f} {b:>12.6f} {abs(a - b):>11.2e}")
            print(lines[-1], flush=True)

    reference.eval(), ours.eval()
    _, final = convert(CONFIG, reference.state_dict())
    own = ours.state_dict()
    weight_gap = max(float((final[k].float() - own[k].float()).abs().max()) for k in final)
    mixture, _, enrollment, lengths = next(batches(1, args.batch, args.seconds, 99))
    with torch.no_grad():
        ref_out = reference.forward_enhance(mixture, torch.full((args.batch,), mixture.shape[-1]), [enrollment],
                                            [lengths])[0][0]
        our_out = ours(mixture, enrollment, lengths)
    loss_gap = max(abs(a - b) for a, b in curves)
    lines += [
        (f"loss: first {curves[0][0]:.6f} / {curves[0][1]:.6f}, last {curves[-1][0]:.6f} / {curves[-1][1]:.6f} "
        f"(ESPnet / tsekit)"),
        f"largest loss difference over {len(curves)} steps: {loss_gap:.3e}",
        f"largest weight difference after training: {weight_gap:.3e}",
        (f"largest output difference on a held-out batch (|output| max {float(ref_out.abs().max()):.3f}): "
        f"{float((ref_out - our_out).abs().max()):.3e}"),
        (f"{time.perf_counter() - start:.0f} s on {torch.get_num_threads()} CPU thread(s), torch {torch.__version__}, "
        f"{torch.get_default_dtype()}"),
    ]
    report = "\n".join(lines)
    print("\n".join(lines[-5:]))
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(report + "\n")


if __name__ == "__main__":
    main()
