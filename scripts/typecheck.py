"""Type-check TME as Python imports it (`make typecheck`).

mypy finds a module by its path. TME's subpackages live in their own folders
(`tme.controller` in controller/, `tme.agents` in agents/, ...: pyproject's
package-dir), and the editable install maps them with an import hook that mypy does
not run. Checked folder by folder, every `from tme.controller ...` in another
package was `Any`, so a wrong call across packages went unnoticed (a benchmark
called a method that no longer took its arguments). This links the folders into one
tree under build/typecheck (tme/controller -> controller/, ...), checks the package
`tme` and benchmarks/ there, and prints each path as it is in the repository.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TREE = ROOT / "build" / "typecheck"
EXTRA = ["benchmarks"]  # checked beside the package, importing it as users do


def package_dirs() -> dict[str, str]:
    """Subpackage -> folder, e.g. {"controller": "controller"}, from pyproject."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    mapping: dict[str, str] = config["tool"]["setuptools"]["package-dir"]
    return {name.removeprefix("tme."): folder for name, folder in mapping.items() if name != "tme"}


def build_tree() -> dict[str, str]:
    """The tree of links; returns how to turn its paths back into the repository's."""
    shutil.rmtree(TREE, ignore_errors=True)
    package = TREE / "tme"
    package.mkdir(parents=True)
    subpackages = package_dirs()
    for entry in (ROOT / "tme").iterdir():
        if entry.name != "__pycache__" and entry.name not in subpackages:
            (package / entry.name).symlink_to(entry)
    for name, folder in subpackages.items():
        (package / name).symlink_to(ROOT / folder, target_is_directory=True)
    for extra in EXTRA:
        (TREE / extra).symlink_to(ROOT / extra, target_is_directory=True)
    return {f"tme/{name}/": f"{folder}/" for name, folder in subpackages.items()}


def main() -> int:
    renames = build_tree()
    command = [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml")]
    command += ["--cache-dir", str(ROOT / ".mypy_cache"), "-p", "tme"]
    for extra in EXTRA:
        command += ["-p", extra]
    done = subprocess.run(command, cwd=TREE, capture_output=True, text=True)
    for line in (done.stdout + done.stderr).splitlines():
        for linked, folder in renames.items():
            if line.startswith(linked):
                line = folder + line.removeprefix(linked)
                break
        print(line)
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
