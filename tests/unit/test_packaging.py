"""Every package folder ships: pyproject.toml lists it, and the migrations are package data."""

from __future__ import annotations

import tomllib
from fnmatch import fnmatch
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = ("tme", "controller", "agents", "drivers", "ui", "simulators")


def _setuptools() -> dict:  # type: ignore[type-arg]
    with (ROOT / "pyproject.toml").open("rb") as handle:
        return tomllib.load(handle)["tool"]["setuptools"]


def _package_folders() -> dict[str, Path]:
    """Import name -> folder, through the package-dir mapping."""
    mapping = _setuptools()["package-dir"]
    found: dict[str, Path] = {}
    for name, folder in mapping.items():
        base = ROOT / folder
        for init in base.rglob("__init__.py"):
            rel = init.parent.relative_to(base)
            if any(part.startswith(".") or part == "__pycache__" for part in rel.parts):
                continue
            found[".".join([name, *rel.parts])] = init.parent
    return found


def test_every_top_folder_is_mapped() -> None:
    mapping = _setuptools()["package-dir"]
    assert set(mapping.values()) == set(FOLDERS)
    for name, folder in mapping.items():
        assert name == "tme" if folder == "tme" else name == f"tme.{folder}"


def test_every_package_folder_is_listed() -> None:
    listed = set(_setuptools()["packages"])
    folders = _package_folders()
    assert {"tme", "tme.controller.store"} <= set(folders)  # the walk found real packages
    missing = sorted(set(folders) - listed)
    assert not missing, f"add to [tool.setuptools] packages in pyproject.toml: {missing}"
    stale = sorted(listed - set(folders))
    assert not stale, f"listed in pyproject.toml but no folder with __init__.py: {stale}"


def test_migrations_are_package_data() -> None:
    patterns = _setuptools()["package-data"]["tme.controller.store"]
    store = ROOT / "controller" / "store"
    files = [
        p for p in (store / "migrations").rglob("*") if p.is_file() and "__pycache__" not in p.parts
    ]
    assert any(p.name == "env.py" for p in files)
    assert any(p.parent.name == "versions" for p in files)
    for path in files:
        rel = path.relative_to(store).as_posix()
        assert any(fnmatch(rel, pattern) for pattern in patterns), f"{rel} is not package data"
