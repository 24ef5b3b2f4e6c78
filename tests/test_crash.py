"""Crash safety of the state file (DESIGN.md §2.5): kills, crashes at each write step, bad files.

- A worker process changes the code and counts failures in a loop and is killed
  with SIGKILL a few hundred times in a row on the same file: every open after a
  kill finds a file that parses, no temporary file, the last confirmed code or
  the one being set, and a failure counter that never went down by itself.
  TinyDB's stock ``JSONStorage`` gets the same kills, for comparison.
- In-process, a simulated crash at each step of each write (before the write,
  before the fsync, before the replace, before the directory fsync) leaves
  exactly the state before that write or after it, never a mix.
- A state file that is truncated, empty, garbage or malformed is refused with
  an error naming the file and the fix, and left as it was.
"""

from __future__ import annotations

import itertools
import json
import random
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gatewayd.errors import StateFileError
from gatewayd.voicemail.hashing import SALT_BYTES, CodeHasher
from gatewayd.voicemail.policy import HANDSET, SecretCodeService
from gatewayd.voicemail.store import SCHEMA_VERSION, Store
from tests.conftest import TEST_PEPPER
from tests.crash_child import (
    CRASH_POLICY,
    STATE_NAME,
    StoreCampaign,
    run_stock_campaign,
    run_store_campaign,
    temp_files,
)
from tests.harness import FakeClock

#: Kills in a row on one state file (and as many on the stock storage).
KILLS = 200
SEED = 3103
WALL_CLOCK = 1_700_000_000.0
STEPS = ("write", "fsync", "replace", "fsync_dir")
OLD_CODE, NEW_CODE, WRONG_CODE = "4931", "7260", "1111"


# --- SIGKILL ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def store_campaign(tmp_path_factory: pytest.TempPathFactory) -> StoreCampaign:
    return run_store_campaign(tmp_path_factory.mktemp("crash-store"), KILLS, SEED)


@pytest.mark.slow
def test_sigkill_never_leaves_an_unreadable_or_rolled_back_state(
    store_campaign: StoreCampaign, record_property: Callable[[str, object], None]
) -> None:
    campaign = store_campaign
    for name in ("kills", "unparsable", "in_flight", "landed", "stale_temp_files"):
        record_property(f"store_{name}", getattr(campaign, name))
    assert campaign.violations == []
    assert (campaign.kills, campaign.unparsable) == (KILLS, 0)
    # The kills landed inside operations, and every kind of operation ran between them.
    assert campaign.in_flight >= KILLS // 2
    assert {"code", "fail", "ok"} <= set(campaign.confirmed)


@pytest.mark.slow
def test_stock_jsonstorage_under_the_same_kills(
    store_campaign: StoreCampaign,
    tmp_path_factory: pytest.TempPathFactory,
    record_property: Callable[[str, object], None],
    capsys: pytest.CaptureFixture[str],
) -> None:
    stock = run_stock_campaign(tmp_path_factory.mktemp("crash-stock"), KILLS, SEED)
    record_property("stock_kills", stock.kills)
    record_property("stock_unparsable", stock.unparsable)
    with capsys.disabled():
        print(
            f"\n[crash] SIGKILL x{store_campaign.kills}: gatewayd Store left "
            f"{store_campaign.unparsable} unparsable files ({store_campaign.in_flight} kills "
            f"mid-operation, {store_campaign.stale_temp_files} stale temp files removed); "
            f"stock TinyDB JSONStorage x{stock.kills}: {stock.unparsable} unparsable "
            f"({100 * stock.unparsable / stock.kills:.1f}%, {stock.empty} empty, "
            f"{stock.in_flight} kills mid-write)"
        )
    assert store_campaign.unparsable == 0
    assert stock.kills == store_campaign.kills
    # The comparison means something only if the stock worker was writing when killed.
    assert stock.confirmed_writes > 0 and stock.in_flight >= KILLS // 2


# --- a crash at each write step, in-process ------------------------------------------------


class SimulatedCrash(BaseException):
    """A crash at a write step: a BaseException, since nothing on the way may catch a power cut."""


