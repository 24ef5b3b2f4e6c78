"""SIGKILL crash campaigns over the state file, for tests/test_crash.py and bench/crash.py.

``python -m tests.crash_child serve`` is a fork server: it imports gatewayd once,
then for each job read on stdin (one JSON line) forks a worker that opens the
state file and changes it in an endless loop, reporting on stdout what each
operation is about to do (``begin ...``) and what it has made durable (``code 17``,
``fail 3``, ``ok``, ``reset``). The parent kills the worker with SIGKILL at a
random moment and checks what the next open of the file finds. Forking from a
warm process instead of starting Python each time (~100 ms) lets a few hundred
kills fit in a few seconds; the worker is still a separate process killed by
the kernel in the middle of whatever it was doing.

Two kinds of worker share the protocol: ``store`` writes through gatewayd's
:class:`~gatewayd.voicemail.store.Store` and :class:`SecretCodeService`;
``stock`` writes a similar document through TinyDB's stock ``JSONStorage``, for
comparison (DESIGN.md §2.5). Codes are test data; the protocol carries only
their index in a seeded sequence, never digits.
"""

from __future__ import annotations

import json
import logging
import os
import random
import select
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, NoReturn

from tinydb import TinyDB

from gatewayd.errors import StateFileError
from gatewayd.voicemail.codes import refusal_reason
from gatewayd.voicemail.config import Policy
from gatewayd.voicemail.hashing import CodeHasher
from gatewayd.voicemail.policy import HANDSET, Access, SecretCodeService
from gatewayd.voicemail.store import Mailbox, Store
from tests.conftest import FAST_POLICY, TEST_PEPPER

REPO = Path(__file__).resolve().parent.parent
STATE_NAME = "gatewayd.json"
STOCK_NAME = "stock.json"
#: Cool-downs would refuse checks for minutes; a huge group size turns them off so the loop
#: keeps counting failures up to the lock (10), which a reset then clears.
CRASH_POLICY = Policy(scrypt_n=FAST_POLICY.scrypt_n, cooldown_every=1_000_000_000)
#: Audit records in the audit log before the first kill, as on a box in service (the
#: parent's opens also repair any line a kill tore in it).
AUDIT_RECORDS = 300
MAX_KILL_DELAY_S = 0.050
#: No line from the fork server for this long means it is stuck: fail, don't hang.
LINE_TIMEOUT_S = 20.0


class CrashHarnessError(RuntimeError):
    """The crash harness itself went wrong (a worker raised, the server went silent)."""


def crash_hasher() -> CodeHasher:
    """The hasher of the workers and of the parent's checks (test pepper, cheap scrypt)."""
    return CodeHasher(
        TEST_PEPPER, n=CRASH_POLICY.scrypt_n, r=CRASH_POLICY.scrypt_r, p=CRASH_POLICY.scrypt_p
    )


class CodeSequence:
    """The seeded sequence of codes a campaign sets: each acceptable, each unlike the one before."""

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(f"codes:{seed}")
        self._codes: list[str] = []

    def __getitem__(self, index: int) -> str:
        while len(self._codes) <= index:
            candidate = f"{self._rng.randrange(10_000):04d}"
            if refusal_reason(candidate) is None and self._codes[-1:] != [candidate]:
                self._codes.append(candidate)
        return self._codes[index]


# --- worker side (runs in the forked child) -------------------------------------------


def _emit(line: str) -> None:
    # One write per line: a pipe write under PIPE_BUF is atomic, so a kill never splits a line.
    os.write(1, (line.replace("\n", " ") + "\n").encode())


