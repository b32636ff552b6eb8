"""The Ray executor on a real two-node cluster on this machine (a head and a worker started with ``ray start``
on loopback): cells spread over both nodes, each in a node-local folder, and the driver gathers rows and
result files without a shared folder."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tsekit.engine.ablation import ablate

TINY = ["train.val_every=1000", "data.val_size=2", "data.simulation.segment_seconds=1.0",
        "data.simulation.enrollment_seconds=1.0", "train.checkpoint_every=2", "train.log_every=1"]
FAST = {"preset": "tiny", "overrides": TINY, "eval_size": 2, "eval_seconds": 1.0, "eval_speakers": 4}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def two_node_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    pytest.importorskip("ray")
    ray_cli = Path(sys.executable).with_name("ray")
    if not ray_cli.is_file():
        pytest.skip(f"no ray command beside {sys.executable}")
    import secrets

    port = _free_port()
    token = tmp_path_factory.mktemp("auth") / "token"  # token auth, the token beside the test (not in ~/.ray)
    token.write_text(secrets.token_hex(32))
    auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}
    saved = {k: os.environ.get(k) for k in auth}
    os.environ.update(auth)  # the driver (this process) authenticates with it too
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "OMP_NUM_THREADS": "1"}
    common = ["--node-ip-address=127.0.0.1", "--num-cpus=1", "--num-gpus=0", "--object-store-memory=100000000",
              "--disable-usage-stats"]
    head = [str(ray_cli), "start", "--head", f"--port={port}", "--include-dashboard=false", *common,
            f"--temp-dir={tmp_path_factory.mktemp('ray')}"]
    worker = [str(ray_cli), "start", f"--address=127.0.0.1:{port}", *common]
    try:
        for command in (head, worker):
            done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180, check=False)
            assert done.returncode == 0, done.stderr[-2000:]
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([str(ray_cli), "stop", "--force"], env=env, capture_output=True, timeout=120, check=False)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


DRIVER = """
import json, sys
import ray
from tsekit.engine.ablation import ablate, make_executor

address, out, fast = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
nodes = [n["NodeID"] for n in ray.nodes() if n["Alive"]]
result = ablate(fusions="film,add,concat,multiply", budget="2steps", out=out,
                executor=make_executor("ray", cpus_per_cell=1, ship_files=True), **fast)
print(json.dumps({"nodes": nodes, "failed": result.failed}))
"""


def test_cells_spread_over_two_nodes_and_come_back_without_a_shared_folder(two_node_cluster: str,
                                                                          tmp_path: Path) -> None:
    out = tmp_path / "cluster"
    # the driver is its own process: Ray reads its authentication settings once, when it is imported
    driver = subprocess.run([sys.executable, "-c", DRIVER, two_node_cluster, str(out), json.dumps(FAST)],
                            capture_output=True, text=True, timeout=600, check=False,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert driver.returncode == 0, driver.stderr[-3000:]
    report = json.loads(driver.stdout.strip().splitlines()[-1])
    assert len(report["nodes"]) == 2 and report["failed"] == []
    results = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    placed: dict[str, Any] = {}
    for row in results:
        cell_dir = out / "cells" / row["cell_hash"] / "seed-0"
        node = json.loads((cell_dir / "node.json").read_text())
        assert not node["workdir"].startswith(str(out))  # ran in a node-local folder, not in ours
        placed[row["cell"]] = node["node_id"]
        assert (cell_dir / "metrics.csv").is_file() and (cell_dir / "summary.json").is_file()
        run = out / "train" / json.loads((out / "cells" / row["cell_hash"] / "cell.json").read_text())["train_hash"]
        shipped = {p.relative_to(run / "seed-0").as_posix() for p in (run / "seed-0").rglob("*") if p.is_file()}
        assert {"metrics.jsonl", "result.json", "config.json"} <= shipped
        assert not any(p.startswith("checkpoints/") for p in shipped)  # resumable state stays on the node
    assert len(placed) == 4 and set(placed.values()) == set(report["nodes"])  # both nodes worked
    # the same grid in this process gives the same rows: the nodes trained and scored the same thing
    local = {r["cell_hash"]: r for r in ablate(fusions="film,add,concat,multiply", budget="2steps",
                                               out=tmp_path / "local", **FAST).rows}
    for row in results:
        assert row["si_sdri"] == pytest.approx(local[row["cell_hash"]]["si_sdri"], abs=1e-3)
        assert row["steps"] == local[row["cell_hash"]]["steps"] == 2