class SeededHasher(CodeHasher):
    """Salts from a counter, so two runs of the same operations write the same bytes."""

    def __init__(self) -> None:
        super().__init__(TEST_PEPPER, n=CRASH_POLICY.scrypt_n)
        self._salts = itertools.count(1)

    def new_salt(self) -> bytes:  # type: ignore[override]
        return next(self._salts).to_bytes(SALT_BYTES, "big")


Operation = Callable[[SecretCodeService], object]


def fail(times: int) -> Operation:
    def failures(service: SecretCodeService) -> None:
        for _ in range(times):
            assert not service.check(WRONG_CODE, "remote").ok

    return failures


def steps_of(*operations: Operation) -> Operation:
    def run(service: SecretCodeService) -> None:
        for operation in operations:
            operation(service)

    return run


def set_code(code: str) -> Operation:
    return lambda service: service.set_code(code, HANDSET)


@dataclass(frozen=True)
class Scenario:
    """An operation crashed in the middle, from the state ``setup`` leaves; its write units."""

    setup: Operation
    operation: Operation
    #: What the operation writes, in order: STATE (a file replacement) or AUDIT (an append).
    units: tuple[tuple[str, ...], ...]


STATE = STEPS
AUDIT = ("audit_write", "audit_fsync")
#: A crash at these steps comes after the unit's data reached the file (replaced or written).
AFTER_STEPS = ("fsync_dir", "audit_fsync")

SCENARIOS = {
    "create": Scenario(steps_of(), set_code(OLD_CODE), units=(STATE, AUDIT)),
    "modify": Scenario(
        steps_of(set_code(OLD_CODE), fail(2)), set_code(NEW_CODE), units=(STATE, AUDIT)
    ),
    "wrong": Scenario(steps_of(set_code(OLD_CODE), fail(1)), fail(1), units=(STATE, AUDIT)),
    "right": Scenario(
        steps_of(set_code(OLD_CODE), fail(2)),
        lambda service: service.check(OLD_CODE, "remote"),
        units=(STATE, STATE),
    ),
    "lock": Scenario(
        steps_of(set_code(OLD_CODE), fail(CRASH_POLICY.lock_after - 1)),
        fail(1),
        units=(STATE, STATE, AUDIT),
    ),
    "reset": Scenario(
        steps_of(set_code(OLD_CODE), lambda service: service.set_protection(True, HANDSET)),
        lambda service: service.reset("advisor"),
        units=(STATE, AUDIT),
    ),
}


def _crash_points() -> list[Any]:
    points = []
    for name, scenario in SCENARIOS.items():
        flat = [step for unit in scenario.units for step in unit]
        for index, step in enumerate(flat):
            points.append(pytest.param(name, index, id=f"{name}-{index}-{step}"))
    return points


CRASH_POINTS = _crash_points()
#: The first step of each write unit: where the reference run photographs the disk.
UNIT_STARTS = ("write", "audit_write")


def run_scenario(path: Path, scenario: Scenario, fault: Callable[[str], None]) -> None:
    """Set up without faults, then run the operation on a store whose writes call ``fault``."""
    hasher, clock = SeededHasher(), FakeClock()
    with Store(path, wall_clock=lambda: WALL_CLOCK) as store:
        scenario.setup(SecretCodeService(store, hasher, CRASH_POLICY, clock))
    with Store(path, wall_clock=lambda: WALL_CLOCK, fault=fault) as store:
        scenario.operation(SecretCodeService(store, hasher, CRASH_POLICY, clock))


def disk(directory: Path) -> dict[str, bytes]:
    """The files of the state directory (the state file and the audit log), temp files aside."""
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if ".tmp-" not in p.name}


def file_states(path: Path, scenario: Scenario) -> tuple[list[str], list[dict[str, bytes]]]:
    """The write steps of an uninterrupted run, and the disk before each unit and at the end."""
    steps: list[str] = []
    states: list[dict[str, bytes]] = []

    def record(step: str) -> None:
        steps.append(step)
        if step in UNIT_STARTS:
            states.append(disk(path.parent))

    run_scenario(path, scenario, record)
    states.append(disk(path.parent))
    return steps, states


