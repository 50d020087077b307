"""`tme demo` finds its example device profiles from any folder of a checkout install,
and says where it looked when they are not there."""

from __future__ import annotations

from pathlib import Path

import pytest

from tme.cli.demo import _profiles_dir
from tme.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def test_from_another_folder_the_checkout_profiles_are_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TME_CONFIG_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    assert _profiles_dir() == REPO / "configs" / "profiles"


def test_a_config_dir_without_profiles_is_an_error_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TME_CONFIG_DIR", str(tmp_path))
    with pytest.raises(ConfigError, match=str(tmp_path / "profiles")):
        _profiles_dir()
