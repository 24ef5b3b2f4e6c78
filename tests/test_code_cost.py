"""The code check's cost fitted to the board (issue 13 point 5).

``selftest`` says whether the profile's ``scrypt_n`` keeps a check under 300 ms
and which value would; the cost is stored beside each hash, so changing
``scrypt_n`` never voids the stored code: it is hashed again at the new cost at
its next right entry. Times are given to the pure parts, never measured here.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from gatewayd import provision
from gatewayd.profile import load_profile
from gatewayd.selftest import check_code_cost
from gatewayd.voicemail.config import Policy
from gatewayd.voicemail.hashing import SCRYPT_N_FLOOR, CodeHasher, fitted_n
from gatewayd.voicemail.policy import HANDSET, SecretCodeService
from gatewayd.voicemail.store import Store
from tests.conftest import TEST_PEPPER
from tests.harness import FakeClock

CODE = "4739"


def service_at(store: Store, n: int) -> SecretCodeService:
    policy = Policy(scrypt_n=n)
    return SecretCodeService(store, CodeHasher(TEST_PEPPER, n=n), policy, FakeClock())


def stored(path: Path) -> dict[str, object]:
    (doc,) = json.loads(path.read_bytes())["mailbox"].values()
    assert isinstance(doc, dict)
    return doc


def test_a_new_scrypt_n_keeps_the_code_and_rehashes_it_at_the_next_right_code(
    tmp_path: Path,
) -> None:
    path = tmp_path / "gatewayd.json"
    with Store(path) as store:
        service_at(store, 2**10).set_code(CODE, HANDSET)
    old = stored(path)
    assert old["kdf"] == "1024:8:1"
    with Store(path) as store:  # the profile now says 2**11
        dearer = service_at(store, 2**11)
        assert not dearer.check("5827", "remote").ok
        assert stored(path)["code_hash"] == old["code_hash"]  # a wrong code changes nothing
        assert dearer.check(CODE, "remote").ok  # the old hash is still valid
    new = stored(path)
    assert new["kdf"] == "2048:8:1" and new["failures"] == 0
    assert new["code_hash"] != old["code_hash"] and new["salt"] != old["salt"]
    with Store(path) as store:  # and the new hash is the code at the new cost
        assert service_at(store, 2**11).check(CODE, "remote").ok
        assert stored(path)["code_hash"] == new["code_hash"]


def test_a_file_from_before_the_cost_was_stored_is_read_at_the_profiles_cost(
    tmp_path: Path,
) -> None:
    path = tmp_path / "gatewayd.json"
    with Store(path) as store:
        service_at(store, 2**10).set_code(CODE, HANDSET)
    data = json.loads(path.read_bytes())
    for doc in data["mailbox"].values():
        del doc["kdf"]
    path.write_text(json.dumps(data))
    with Store(path) as store:
        assert service_at(store, 2**10).check(CODE, "remote").ok


def test_the_fitted_cost_is_the_largest_power_of_two_under_budget() -> None:
    assert fitted_n(0.060, 16384) == 65536  # 60 ms at 2**14: 240 ms at 2**16
    assert fitted_n(0.450, 16384) == 8192  # five times slower: 225 ms at 2**13
    assert fitted_n(30.0, 16384) == SCRYPT_N_FLOOR  # never below the schema's floor


def test_selftest_says_whether_the_profile_cost_fits_and_what_would() -> None:
    slow = check_code_cost(Policy(scrypt_n=16384), seconds=0.450)
    assert not slow.ok and "450 ms" in slow.detail and "scrypt_n = 8192" in slow.fix
    fast = check_code_cost(Policy(scrypt_n=16384), seconds=0.060)
    assert fast.ok and "65536" in fast.detail


def test_provision_writes_the_fitted_cost_into_the_profile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(provision, "time_one_check", lambda n, r, p: 0.450)  # a slow board
    out = io.StringIO()
    code = provision.main(
        "sim",
        etc_dir=str(tmp_path / "etc"),
        state_dir=str(tmp_path / "state"),
        runtime_dir=str(tmp_path / "run"),
        fit_scrypt=True,
        out=out,
    )
    assert code == provision.EXIT_OK, out.getvalue()
    assert "450 ms at 16384" in out.getvalue() and "8192 keeps it under 300 ms" in out.getvalue()
    assert load_profile(str(tmp_path / "etc" / "profile.toml")).voicemail.policy.scrypt_n == 8192


def test_a_re_hash_does_not_void_a_comparison_under_way(tmp_path: Path) -> None:
    path = tmp_path / "gatewayd.json"
    with Store(path) as store:
        service_at(store, 2**10).set_code(CODE, HANDSET)
    with Store(path) as store:
        dearer = service_at(store, 2**11)
        right = dearer.begin_check(CODE, "remote")
        wrong = dearer.begin_check("5827", "remote")
        assert dearer.settle(right, dearer.verify(right)).ok  # re-hashed at 2**11
        assert stored(path)["kdf"] == "2048:8:1"
        # Same code, new hash: the other try is still about it, and counts.
        assert dearer.settle(wrong, dearer.verify(wrong)).failures == 1
        assert stored(path)["failures"] == 1