def what_a_user_sees(path: Path) -> dict[str, Any]:
    """Which code opens the mailbox, the counter, lock, protection and the audit trail."""
    with Store(path) as store:
        mailbox = store.mailbox()
        audit = [record["what"] for record in store.audit_log()]
    hasher = SeededHasher()
    working = [
        code
        for code in (OLD_CODE, NEW_CODE)
        if mailbox.code_hash is not None
        and mailbox.salt is not None
        and hasher.verify(code, mailbox.salt, mailbox.code_hash)
    ]
    return {
        "codes that work": working,
        "failures": mailbox.failures,
        "locked": mailbox.locked,
        "protection": mailbox.protection,
        "audit": audit,
    }


@pytest.mark.parametrize(("name", "crash_at"), CRASH_POINTS)
def test_a_crash_at_any_write_step_leaves_the_old_or_the_new_state(
    tmp_path: Path, name: str, crash_at: int
) -> None:
    scenario = SCENARIOS[name]
    steps, states = file_states(tmp_path / "reference" / STATE_NAME, scenario)
    assert steps == [step for unit in scenario.units for step in unit]
    ends = list(itertools.accumulate(len(unit) for unit in scenario.units))
    unit = next(i for i, end in enumerate(ends) if crash_at < end)
    step = steps[crash_at]

    path = tmp_path / "live" / STATE_NAME
    image = tmp_path / "image"
    calls = itertools.count()

    def crash(current: str) -> None:
        if next(calls) == crash_at:
            shutil.copytree(path.parent, image)  # what a kill or a power cut leaves on disk
            raise SimulatedCrash(current)

    with pytest.raises(SimulatedCrash):
        run_scenario(path, scenario, crash)

    # Until its data reaches the file, a unit leaves the disk as before it; after, as after.
    expected = states[unit + 1] if step in AFTER_STEPS else states[unit]
    expected_dir = tmp_path / "expected"
    expected_dir.mkdir()
    for file_name, content in expected.items():
        (expected_dir / file_name).write_bytes(content)
    # Before the replace, the crash leaves a temporary file next to the state file.
    assert bool(temp_files(image / STATE_NAME)) == (step in STATE[:3])
    for crashed in (path, image / STATE_NAME):  # the process that crashed, and a disk image
        assert what_a_user_sees(crashed) == what_a_user_sees(expected_dir / STATE_NAME)
        assert temp_files(crashed) == []  # removed by the open
        assert disk(crashed.parent) == expected


def test_a_crash_after_the_count_keeps_the_count(tmp_path: Path) -> None:
    """The smart-card rule under a crash: dying during the comparison costs the try."""
    scenario = SCENARIOS["right"]
    path = tmp_path / STATE_NAME
    calls = itertools.count()

    def crash(step: str) -> None:
        if next(calls) == len(STEPS):  # the first step of the second write: after the count
            raise SimulatedCrash(step)

    with pytest.raises(SimulatedCrash):
        run_scenario(path, scenario, crash)
    seen = what_a_user_sees(path)
    assert (seen["codes that work"], seen["failures"]) == ([OLD_CODE], 3)


# --- files that must be refused ------------------------------------------------------------


@pytest.fixture
def used_state(state_path: Path) -> bytes:
    """The bytes of a state file in service: a code, protection on, two failures audited."""
    with Store(state_path) as store:
        service = SecretCodeService(store, SeededHasher(), CRASH_POLICY, FakeClock())
        set_code(OLD_CODE)(service)
        service.set_protection(True, HANDSET)
        fail(2)(service)
    return state_path.read_bytes()


def refusal_problem(path: Path, content: bytes) -> str | None:
    """None if the Store refuses ``content`` as it must; otherwise what went wrong."""
    path.write_bytes(content)
    try:
        Store(path).close()
    except StateFileError as exc:
        message = str(exc)
        if str(path) not in message or "backup" not in message.lower():
            return f"the error does not name the file and the fix: {message}"
    except Exception as exc:
        return f"{type(exc).__name__} instead of StateFileError: {exc}"
    else:
        return "opened as a valid state"
    if path.read_bytes() != content:
        return "the file was changed"
    return None


