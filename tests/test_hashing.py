"""Code hashing and the pepper (DESIGN.md §2.4)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from gatewayd.errors import PepperError
from gatewayd.voicemail.hashing import (
    PEPPER_CREDENTIAL,
    CodeHasher,
    create_pepper,
    load_pepper,
    pepper_path,
)

PEPPER = b"p" * 32


def test_a_right_code_verifies_and_a_wrong_one_does_not() -> None:
    hasher = CodeHasher(PEPPER, n=2**10)
    salt = hasher.new_salt()
    stored = hasher.hash("4931", salt)
    assert hasher.verify("4931", salt, stored)
    assert not hasher.verify("4932", salt, stored)


def test_the_hash_depends_on_pepper_salt_and_cost() -> None:
    salt = b"s" * 16
    base = CodeHasher(PEPPER, n=2**10).hash("4931", salt)
    assert CodeHasher(b"q" * 32, n=2**10).hash("4931", salt) != base
    assert CodeHasher(PEPPER, n=2**11).hash("4931", salt) != base
    assert CodeHasher(PEPPER, n=2**10).hash("4931", b"t" * 16) != base
    assert b"4931" not in base and "4931" not in base.hex()


def test_a_missing_pepper_is_a_clear_error_never_a_default(tmp_path: Path) -> None:
    with pytest.raises(PepperError, match="gatewayd provision") as err:
        load_pepper(tmp_path / "pepper")
    assert str(tmp_path / "pepper") in str(err.value)


def test_a_short_pepper_is_refused(tmp_path: Path) -> None:
    (tmp_path / "pepper").write_bytes(b"short")
    with pytest.raises(PepperError, match="at least 16"):
        load_pepper(tmp_path / "pepper")
    with pytest.raises(PepperError):
        CodeHasher(b"short")


def test_create_pepper_is_private_and_never_overwrites(tmp_path: Path) -> None:
    path = tmp_path / "box" / "pepper"
    pepper = create_pepper(path)
    assert load_pepper(path) == pepper
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with pytest.raises(PepperError, match="never overwritten"):
        create_pepper(path)
    assert load_pepper(path) == pepper


def test_the_systemd_credential_wins_over_the_configured_path(tmp_path, monkeypatch) -> None:
    configured = tmp_path / "pepper"
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path / "creds"))
    assert pepper_path(configured) == configured  # no credential file: the profile's path
    (tmp_path / "creds").mkdir()
    (tmp_path / "creds" / PEPPER_CREDENTIAL).write_bytes(PEPPER)
    assert pepper_path(configured) == tmp_path / "creds" / PEPPER_CREDENTIAL
