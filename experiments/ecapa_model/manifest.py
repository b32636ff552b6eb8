"""The shipped ECAPA's training manifest: the corpora less every speaker tsekit evaluates on.

Run: python experiments/ecapa_model/manifest.py --corpus ../shared/data/librispeech-mini/train-clean-100.csv \
         --corpus DATA/speechocean762.csv --out DATA/ecapa_train_clean.csv [--card tsekit/models/default/card.json]

Removed: the default model's test and validation speakers (its ``card.json``) and the bundled demo corpus's
speakers (the Quick start evaluates on them). Writes ``OUT`` (path,speaker,duration) and ``OUT.excluded.txt``.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def excluded_speakers(card: Path) -> list[str]:
    from tsekit.data import DEMO_CORPUS, load_corpus

    data = json.loads(card.read_text(encoding="utf-8"))
    held = set(data["data"]["test_speakers"]) | set(data["val_speakers"])
    return sorted(held | set(load_corpus(DEMO_CORPUS / "manifest.csv").speakers))


def write_manifest(corpora: list[str], out: Path, card: Path) -> tuple[int, int]:
    """Write the manifest and the excluded list; return (speakers, utterances) kept."""
    from tsekit.data import load_corpus
    from tsekit.io import atomic_open

    excluded = excluded_speakers(card)
    kept = [u for u in load_corpus(corpora).utterances if u.speaker not in set(excluded)]
    with atomic_open(out, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "speaker", "duration"])
        writer.writerows([str(u.path.resolve()), u.speaker, f"{u.duration:.3f}"] for u in kept)
    with atomic_open(out.with_name(out.name + ".excluded.txt"), "w", encoding="utf-8") as fh:
        fh.write("\n".join(excluded) + "\n")
    return len({u.speaker for u in kept}), len(kept)


def main(argv: list[str] | None = None) -> int:
    from tsekit.errors import TsekitError

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", action="append", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--card", default=str(REPO / "tsekit" / "models" / "default" / "card.json"))
    args = parser.parse_args(argv)
    try:
        speakers, utterances = write_manifest(args.corpus, Path(args.out), Path(args.card))
    except (TsekitError, OSError, KeyError) as exc:
        print(f"manifest: error: {exc}", file=sys.stderr)
        return 1
    print(f"{args.out}: {utterances} utterances of {speakers} speakers")
    return 0


if __name__ == "__main__":
    sys.exit(main())
