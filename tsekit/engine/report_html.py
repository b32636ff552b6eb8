"""``OUT/report.html``: an ablation's report as one self-contained page to look at and listen to.

:func:`tsekit.engine.report.write_report` gathers what the page shows (:class:`Page`: the ranked table, paired
differences, heatmaps and bar chart, learning curves, results by slice, and per cell its best, median and worst
mixture) and :func:`write_html` lays it out. For each of those mixtures the page holds the mixture, the
enrollment, the cell's estimate and the target, each with its spectrogram; the estimates come from running the
cell's saved model again on the mixture, as its evaluation did. Images and audio (Ogg Vorbis, at most 16 kHz)
are data URIs; a clip that several cells show is stored once. No external URL, no server.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from tsekit.io import atomic_open

__all__ = ["AUDIO_RATE", "ListenCell", "Page", "Table", "audio_uri", "spectrogram_uri", "write_html"]

AUDIO_RATE = 16000
"""Clips above this rate are resampled down to it."""
SPECTROGRAM_DB = 70.0  # dynamic range shown below each clip's peak
SPECTROGRAM_ROWS = 128


@dataclass
class Table:
    """A table as text: header, rows, the columns aligned left, the row to highlight."""

    header: list[str]
    body: list[list[str]]
    left: tuple[str, ...] = ("cell",)
    highlight: int | None = None


@dataclass
class ListenCell:
    """One cell's mixtures to listen to: ``picks`` are ``(pick, mixture_id, what to say about it)`` and ``items``
    the rows (:class:`tsekit.data.evallist.EvalItem`) of the list the cell was evaluated on, by mixture_id (empty:
    ``note`` says why). ``model`` is the saved model that makes the estimates, with the cell's ``selector`` and
    ``select_ref``; ``key`` names the cell's estimates in the page."""

    title: str
    key: str
    model: Path | None
    selector: str
    select_ref: str
    picks: list[tuple[str, str, str]]
    items: Mapping[str, Any] = field(default_factory=dict)
    note: str | None = None


@dataclass
class Page:
    """What ``report.html`` shows (texts may hold markdown ``code`` spans)."""

    info: list[tuple[str, str]]
    ranked_title: str
    ranked: Table
    reading: str
    notes: list[str] = field(default_factory=list)
    paired_title: str = ""
    paired_note: str = ""
    paired: Table | None = None
    figures: list[Path] = field(default_factory=list)
    figures_note: str = ""
    curves: bytes | None = None
    slices_note: str = ""
    slices: list[tuple[str, Table]] = field(default_factory=list)
    listen_note: str = ""
    listen: list[ListenCell] = field(default_factory=list)


# ---------------------------------------------------------------- data URIs


def _uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def audio_uri(wav: Any, sample_rate: int) -> str:
    """A mono clip as an Ogg Vorbis data URI at ``min(sample_rate, AUDIO_RATE)``, peak-limited to 0.99."""
    import numpy as np
    import soundfile as sf

    from tsekit.data.audio import resample

    data = np.asarray(wav, dtype=np.float32).reshape(-1)
    if sample_rate > AUDIO_RATE:
        data, sample_rate = resample(data, sample_rate, AUDIO_RATE), AUDIO_RATE
    peak = float(np.abs(data).max()) if data.size else 0.0
    if peak > 0.99:
        data = data * (0.99 / peak)
    buf = io.BytesIO()
    sf.write(buf, data, sample_rate, format="OGG", subtype="VORBIS")
    return _uri(buf.getvalue(), "audio/ogg")


