"""Benchmark CLI start-up in fresh processes, as ratios to a bare interpreter measured in the same run.

    python experiments/bench_cli.py [N]          # N rounds (default 21)

Each round runs every row once, in turn (so a load spike hits all rows alike): the references
`python -c pass` and `python -c "import typer, rich.console"`, then `tsekit --help`, `components list`,
`plugins list`, `components show backbone speakerbeam` (plugin index warm: the warm-up run writes it and
caches the description) and `components list` with an empty cache folder (cold: plugins are imported and
the index written). Reported: median and min wall time per row, the median's ratio to each reference's
median, and issue 16's targets as ratios to `python -c pass` (0.15 s and 0.25 s on a quiet machine, where
`python -c pass` takes about 0.013 s). Caches go to a temporary folder (TSEKIT_CACHE_DIR), never the user's.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RUNS = int(sys.argv[1]) if len(sys.argv) > 1 else 21
PY = sys.executable
EXE = str(Path(PY).with_name("tsekit")) if Path(PY).with_name("tsekit").exists() else shutil.which("tsekit")
if EXE is None:
    sys.exit("tsekit is not installed next to this Python nor on PATH")

ROWS: list[tuple[str, list[str], bool, float | None]] = [  # label, argv, cold cache, target (× pass)
    ("python -c pass", [PY, "-c", "pass"], False, None),
    ("import typer, rich.console", [PY, "-c", "import typer, rich.console"], False, None),
    ("tsekit --help", [EXE, "--help"], False, 11.0),
    ("tsekit components list", [EXE, "components", "list"], False, 19.0),
    ("tsekit plugins list", [EXE, "plugins", "list"], False, 19.0),
    (
        "tsekit components show backbone speakerbeam",
        [EXE, "components", "show", "backbone", "speakerbeam"],
        False,
        None,
    ),
    ("tsekit components list (cold cache)", [EXE, "components", "list"], True, None),
]


def call(argv: list[str], env: dict[str, str]) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stderr[-2000:]}")


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="tsekit-bench-") as tmp:
        env = {**os.environ, "TSEKIT_CACHE_DIR": str(Path(tmp) / "warm"), "COLUMNS": "200", "NO_COLOR": "1"}
        for _, argv, _, _ in ROWS:  # warm the file cache and tsekit's plugin index
            call(argv, env)
        times: dict[str, list[float]] = {label: [] for label, *_ in ROWS}
        for r in range(RUNS):
            for label, argv, cold, _ in ROWS:
                run_env = {**env, "TSEKIT_CACHE_DIR": str(Path(tmp) / f"cold{r}")} if cold else env
                t0 = time.perf_counter()
                call(argv, run_env)
                times[label].append(time.perf_counter() - t0)
    med = {label: statistics.median(t) for label, t in times.items()}
    base, light = med[ROWS[0][0]], med[ROWS[1][0]]
    print(
        f"{RUNS} rounds, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; "
        f"ratios are medians over the median of `python -c pass` / of `import typer, rich.console`"
    )
    print(f"{'':<46}{'median':>9}{'min':>9}{'× pass':>9}{'× typer':>9}  target")
    for label, _, _, target in ROWS:
        t = times[label]
        verdict = "" if target is None else f"  ≤ {target:.0f}× {'met' if med[label] / base <= target else 'MISSED'}"
        print(
            f"{label:<46}{med[label] * 1000:7.0f}ms{min(t) * 1000:7.0f}ms"
            f"{med[label] / base:8.1f}×{med[label] / light:8.2f}×{verdict}"
        )


if __name__ == "__main__":
    main()
