"""Build the installable extension zip with Blender's own builder (shipped in the bpy wheel).

    python scripts/build_extension.py [--output-dir dist]

The zip holds the manifest, the root shim ``__init__.py``, ``wav2sem_blender/`` and the
``server/`` code the add-on launches (see ``[build]`` in blender_manifest.toml); ``training/``,
tests and scripts stay out.
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def blender_ext() -> tuple[Path, Path]:
    """(builder script, tags file) inside the installed bpy wheel, found without importing bpy."""
    spec = importlib.util.find_spec("bpy")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("error: the bpy module is not installed; run ./scripts/setup.sh --test first.")
    base = Path(next(iter(spec.submodule_search_locations)))
    scripts = next(base.glob("*/scripts"))
    return (
        scripts / "addons_core" / "bl_pkg" / "cli" / "blender_ext.py",
        scripts / "modules" / "_bpy_internal" / "extensions" / "tags.py",
    )


CONTRACT = "wav2sem_contract"
WHEELS = ROOT / "wheels"


def manifest_version() -> str:
    import tomllib

    return tomllib.loads((ROOT / "blender_manifest.toml").read_text())["version"]


def build_contract_wheel(version: str) -> Path:
    """``wheels/wav2sem_contract-VERSION-py3-none-any.whl`` from the package in this checkout (pip + setuptools)."""
    WHEELS.mkdir(exist_ok=True)
    for old in WHEELS.glob(f"{CONTRACT}-*.whl"):
        old.unlink()
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "src"
        shutil.copytree(ROOT / CONTRACT, src / CONTRACT, ignore=shutil.ignore_patterns("__pycache__"))
        (src / "pyproject.toml").write_text(
            '[build-system]\nrequires = ["setuptools>=68"]\nbuild-backend = "setuptools.build_meta"\n\n'
            f'[project]\nname = "{CONTRACT}"\nversion = "{version}"\nrequires-python = ">=3.10"\n'
            'dependencies = ["numpy"]\n\n'
            f'[tool.setuptools]\npackages = ["{CONTRACT}"]\n'
        )
        isolation = [] if importlib.util.find_spec("setuptools") is None else ["--no-build-isolation"]
        cmd = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", *isolation, "-w", str(WHEELS), str(src)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode:
            raise SystemExit(f"error: building the {CONTRACT} wheel failed: {(proc.stdout + proc.stderr).strip()}")
    return next(WHEELS.glob(f"{CONTRACT}-{version}-*.whl"))


def build(output_dir: Path) -> Path:
    tool, tags = blender_ext()
    output_dir.mkdir(parents=True, exist_ok=True)
    build_contract_wheel(manifest_version())
    for cmd in (
        [sys.executable, str(tool), "validate", str(ROOT), "--valid-tags", str(tags)],
        [sys.executable, str(tool), "build", "--source-dir", str(ROOT), "--output-dir", str(output_dir),
         "--valid-tags", str(tags)],
    ):
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode:
            raise SystemExit(f"error: {' '.join(cmd[2:3])} failed: {(proc.stdout + proc.stderr).strip()}")
    zips = sorted(output_dir.glob("wav2sem-*.zip"), key=lambda p: p.stat().st_mtime)
    return zips[-1]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", default=str(ROOT / "dist"))
    print(build(Path(parser.parse_args().output_dir)))
