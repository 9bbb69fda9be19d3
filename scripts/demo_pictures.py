"""The README's demo pictures, made again from scratch: run from the repository root.

    .venv/bin/python scripts/demo_pictures.py [--out out/pictures] [--docs docs]

Runs the main job (``wav2sem_blender/demo.py``) on both procedural characters (``--head a`` and
``--head b``: other proportions, grid size and colours) with the performance layer, and writes

* ``docs/demo.gif``: character a's animated preview of the whole sample sentence;
* ``docs/demo_heads.png``: a still strip of each character, one above the other.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LIMIT = 1_500_000  # bytes: pictures in the repository stay small


def run_demo(head: str, out: Path, *extra: str) -> None:
    cmd = [sys.executable, str(ROOT / "wav2sem_blender" / "demo.py"), "--head", head, "--out", str(out), *extra]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"demo_pictures: the demo failed for head {head}:\n{proc.stderr[-2000:]}")
    print(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "out" / "pictures"))
    parser.add_argument("--docs", default=str(ROOT / "docs"))
    args = parser.parse_args(argv)
    from PIL import Image

    out, docs = Path(args.out), Path(args.docs)
    run_demo("a", out / "a", "--frames", "5", "--size", "320")
    run_demo("b", out / "b", "--frames", "5", "--size", "320", "--no-animation")
    shutil.copyfile(out / "a" / "preview.gif", docs / "demo.gif")
    strips = [Image.open(out / h / "preview.png").convert("RGB") for h in ("a", "b")]
    both = Image.new("RGB", (max(s.width for s in strips), sum(s.height for s in strips)))
    for k, strip in enumerate(strips):
        both.paste(strip, (0, k * strips[0].height))
    both = both.resize((both.width * 3 // 4, both.height * 3 // 4), Image.Resampling.LANCZOS)
    both.save(docs / "demo_heads.png", optimize=True)
    for path in (docs / "demo.gif", docs / "demo_heads.png"):
        size = path.stat().st_size
        print(f"{path}: {size / 1e6:.2f} MB")
        if size > LIMIT:
            sys.exit(f"demo_pictures: {path} is {size / 1e6:.1f} MB, over the {LIMIT / 1e6:.1f} MB the repository takes")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