def _store_worker(path: Path, seed: int, run: int, next_index: int) -> None:
    codes = CodeSequence(seed)
    rng = random.Random(f"ops:{seed}:{run}")
    store = Store(path)
    service = SecretCodeService(store, crash_hasher(), CRASH_POLICY, time.monotonic)
    _emit(f"ready {os.getpid()}")
    while True:
        access = service.access()
        if access is Access.NO_CODE:
            operation = "code"
        elif access is not Access.OPEN:
            operation = "reset"
        else:
            roll = rng.random()
            operation = "code" if roll < 0.1 else "right" if roll < 0.2 else "wrong"
        if operation == "code":
            _emit(f"begin code {next_index}")
            service.set_code(codes[next_index], HANDSET)
            _emit(f"code {next_index}")
            next_index += 1
        elif operation == "reset":
            _emit("begin reset")
            service.reset("advisor")
            _emit("reset")
        elif operation == "right":
            _emit("begin right")
            if not service.check(codes[next_index - 1], "remote").ok:
                raise CrashHarnessError("the right code was refused")
            _emit("ok")
        else:
            right = int(codes[next_index - 1])
            wrong = f"{(right + 1 + rng.randrange(9_999)) % 10_000:04d}"
            _emit("begin wrong")
            result = service.check(wrong, "remote")
            _emit(f"fail {result.failures}")


def _stock_worker(path: Path, run: int) -> None:
    db = TinyDB(str(path))  # the stock JSONStorage: rewrite in place, fsync, then truncate
    state, audit = db.table("state"), db.table("audit")
    _emit(f"ready {os.getpid()}")
    while True:
        doc = state.get(doc_id=1)
        if not isinstance(doc, dict):
            raise CrashHarnessError("the stock file lost its state document")
        code, failures = doc["code"], doc["failures"] + 1
        if failures > CRASH_POLICY.lock_after:
            code, failures = code + 1, 0
        _emit("begin")
        state.update({"code": code, "failures": failures}, doc_ids=[1])
        audit.insert({"what": "failure", "origin": "remote", "time": time.time(), "run": run})
        oldest = min(record.doc_id for record in audit.all())
        audit.remove(doc_ids=[oldest])  # a shorter file: the case stock TinyDB gets wrong
        _emit(f"wrote {code} {failures}")


def _worker_main(job: dict[str, Any]) -> NoReturn:
    try:
        if job["kind"] == "store":
            _store_worker(Path(job["path"]), job["seed"], job["run"], job["next_index"])
        else:
            _stock_worker(Path(job["path"]), job["run"])
    except BaseException as exc:
        _emit(f"error {os.getpid()} {type(exc).__name__}: {exc}")
        while True:  # stay alive until the parent's SIGKILL, so its pid stays ours
            signal.pause()
    os._exit(70)


def serve() -> None:
    """Fork server loop: one worker per JSON job line on stdin; reports ``exit PID CODE``."""
    logging.disable(logging.CRITICAL)  # the workers' wrong-code warnings would only be noise
    _emit("serving")
    for raw in sys.stdin.buffer:
        job = json.loads(raw)
        pid = os.fork()
        if pid == 0:
            _worker_main(job)
        _, status = os.waitpid(pid, 0)
        _emit(f"exit {pid} {os.waitstatus_to_exitcode(status)}")


# --- parent side ------------------------------------------------------------------------


