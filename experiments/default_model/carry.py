"""Carry the default model's training run across sessions: a session's processes and files outside the
repository are gone when it ends, so the run's resumable state is committed under ``experiments/default_model/run/``.

Run: python experiments/default_model/carry.py save RUN_DIR      # at the end of a session, then commit
     python experiments/default_model/carry.py restore RUN_DIR   # at the start of the next, then resume with
                                                                 # the identical `tsekit train` command

Carried: ``config.json``, ``metrics.jsonl``, ``result.json``, the latest checkpoint (weights, optimizer and RNG
state: the resumed run continues exactly) and ``best/``. ``restore`` never replaces a run that is further along.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CARRIED = REPO / "experiments" / "default_model" / "run"
RUN_FILES = ("config.json", "metrics.jsonl", "result.json")


def checkpoint_step(run_dir: Path) -> int:
    """The step of ``run_dir``'s latest checkpoint, or -1 when it has none."""
    from tsekit.engine import latest_checkpoint

    path = latest_checkpoint(run_dir) if (run_dir / "checkpoints").is_dir() else None
    if path is None:
        return -1
    return int(json.loads((path / "state.json").read_text(encoding="utf-8"))["step"])


def copy_run(src: Path, dest: Path) -> Path:
    """Copy the resumable part of run ``src`` to ``dest`` (replaced as a whole, via a temporary folder)."""
    from tsekit.engine import CHECKPOINTS, LATEST, latest_checkpoint
    from tsekit.errors import TsekitError

    ckpt = latest_checkpoint(src)
    if ckpt is None:
        raise TsekitError(f"{src}: no checkpoint to carry")
    tmp = dest.with_name(f".tmp-{dest.name}")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / CHECKPOINTS).mkdir(parents=True)
    for name in RUN_FILES:
        if (src / name).is_file():
            shutil.copy2(src / name, tmp / name)
    shutil.copytree(ckpt, tmp / CHECKPOINTS / ckpt.name)
    (tmp / CHECKPOINTS / LATEST).write_text(ckpt.name, encoding="utf-8")
    if (src / "best").is_dir():
        shutil.copytree(src / "best", tmp / "best")
    old = dest.with_name(f".old-{dest.name}")
    shutil.rmtree(old, ignore_errors=True)
    if dest.exists():
        dest.rename(old)
    tmp.rename(dest)
    shutil.rmtree(old, ignore_errors=True)
    return dest


def save(run_dir: Path, carried: Path = CARRIED) -> str:
    step = checkpoint_step(run_dir)
    copy_run(run_dir, carried)
    return f"{carried}: carries {run_dir} at step {step}"


def restore(run_dir: Path, carried: Path = CARRIED) -> str:
    from tsekit.errors import TsekitError

    have, carried_step = checkpoint_step(run_dir), checkpoint_step(carried)
    if carried_step < 0:
        raise TsekitError(f"{carried}: no carried run")
    if have >= carried_step:
        return f"{run_dir}: already at step {have} (carried: {carried_step}); left as it is"
    copy_run(carried, run_dir)
    return f"{run_dir}: restored at step {carried_step}"


def main(argv: list[str] | None = None) -> int:
    from tsekit.errors import TsekitError

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=("save", "restore"))
    parser.add_argument("run_dir")
    parser.add_argument("--carried", default=str(CARRIED), help="the carried copy in the repository")
    args = parser.parse_args(argv)
    try:
        action = save if args.action == "save" else restore
        print(action(Path(args.run_dir), Path(args.carried)))
    except (TsekitError, OSError) as exc:
        print(f"carry: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