def spectrogram_uri(wav: Any, sample_rate: int) -> str:
    """A clip's log-power spectrogram (32 ms windows, 16 ms hop, at most :data:`SPECTROGRAM_ROWS` frequency rows,
    :data:`SPECTROGRAM_DB` below its peak) as a JPEG data URI, one pixel per frame and row."""
    import numpy as np
    from matplotlib.image import imsave
    from scipy.signal import stft

    data = np.asarray(wav, dtype=np.float64).reshape(-1)
    window = max(16, round(0.032 * sample_rate))
    hop = max(1, window // 2)
    _, _, z = stft(data, fs=sample_rate, nperseg=window, noverlap=window - hop)
    power = np.abs(z) ** 2
    pool = math.ceil(power.shape[0] / SPECTROGRAM_ROWS)  # average neighbouring bins down to the rows shown
    rows = power.shape[0] // pool
    power = power[: rows * pool].reshape(rows, pool, -1).mean(axis=1)
    db = 10 * np.log10(power + 1e-20)
    top = float(db.max())
    buf = io.BytesIO()
    imsave(buf, db, cmap="magma", vmin=top - SPECTROGRAM_DB, vmax=top, origin="lower", format="jpeg",
           pil_kwargs={"quality": 80})
    return _uri(buf.getvalue(), "image/jpeg")


# ---------------------------------------------------------------- listening


def _estimates(cell: ListenCell, items: Sequence[Any]) -> dict[str, tuple[Any, int]]:
    """Run the cell's saved model on ``items`` as its evaluation did (same selector and reference selection)."""
    from tsekit.data.audio import read_audio
    from tsekit.engine import longeval
    from tsekit.errors import TsekitError
    from tsekit.inference import load_model

    if cell.model is None or not cell.model.exists():
        raise TsekitError(f"no saved model {cell.model or ''}".strip())
    extractor = load_model(cell.model, device="cpu", selector=cell.selector)
    estimates = {}
    for item in items:
        mixture, sr = read_audio(item.mixture)
        embedding, _ = longeval.reference_embedding(extractor, item, mixture, sr, cell.select_ref)
        estimate, sr = extractor.extract(mixture, embedding, sample_rate=sr)
        estimates[item.mixture_id] = (estimate.numpy(), sr)
    return estimates


class _Clips:
    """Audio and spectrogram data URIs by key, each stored once in the page."""

    def __init__(self) -> None:
        self.store: dict[str, str] = {}

    def add(self, key: str, load: Callable[[], tuple[Any, int]]) -> str:
        if f"{key}.ogg" not in self.store:
            wav, sr = load()
            self.store[f"{key}.ogg"] = audio_uri(wav, sr)
            self.store[f"{key}.jpg"] = spectrogram_uri(wav, sr)
        return key


def _load(path: Path) -> tuple[Any, int]:
    from tsekit.data.audio import load_audio

    return load_audio(path)


# ---------------------------------------------------------------- the page

STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:0 auto;max-width:1180px;padding:0 18px 40px;color:#222}
h1{margin:18px 0 4px}h2{margin-top:34px;border-bottom:1px solid #ddd;padding-bottom:3px}
h3{margin:22px 0 6px}nav a{margin-right:14px}
table{border-collapse:collapse;margin:8px 0;font-size:13px}
th,td{padding:3px 9px;border-bottom:1px solid #e4e4e4;text-align:right;white-space:nowrap}
th{background:#f4f4f4}td.l,th.l{text-align:left}tr.baseline td{background:#fff8e0}
img.fig{max-width:100%;margin:6px 12px 6px 0;vertical-align:top}
code{background:#f2f2f2;padding:0 3px;border-radius:3px}.note{color:#666;font-size:13px}
.mix{margin:6px 0 16px}.clips{display:grid;grid-template-columns:repeat(4,1fr);gap:10px}
.clip{margin:0}.clip figcaption{font-size:12px;color:#555}
.clip img{width:100%;height:90px;display:block;background:#000}.clip audio{width:100%;height:32px}
"""

SCRIPT = """
for (const el of document.querySelectorAll("[data-clip]")) { el.src = CLIPS[el.dataset.clip]; }
"""


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _inline(text: str) -> str:
    """Markdown-ish text (``code`` spans) as HTML."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", _e(text))


def _table(table: Table, ident: str = "") -> str:
    cls = ['class="l"' if h in table.left else "" for h in table.header]
    head = "".join(f"<th {c}>{_e(h)}</th>" for c, h in zip(cls, table.header, strict=True))
    rows = []
    for i, line in enumerate(table.body):
        mark = ' class="baseline"' if i == table.highlight else ""
        rows.append(f"<tr{mark}>" + "".join(f"<td {c}>{_e(v)}</td>" for c, v in zip(cls, line, strict=True)) + "</tr>")
    ident = f' id="{ident}"' if ident else ""
    return f"<table{ident}><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _reason(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _mixture_clips(clips: _Clips, cell_key: str, item: Any, estimate: tuple[Any, int] | None) -> str:
    """One mixture's four clips (mixture, enrollment, the cell's estimate, target), each a spectrogram and a player;
    a file that several cells show is stored once."""
    sources = {
        "mixture": clips.add(str(item.mixture), partial(_load, item.mixture)),
        "enrollment": clips.add(str(item.enrollment), partial(_load, item.enrollment)),
        "estimate": clips.add(f"{cell_key}/{item.mixture_id}/estimate", lambda: estimate) if estimate else None,
        "target": clips.add(str(item.target), partial(_load, item.target)) if item.target else None,
    }
    figures = [
        f'<figure class="clip"><figcaption>{role}</figcaption><img alt="{role} spectrogram" data-clip="{_e(key)}.jpg">'
        f'<audio controls preload="metadata" data-clip="{_e(key)}.ogg"></audio></figure>' if key else
        f'<figure class="clip"><figcaption>{role}: none</figcaption></figure>' for role, key in sources.items()]
    return f'<div class="clips">{"".join(figures)}</div>'


def _listen(page: Page, clips: _Clips) -> list[str]:
    parts = ['<section id="listen"><h2>Listen</h2>', f'<p class="note">{_inline(page.listen_note)}</p>']
    for cell in page.listen:
        parts.append(f"<h3>{_e(cell.title)}</h3>")
        picks = [p for p in cell.picks if p[1] in cell.items]
        if not picks:
            parts.append(f'<p class="note">No audio: {_e(cell.note or "no scored mixture of its list")}.</p>')
            continue
        try:
            estimates = _estimates(cell, [cell.items[m] for _, m, _ in picks])
        except Exception as exc:  # the page still shows everything else, and why the estimates are missing
            parts.append(f'<p class="note">No estimates: {_e(_reason(exc))}</p>')
            estimates = {}
        for name, mixture_id, facts in picks:
            try:
                clips_html = _mixture_clips(clips, cell.key, cell.items[mixture_id], estimates.get(mixture_id))
            except Exception as exc:  # e.g. an audio file of the list gone since the evaluation
                clips_html = f'<p class="note">No audio: {_e(_reason(exc))}</p>'
            parts.append(f'<div class="mix"><b>{_e(name)}</b>: <code>{_e(mixture_id)}</code> ({_e(facts)})'
                         f"{clips_html}</div>")
    parts.append("</section>")
    return parts


def write_html(out_dir: str | Path, page: Page) -> Path:
    """Write ``OUT/report.html`` (see the module docstring); returns its path."""
    clips = _Clips()
    parts = ["<!doctype html>", '<html lang="en"><head><meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width,initial-scale=1">',
             "<title>Ablation report</title>", f"<style>{STYLE}</style></head><body>", "<h1>Ablation report</h1>",
             ('<nav><a href="#results">results</a><a href="#figures">heatmaps</a><a href="#curves">learning '
              'curves</a><a href="#slices">slices</a><a href="#listen">listen</a></nav>'),
             '<section id="run"><h2>What was run</h2><ul>',
             *(f"<li><b>{_e(key)}</b>: {_inline(value)}</li>" for key, value in page.info),
             "</ul></section>",
             f'<section id="results"><h2>{_inline(page.ranked_title)}</h2>', _table(page.ranked, "ranked"),
             f"<p>{_inline(page.reading)}</p>", *(f'<p class="note">{_inline(n)}</p>' for n in page.notes)]
    if page.paired is not None:
        parts += [f"<h3>{_inline(page.paired_title)}</h3>", f'<p class="note">{_inline(page.paired_note)}</p>',
                  _table(page.paired)]
    parts += ["</section>", '<section id="figures"><h2>Heatmaps and bar chart</h2>',
              f'<p class="note">{_inline(page.figures_note)}</p>',
              *(f'<img class="fig" alt="{_e(p.stem)}" src="{_uri(p.read_bytes(), "image/png")}">' for p in page.figures),
              "</section>", '<section id="curves"><h2>Learning curves</h2>',
              f'<img class="fig" alt="learning curves" src="{_uri(page.curves, "image/png")}">' if page.curves else
              '<p class="note">No training logs (metrics.jsonl) found.</p>',
              "</section>", '<section id="slices"><h2>Results by slice</h2>',
              f'<p class="note">{_inline(page.slices_note)}</p>']
    if not page.slices:
        parts.append('<p class="note">No slice varies in this evaluation list.</p>')
    for title, table in page.slices:
        parts += [f"<h3>{_inline(title)}</h3>", _table(table)]
    parts.append("</section>")
    parts += _listen(page, clips)
    store = json.dumps(clips.store).replace("</", "<\\/")
    parts += [f"<script>const CLIPS = {store};{SCRIPT}</script>", "</body></html>"]
    path = Path(out_dir) / "report.html"
    with atomic_open(path, "w", encoding="utf-8") as fh:
        fh.write("\n".join(parts))
    return path
