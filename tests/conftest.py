from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest


@pytest.fixture(autouse=True, scope="session")
def private_cache(tmp_path_factory: pytest.TempPathFactory):
    """Caches (durations, RIR banks) go to a temporary folder, never the user's home."""
    import os

    old = os.environ.get("TSEKIT_CACHE_DIR")
    os.environ["TSEKIT_CACHE_DIR"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if old is None:
        os.environ.pop("TSEKIT_CACHE_DIR", None)
    else:
        os.environ["TSEKIT_CACHE_DIR"] = old


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """Tests use tiny tensors: one thread avoids OpenMP spin-waiting when CPUs are shared."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def fake_dist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Path]:
    """Install a throw-away distribution (dist-info + modules) on sys.path, with tsekit entry points."""

    def make(dist: str, modules: dict[str, str], entry_points: dict[str, str], version: str = "0.1") -> Path:
        root = tmp_path / dist
        root.mkdir()
        info = root / f"{dist.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
        eps = "[tsekit]\n" + "".join(f"{k} = {v}\n" for k, v in entry_points.items())
        (info / "entry_points.txt").write_text(eps)
        for name, source in modules.items():
            (root / f"{name}.py").write_text(textwrap.dedent(source))
        monkeypatch.syspath_prepend(str(root))
        return root

    return make


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved, untrained tiny model (TD-SpeakerBeam at 8 kHz, frozen d-vector, FiLM)."""
    import torch

    import tsekit
    from tsekit.engine.checkpoint import save_model

    torch.manual_seed(0)
    return save_model(tsekit.build("dvector", "film", "speakerbeam", preset="tiny"), tmp_path_factory.mktemp("tiny") / "best")


@pytest.fixture
def make_eval_list(tmp_path: Path) -> Callable[..., Path]:
    """Write ``list/mixtures.csv``: one 2 s mixture of two bundled speakers per id, enrollment and target;
    ids in ``silent`` get a silent enrollment, ids in ``missing`` no mixture file."""

    def make(ids: list[str], *, silent: tuple[str, ...] = (), missing: tuple[str, ...] = ()) -> Path:
        import numpy as np
        import soundfile as sf

        from tsekit.data import demo_corpus
        from tsekit.data.audio import read_audio

        root = tmp_path / "list"
        root.mkdir(exist_ok=True)
        utts, n = demo_corpus(), 32000
        lines = ["mixture_id,mixture_path,enrollment_path,target_path"]
        for i, mid in enumerate(ids):
            a, _ = read_audio(utts[2 * i].path, 16000)
            b, _ = read_audio(utts[2 * i + 1].path, 16000)
            ref = np.zeros(n, dtype=np.float32) if mid in silent else a[n : 2 * n].numpy()
            if mid not in missing:
                sf.write(root / f"mix{i}.wav", (a[:n] + b[:n]).numpy(), 16000, subtype="FLOAT")
            sf.write(root / f"ref{i}.wav", ref, 16000, subtype="FLOAT")
            sf.write(root / f"tgt{i}.wav", a[:n].numpy(), 16000, subtype="FLOAT")
            lines.append(f'"{mid}",mix{i}.wav,ref{i}.wav,tgt{i}.wav')
        (root / "mixtures.csv").write_text("\n".join(lines) + "\n")
        return root / "mixtures.csv"

    return make
