"""``tsekit pretrain-encoder``: train any trainable speaker encoder on speaker classification over a
speaker-labelled corpus (:func:`tsekit.pretrain_encoder`).

The ``core`` plugin adds it through the public ``tsekit_register_commands`` hook, as any plugin may;
torch-free, so that ``--help`` stays fast.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any

import typer

from tsekit.config import parse_encoder_options
from tsekit.errors import TsekitError

_UNITS = {"s": 1, "m": 60, "h": 3600}


def parse_duration(text: str) -> float:
    """``"90"``, ``"90s"``, ``"10m"``, ``"1h30m"`` → seconds."""
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([smh]?)", text.strip().lower())
    if not parts or re.sub(r"(\d+(?:\.\d+)?)\s*([smh]?)", "", text.strip().lower()).strip():
        raise TsekitError(f"--max-time {text!r}: expected a duration like 600, 90s, 10m or 1h30m")
    seconds = sum(float(n) * _UNITS[u or "s"] for n, u in parts)
    if seconds <= 0:
        raise TsekitError(f"--max-time {text!r}: must be longer than 0 s")
    return seconds


def install(app: typer.Typer) -> None:
    @app.command("pretrain-encoder")
    def pretrain_encoder(
        corpus: Annotated[str, typer.Option(help="Speaker tree speaker/[chapter/]utt.flac|wav, or a CSV manifest path,speaker.")],
        out: Annotated[str, typer.Option(help="Output folder (the encoder's pretrained layout + report).")],
        encoder: Annotated[str, typer.Option(help="Any trainable speaker encoder: ecapa, xvector, joint, ...")] = "ecapa",
        preset: Annotated[str | None, typer.Option(help="Encoder preset, e.g. small or tiny.")] = None,
        set_: Annotated[list[str] | None, typer.Option("--set", help="Encoder OPTION=VALUE, repeatable.")] = None,
        steps: Annotated[int | None, typer.Option(help="Total training steps (default 1000 without --max-time).")] = None,
        max_time: Annotated[str | None, typer.Option(help="Training time of this run, e.g. 10m or 1h.")] = None,
        seed: Annotated[int, typer.Option(help="Seed of the initialisation, the speaker split and the crops.")] = 0,
        val_speakers: Annotated[int | None, typer.Option(help="Held-out speakers for the EER (default 10%, >= 2).")] = None,
        batch_size: Annotated[int, typer.Option(help="Crops per step.")] = 32,
        crop_seconds: Annotated[float, typer.Option(help="Training crop length in seconds.")] = 2.0,
        lr: Annotated[float, typer.Option(help="Adam learning rate.")] = 1e-3,
        lr_schedule: Annotated[
            str, typer.Option(help="constant, or cosine (2 % warm-up, then down to lr/100 over --steps).")
        ] = "constant",
        augment: Annotated[bool, typer.Option(help="Random speed (0.95/1/1.05) and gain (+-6 dB).")] = True,
        checkpoint_every: Annotated[int, typer.Option(help="Steps between checkpoints.")] = 100,
        resume: Annotated[bool, typer.Option(help="Continue from OUT's checkpoint (fresh start if there is none).")] = False,
        device: Annotated[str | None, typer.Option(help="Torch device (default cuda when available).")] = None,
        threads: Annotated[int | None, typer.Option(help="Torch CPU threads.")] = None,
        quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
        as_json: Annotated[bool, typer.Option("--json")] = False,
    ) -> None:
        """Train a speaker encoder (AAM-softmax speaker classification), save it to OUT (ecapa/xvector: a
        speechbrain folder for source=OUT; joint: init=OUT; others: encoder.safetensors + encoder.json), and
        report the EER on held-out speakers before and after."""
        options = parse_encoder_options(set_ or [])
        budget = parse_duration(max_time) if max_time is not None else None
        import torch

        import tsekit

        if threads is not None:
            if threads < 1:
                raise TsekitError(f"--threads must be at least 1, got {threads}")
            torch.set_num_threads(threads)
        report = tsekit.pretrain_encoder(
            corpus,
            out,
            encoder=encoder,
            options=options,
            preset=preset,
            steps=steps,
            max_time=budget,
            seed=seed,
            val_speakers=val_speakers,
            batch_size=batch_size,
            crop_seconds=crop_seconds,
            lr=lr,
            lr_schedule=lr_schedule,
            augment=augment,
            checkpoint_every=checkpoint_every,
            resume=resume,
            device=device,
            registry=tsekit.get_registry(),
            progress=not quiet,
            on_warning=lambda message: typer.echo(f"tsekit: warning: {message}", err=True),
        )
        if as_json:
            typer.echo(json.dumps(report, indent=2, default=str))
        else:
            _print_report(report)


def _print_report(r: dict[str, Any]) -> None:
    rate = f", {r['steps_per_second']:.3f} steps/s" if r["steps_per_second"] else ""
    c = r["corpus"]
    typer.echo(
        f"{r['encoder']}: {r['steps']} steps in {r['train_seconds']:.1f} s{rate} on {r['train_speakers']} speakers "
        f"of {c['source']} ({c['speakers']} speakers, {c['hours']:.2f} h)"
    )
    e = r["eval"]
    typer.echo(
        f"held-out EER ({len(r['held_out_speakers'])} speakers, {e['target_trials']} target / "
        f"{e['nontarget_trials']} non-target trials): {100 * r['eer_before']:.2f} % untrained -> "
        f"{100 * r['eer_after']:.2f} % trained"
    )
    typer.echo(f"saved {r['out']} ({', '.join([*r['files'], 'report.json', 'report.md'])})")
