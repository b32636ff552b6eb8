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