class _LineReader:
    """Lines from a pipe, with a time-out so a stuck server fails the test instead of hanging."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._fd = stream.fileno()
        self._buffer = bytearray()

    def readline(self) -> str:
        while b"\n" not in self._buffer:
            ready, _, _ = select.select([self._fd], [], [], LINE_TIMEOUT_S)
            if not ready:
                raise CrashHarnessError(
                    f"the crash fork server said nothing for {LINE_TIMEOUT_S} s"
                )
            chunk = os.read(self._fd, 65536)
            if not chunk:
                raise CrashHarnessError("the crash fork server closed its output")
            self._buffer += chunk
        line, _, rest = self._buffer.partition(b"\n")
        self._buffer = bytearray(rest)
        return line.decode()


class ForkServer:
    """The ``serve`` process, started with subprocess; runs a worker and SIGKILLs it."""

    def __init__(self) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "tests.crash_child", "serve"],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._stdin = self._proc.stdin
        self._reader = _LineReader(self._proc.stdout)
        if (first := self._reader.readline()) != "serving":
            raise CrashHarnessError(f"unexpected first line from the fork server: {first!r}")

    def __enter__(self) -> ForkServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def run_and_kill(self, job: dict[str, Any], delay_s: float) -> list[str]:
        """Start a worker, SIGKILL it ``delay_s`` after it is ready; its lines after ``ready``."""
        self._stdin.write(json.dumps(job).encode() + b"\n")
        self._stdin.flush()
        line = self._reader.readline()
        pid = int(line.split()[1]) if line.startswith(("ready ", "error ")) else None
        if pid is None:
            raise CrashHarnessError(f"worker did not start: {line!r}")
        if line.startswith("ready "):
            time.sleep(delay_s)  # only places the kill; nothing is asserted on timing
        os.kill(pid, signal.SIGKILL)  # not reaped before the server reads it: still our worker
        lines: list[str] = [] if line.startswith("ready ") else [line]
        while not (line := self._reader.readline()).startswith("exit "):
            lines.append(line)
        errors = [text for text in lines if text.startswith("error ")]
        if errors:
            raise CrashHarnessError(f"the worker failed: {errors[0]}")
        if int(line.split()[2]) != -signal.SIGKILL:
            raise CrashHarnessError(f"the worker ended by itself: {line!r}")
        return lines

    def close(self) -> None:
        """Stop the server (end of its stdin); safe to call twice."""
        if self._proc.poll() is None:
            self._stdin.close()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        if self._proc.stdout is not None:
            self._proc.stdout.close()


def temp_files(state_path: Path) -> list[Path]:
    """Temporary files of an atomic write of ``state_path`` present in its directory."""
    return sorted(state_path.parent.glob(f".{state_path.name}.tmp-*"))


@dataclass(frozen=True)
class CodeState:
    """What the parent checks after a kill: which code of the sequence is stored, the counter."""

    code_index: int | None
    failures: int


def outcomes(confirmed: CodeState, intent: list[str] | None) -> set[CodeState]:
    """States the file may hold after a kill: the confirmed one, or what the op in flight wrote."""
    allowed = {confirmed}
    if intent is None:
        return allowed
    index, failures = confirmed.code_index, confirmed.failures
    if intent[0] == "code":
        allowed.add(CodeState(int(intent[1]), 0))
    elif intent[0] == "reset":
        allowed.add(CodeState(None, 0))
    elif intent[0] == "wrong":
        allowed.add(CodeState(index, failures + 1))  # counted, then audited: same counter
    elif intent[0] == "right":
        allowed |= {CodeState(index, failures + 1), CodeState(index, 0)}  # counted, then cleared
    return allowed


@dataclass
class StoreCampaign:
    """Results of SIGKILLs over gatewayd's Store."""

    kills: int = 0
    #: Kills after which the Store refused the file (did not parse, malformed).
    unparsable: int = 0
    #: Kills that landed with an operation begun and not yet reported done.
    in_flight: int = 0
    #: ... of which the operation was found complete on disk.
    landed: int = 0
    #: Kills that left a temporary file (removed by the next open).
    stale_temp_files: int = 0
    confirmed: Counter[str] = field(default_factory=Counter)
    violations: list[str] = field(default_factory=list)


@dataclass
class StockCampaign:
    """Results of SIGKILLs over TinyDB's stock JSONStorage."""

    kills: int = 0
    #: Kills that left a file that does not parse as a JSON object (empty included).
    unparsable: int = 0
    empty: int = 0
    in_flight: int = 0
    confirmed_writes: int = 0


def _observe(mailbox: Mailbox, candidates: list[int], codes: CodeSequence) -> int | None:
    """Index of the stored code among ``candidates``; -1 if it is none of them."""
    if mailbox.code_hash is None or mailbox.salt is None:
        return None
    hasher = crash_hasher()
    for index in candidates:
        if hasher.verify(codes[index], mailbox.salt, mailbox.code_hash):
            return index
    return -1


def _prepare_store(path: Path, audit_records: int) -> None:
    with Store(path) as store, store.transaction():
        for n in range(audit_records):
            store.audit("failure", "remote", failures=n % 10 + 1)