def test_every_truncation_of_a_state_file_is_refused(state_path: Path, used_state: bytes) -> None:
    problems = {
        cut: problem
        for cut in range(len(used_state))
        if (problem := refusal_problem(state_path, used_state[:cut]))
    }
    assert problems == {}


GARBAGE: dict[str, Callable[[bytes], bytes]] = {
    "empty": lambda good: b"",
    "zeros": lambda good: b"\x00" * len(good),
    "random bytes": lambda good: random.Random(SEED).randbytes(len(good)),
    "not utf-8": lambda good: b"\xff\xfe" + good,
    "text": lambda good: b"gatewayd state\n",
    "stale tail": lambda good: good + good[-40:],  # what stock JSONStorage leaves
    "json list": lambda good: b"[" + good + b"]",
    "json null": lambda good: b"null",
    "json number": lambda good: b"3103",
    "json string": lambda good: b'"state"',
}


@pytest.mark.parametrize("damage", GARBAGE.values(), ids=GARBAGE.keys())
def test_a_damaged_state_file_is_refused_and_left_alone(
    state_path: Path, used_state: bytes, damage: Callable[[bytes], bytes]
) -> None:
    assert refusal_problem(state_path, damage(used_state)) is None


def _mailbox(doc: dict[str, Any]) -> dict[str, Any]:
    mailbox: dict[str, Any] = doc["mailbox"]["1"]
    return mailbox


def _set(**fields: Any) -> Callable[[dict[str, Any]], None]:
    return lambda doc: _mailbox(doc).update(fields)


def _drop(key: str) -> Callable[[dict[str, Any]], None]:
    return lambda doc: _mailbox(doc).pop(key)


def _set_schema(value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda doc: doc["meta"]["1"].update(schema=value)


MALFORMED: list[Any] = [
    *(pytest.param(_drop(key), id=f"no {key}") for key in ("code_hash", "salt", "failures")),
    *(pytest.param(_drop(key), id=f"no {key}") for key in ("locked", "protection", "mailbox")),
    pytest.param(_set(failures="2"), id="failures as text"),
    pytest.param(_set(failures=-1), id="negative failures"),
    pytest.param(_set(failures=2.5), id="fractional failures"),
    pytest.param(_set(failures=True), id="failures as bool"),
    pytest.param(_set(locked="no"), id="locked as text"),
    pytest.param(_set(protection=1), id="protection as int"),
    pytest.param(_set(code_hash=3103), id="hash as int"),
    pytest.param(_set(code_hash="not hex"), id="hash not hex"),
    pytest.param(_set(salt=None), id="hash without salt"),
    pytest.param(lambda doc: doc["mailbox"].update({"2": _mailbox(doc)}), id="two mailboxes"),
    pytest.param(lambda doc: doc.pop("mailbox"), id="no mailbox table"),
    pytest.param(lambda doc: doc.pop("meta"), id="no meta table"),
    pytest.param(_set_schema(SCHEMA_VERSION + 1), id="future schema"),
    pytest.param(_set_schema(str(SCHEMA_VERSION)), id="schema as text"),
    pytest.param(lambda doc: doc["meta"]["1"].pop("schema"), id="no schema"),
    pytest.param(_set(code_hash="00"), id="hash too short"),
    pytest.param(lambda doc: doc.update(mailbox=[]), id="mailbox table a list"),
    pytest.param(lambda doc: doc.update(meta=[]), id="meta table a list"),
    pytest.param(lambda doc: doc["meta"].update({"1": 1}), id="meta doc a number"),
    pytest.param(
        lambda doc: doc.update(mailbox={"one": _mailbox(doc)}),
        id="doc id not a number",
    ),
]


@pytest.mark.parametrize("damage", MALFORMED)
def test_a_malformed_state_document_is_refused_and_left_alone(
    state_path: Path, used_state: bytes, damage: Callable[[dict[str, Any]], None]
) -> None:
    doc = json.loads(used_state)
    damage(doc)
    assert refusal_problem(state_path, json.dumps(doc).encode()) is None
