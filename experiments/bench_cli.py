"""Benchmark CLI start-up: median wall time of `tsekit --help` and `tsekit plugins list` (fresh processes)."""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import time

RUNS = int(sys.argv[1]) if len(sys.argv) > 1 else 15
exe = shutil.which("tsekit") or sys.exit("tsekit is not on PATH")
for args in (["--help"], ["plugins", "list"], ["components", "list", "--json"]):
    subprocess.run([exe, *args], capture_output=True, check=True)  # warm the file cache
    times = []
    for _ in range(RUNS):
        t0 = time.perf_counter()
        subprocess.run([exe, *args], capture_output=True, check=True)
        times.append(time.perf_counter() - t0)
    print(f"tsekit {' '.join(args):<22} median {statistics.median(times) * 1000:6.0f} ms  "
          f"min {min(times) * 1000:6.0f} ms  max {max(times) * 1000:6.0f} ms  ({RUNS} runs)")