def run_store_campaign(state_dir: Path, kills: int, seed: int) -> StoreCampaign:
    """SIGKILL the Store worker ``kills`` times in a row on one state file; check every open."""
    path = state_dir / STATE_NAME
    _prepare_store(path, AUDIT_RECORDS)
    codes = CodeSequence(seed)
    rng = random.Random(f"kills:{seed}")
    result = StoreCampaign()
    confirmed, next_index = CodeState(None, 0), 0
    with ForkServer() as server:
        for run in range(kills):
            job = {"kind": "store", "path": str(path), "seed": seed, "run": run}
            job["next_index"] = next_index
            lines = server.run_and_kill(job, rng.uniform(0.0, MAX_KILL_DELAY_S))
            result.kills += 1
            intent: list[str] | None = None
            for line in lines:
                word, *args = line.split()
                if word == "begin":
                    intent = args
                    continue
                intent = None
                result.confirmed[word] += 1
                if word == "code":
                    confirmed, next_index = CodeState(int(args[0]), 0), int(args[0]) + 1
                elif word == "reset":
                    confirmed = CodeState(None, 0)
                elif word == "ok":
                    confirmed = CodeState(confirmed.code_index, 0)
                elif word == "fail":
                    if int(args[0]) != confirmed.failures + 1:
                        result.violations.append(
                            f"kill {run}: worker counted {args[0]} after {confirmed.failures}"
                        )
                    confirmed = CodeState(confirmed.code_index, int(args[0]))
            result.in_flight += intent is not None
            result.stale_temp_files += bool(temp_files(path))
            try:
                store = Store(path)
            except StateFileError as exc:
                result.unparsable += 1
                result.violations.append(f"kill {run}: the store refused the file: {exc}")
                break  # nothing left to run the next worker on
            with store:
                mailbox = store.mailbox()
            if temp_files(path):
                result.violations.append(f"kill {run}: a temporary file survived an open")
            candidates = [i for i in (confirmed.code_index,) if i is not None]
            if intent is not None and intent[0] == "code":
                candidates.append(int(intent[1]))
            found = CodeState(_observe(mailbox, candidates, codes), mailbox.failures)
            allowed = outcomes(confirmed, intent)
            if found not in allowed:
                result.violations.append(
                    f"kill {run}: file holds {found}, expected one of {sorted(map(str, allowed))}"
                    f" (in flight: {intent})"
                )
            if mailbox.locked and mailbox.failures < CRASH_POLICY.lock_after:
                result.violations.append(f"kill {run}: locked at {mailbox.failures} failures")
            if result.violations:
                break  # the file is no longer what the next worker expects: stop at the first
            result.landed += intent is not None and found != confirmed
            confirmed = found
            if found.code_index is not None and found.code_index >= next_index:
                next_index = found.code_index + 1
    return result


def _prepare_stock(path: Path, audit_records: int) -> None:
    db = TinyDB(str(path))
    db.table("state").insert({"code": 0, "failures": 0})
    db.table("audit").insert_multiple(
        {"what": "failure", "origin": "remote", "time": time.time(), "run": -1}
        for _ in range(audit_records)
    )
    db.close()


def _parses(raw: bytes) -> bool:
    try:
        return isinstance(json.loads(raw), dict)
    except ValueError:  # JSONDecodeError and UnicodeDecodeError
        return False


def run_stock_campaign(state_dir: Path, kills: int, seed: int) -> StockCampaign:
    """The same kills over TinyDB's stock JSONStorage; counts files left unparsable."""
    path = state_dir / STOCK_NAME
    _prepare_stock(path, AUDIT_RECORDS)
    last_good = path.read_bytes()
    rng = random.Random(f"kills:{seed}")
    result = StockCampaign()
    with ForkServer() as server:
        for run in range(kills):
            job = {"kind": "stock", "path": str(path), "seed": seed, "run": run}
            lines = server.run_and_kill(job, rng.uniform(0.0, MAX_KILL_DELAY_S))
            result.kills += 1
            result.confirmed_writes += sum(line.startswith("wrote") for line in lines)
            result.in_flight += bool(lines) and lines[-1] == "begin"
            raw = path.read_bytes()
            if _parses(raw):
                last_good = raw
                continue
            result.unparsable += 1
            result.empty += not raw
            path.write_bytes(last_good)  # what a technician would restore; the next run needs it
    return result


if __name__ == "__main__":
    if sys.argv[1:] != ["serve"]:
        sys.exit("usage: python -m tests.crash_child serve")
    serve()
