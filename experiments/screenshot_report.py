"""Screenshot an ablation's ``report.html`` in headless Chromium (the README's picture of the report).

Run: python experiments/screenshot_report.py runs/quickstart/report.html --out docs/img/quickstart_report.png
     [--width 1280] [--height 1600] [--chromium PATH]

Needs playwright (``tsekit[test]``) and a Chromium binary (Debian: ``apt-get install chromium``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path


def screenshot(page: Path, out: Path, width: int, height: int, chromium: str) -> None:
    from playwright.sync_api import sync_playwright

    out.parent.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        view = browser.new_page(viewport={"width": width, "height": height})
        view.goto(page.resolve().as_uri())
        view.wait_for_load_state("load")
        view.screenshot(path=str(out), full_page=False)
        browser.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("page", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=1600)
    parser.add_argument("--chromium", default=os.environ.get("TSEKIT_CHROMIUM") or shutil.which("chromium"))
    args = parser.parse_args(argv)
    if not args.page.is_file():
        print(f"screenshot_report: error: {args.page}: no such file", file=sys.stderr)
        return 1
    if not args.chromium:
        print("screenshot_report: error: no Chromium binary (apt-get install chromium, or --chromium PATH)",
              file=sys.stderr)
        return 1
    screenshot(args.page, args.out, args.width, args.height, args.chromium)
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
