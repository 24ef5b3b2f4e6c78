"""Shared fixtures: a clock you can move, a real store on disk, a service with a cheap scrypt."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import settings

from gatewayd.voicemail.config import Policy, VoicemailConfig
from gatewayd.voicemail.hashing import CodeHasher
from gatewayd.voicemail.policy import SecretCodeService
from gatewayd.voicemail.repository import SecretsRepository
from gatewayd.voicemail.store import Store
from tests.harness import FakeClock, Phone

# The property and fuzz tests draw the same examples on every run of the suite (CI included):
# a red CI means a change broke something, not that a new draw was unlucky. The search for
# new failing runs is the long version, with fresh draws per seed (README "Tests"):
#   python3 -m pytest tests/test_properties.py --hypothesis-profile=search --hypothesis-seed=N
settings.register_profile("repeatable", derandomize=True)
settings.register_profile("search", derandomize=False)
settings.load_profile("repeatable")

#: A real pepper for tests; never a default in the product (see load_pepper).
TEST_PEPPER = b"test-pepper-0123456789abcdef0123"
#: scrypt n=2**10 keeps the suite fast; the product default is measured by bench/verify.py.
FAST_POLICY = Policy(scrypt_n=2**10)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def state_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "gatewayd.json"


@pytest.fixture
def store(state_path: Path):
    with Store(state_path) as opened:
        yield opened


def make_service(store: SecretsRepository, clock: FakeClock, **config: object) -> SecretCodeService:
    policy = FAST_POLICY
    hasher = CodeHasher(TEST_PEPPER, n=policy.scrypt_n, r=policy.scrypt_r, p=policy.scrypt_p)
    return SecretCodeService(store, hasher, policy, clock, line_number=str(config.get("line", "")))


@pytest.fixture
def service(store: Store, clock: FakeClock) -> SecretCodeService:
    return make_service(store, clock)


@pytest.fixture
def phone(service: SecretCodeService, clock: FakeClock) -> Phone:
    return Phone(service, VoicemailConfig(policy=FAST_POLICY), clock)
