"""``gatewayd provision``: the pepper, the profile where the unit reads it, the technician code."""

from __future__ import annotations

import io
import os
import pty
import select
import socket
import stat
import sys
import time
import tomllib
from pathlib import Path

import pytest

from gatewayd.console import LoginOutcome, TechnicianAuth
from gatewayd.errors import ProfileError
from gatewayd.paths import resolve_pepper_path
from gatewayd.profile import load_profile
from gatewayd.provision import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    ProvisionError,
    main,
    read_technician_code,
    with_pepper_file,
    write_profile,
)
from gatewayd.selftest import main as selftest_main
from gatewayd.voicemail.hashing import CodeHasher
from gatewayd.voicemail.store import Store
from tests.daemon_process import REPO, make_profile

TECH_CODE = "582046"


def provision(tmp: Path, profile: Path, *, code: str | None = None, force: bool = False):
    out = io.StringIO()
    status = main(
        str(profile),
        etc_dir=str(tmp / "etc"),
        state_dir=str(tmp / "state"),
        runtime_dir=str(tmp / "run"),
        tech_code=code is not None,
        force=force,
        stdin=io.StringIO(f"{code}\n" if code is not None else ""),
        out=out,
    )
    return status, out.getvalue()


def technician_login(tmp: Path, code: str) -> LoginOutcome:
    profile = load_profile(tmp / "etc" / "profile.toml")
    pepper = (tmp / "etc" / "pepper").read_bytes()
    hasher = CodeHasher(pepper, n=profile.voicemail.policy.scrypt_n)
    with Store(tmp / "state" / "gatewayd.json") as store:
        return TechnicianAuth(store, hasher, time.monotonic).login(code, "test").outcome


@pytest.fixture
def profile(tmp_path: Path) -> Path:
    return make_profile(tmp_path)


def test_creates_a_private_pepper_and_the_profile_the_unit_reads(
    tmp_path: Path, profile: Path
) -> None:
    status, out = provision(tmp_path, profile)
    assert status == EXIT_OK, out
    pepper = tmp_path / "etc" / "pepper"
    assert stat.S_IMODE(pepper.stat().st_mode) == 0o600 and len(pepper.read_bytes()) >= 32
    written = load_profile(tmp_path / "etc" / "profile.toml")
    assert resolve_pepper_path(written, tmp_path / "state") == pepper
    assert written.voicemail == load_profile(profile).voicemail  # the rest is the chosen profile
    assert "created (mode 0600)" in out and "systemctl enable --now gatewayd" in out


def test_the_pepper_is_never_overwritten_without_force(tmp_path: Path, profile: Path) -> None:
    provision(tmp_path, profile, code=TECH_CODE)
    pepper = (tmp_path / "etc" / "pepper").read_bytes()
    status, out = provision(tmp_path, profile)
    assert status == EXIT_OK and "kept" in out
    assert (tmp_path / "etc" / "pepper").read_bytes() == pepper
    assert technician_login(tmp_path, TECH_CODE) is LoginOutcome.OK

    status, out = provision(tmp_path, profile, force=True)
    assert status == EXIT_OK and "REPLACED" in out and "no longer verify" in out
    assert (tmp_path / "etc" / "pepper").read_bytes() != pepper
    assert stat.S_IMODE((tmp_path / "etc" / "pepper").stat().st_mode) == 0o600
    assert technician_login(tmp_path, TECH_CODE) is LoginOutcome.WRONG  # as it warned


def test_the_technician_code_is_hashed_never_shown(tmp_path: Path, profile: Path) -> None:
    status, out = provision(tmp_path, profile, code=TECH_CODE)
    assert status == EXIT_OK and "technician code: set" in out
    assert TECH_CODE not in out
    state = (tmp_path / "state" / "gatewayd.json").read_text()
    assert TECH_CODE not in state and TECH_CODE.encode().hex() not in state
    assert technician_login(tmp_path, "999999") is LoginOutcome.WRONG
    assert technician_login(tmp_path, TECH_CODE) is LoginOutcome.OK


@pytest.mark.parametrize("code", ["123", "123456789", "12a4", "7777", "4567", ""])
def test_a_bad_technician_code_changes_nothing(tmp_path: Path, profile: Path, code: str) -> None:
    status, out = provision(tmp_path, profile, code=code)
    assert status == EXIT_USAGE and "technician code refused" in out
    assert not (tmp_path / "etc").exists()  # asked first: nothing was written


def test_the_technician_code_is_asked_twice_without_echo_on_a_terminal(
    tmp_path: Path, profile: Path
) -> None:
    script = (
        "import sys; from gatewayd.provision import main; "
        "sys.exit(main(sys.argv[1], etc_dir=sys.argv[2], state_dir=sys.argv[3], "
        "runtime_dir=sys.argv[4], tech_code=True))"
    )
    args = [str(profile), str(tmp_path / "etc"), str(tmp_path / "state"), str(tmp_path / "run")]
    pid, terminal = pty.fork()
    if pid == 0:  # the child: its stdin and controlling terminal are the pty
        os.chdir(REPO)
        os.execv(sys.executable, [sys.executable, "-c", script, *args])
    seen = b""

    def read_until(marker: bytes) -> None:
        nonlocal seen
        deadline = time.monotonic() + 20
        while marker not in seen:
            assert time.monotonic() < deadline, seen
            if select.select([terminal], [], [], 1)[0]:
                seen += os.read(terminal, 4096)

    read_until(b"not echoed): ")
    os.write(terminal, TECH_CODE.encode() + b"\n")
    read_until(b"again: ")
    os.write(terminal, TECH_CODE.encode() + b"\n")
    with pytest.raises(OSError):  # EIO once the child has exited
        while chunk := os.read(terminal, 4096):
            seen += chunk
    _, status = os.waitpid(pid, 0)
    os.close(terminal)
    assert os.waitstatus_to_exitcode(status) == 0, seen
    assert b"technician code: set" in seen and TECH_CODE.encode() not in seen
    assert technician_login(tmp_path, TECH_CODE) is LoginOutcome.OK


def test_refuses_while_the_daemon_runs(tmp_path: Path, profile: Path) -> None:
    (tmp_path / "run").mkdir()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as ctl:
        ctl.bind(str(tmp_path / "run" / "ctl.sock"))
        ctl.listen()
        status, out = provision(tmp_path, profile, code=TECH_CODE)
    assert status == EXIT_FAILED and "systemctl stop gatewayd" in out
    assert not (tmp_path / "etc").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_the_state_file_goes_to_the_state_dirs_owner(tmp_path: Path, profile: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    os.chown(state, 4242, 4242)  # as systemd's StateDirectory= leaves it for the service user
    assert provision(tmp_path, profile, code=TECH_CODE)[0] == EXIT_OK
    owners = {path.name: (path.stat().st_uid, path.stat().st_gid) for path in state.iterdir()}
    # The state file and the audit log (its tech_code_set record): the daemon must write both.
    assert owners == {"gatewayd.json": (4242, 4242), "gatewayd.audit.jsonl": (4242, 4242)}


def test_a_different_profile_replaces_the_old_one_and_keeps_a_copy(
    tmp_path: Path, profile: Path
) -> None:
    provision(tmp_path, profile)
    first = (tmp_path / "etc" / "profile.toml").read_text()
    other = tmp_path / "other.toml"
    other.write_text(profile.read_text().replace('access_number = "3103"', 'access_number = "888"'))
    status, out = provision(tmp_path, other)
    assert status == EXIT_OK and "profile.toml.old" in out
    assert (tmp_path / "etc" / "profile.toml.old").read_text() == first
    assert load_profile(tmp_path / "etc" / "profile.toml").voicemail.access_number == "888"
    assert provision(tmp_path, tmp_path / "etc" / "profile.toml")[1].count("unchanged") == 1


@pytest.mark.parametrize(
    "storage",
    [
        '[storage]\nstate_dir = "/var/lib/gatewayd"\npepper_file = "pepper"\n',
        '[storage]\nstate_dir = "/var/lib/gatewayd"\n',
        "",
    ],
)
def test_pepper_file_is_set_whatever_the_storage_section_holds(storage: str) -> None:
    text = f'[board]\nname = "x"\n\n{storage}\n[logging]\nlevel = "info"\n'
    result = tomllib.loads(with_pepper_file(text, Path("/etc/gatewayd/pepper"), Path("x.toml")))
    assert result["storage"]["pepper_file"] == "/etc/gatewayd/pepper"
    assert result["logging"] == {"level": "info"} and result["board"] == {"name": "x"}


# --- every TOML spelling of [storage] (issue 9: regexes broke all but one) ----------------

SIM_STORAGE = """[storage]
state_dir = "~/.local/state/gatewayd"
# Relative: inside the state dir. Only the sim creates its own pepper; hardware
# profiles get theirs from `gatewayd provision`.
pepper_file = "pepper"
create_pepper = true
"""
#: The same [storage] in each spelling TOML allows: where it goes (top, or in place), its text.
SPELLINGS = {
    "table": ("in place", SIM_STORAGE),
    "quoted-header": ("in place", SIM_STORAGE.replace("[storage]", '["storage"]  # quoted')),
    "spaced-header": ("in place", SIM_STORAGE.replace("[storage]", "[ storage ]")),
    "dotted-keys": (
        "top",
        '# kept comment\nstorage.state_dir = "~/.local/state/gatewayd"\n'
        'storage.pepper_file = "pepper"\nstorage.create_pepper = true\n',
    ),
    "inline-table": (
        "top",
        "# kept comment\n"
        'storage = { state_dir = "~/.local/state/gatewayd", create_pepper = true }\n',
    ),
    "absent": ("in place", ""),
}


def spelled(tmp: Path, spelling: str) -> Path:
    """The test sim profile with its [storage] written in ``spelling``."""
    path = make_profile(tmp)
    text = path.read_text()
    assert SIM_STORAGE in text
    where, storage = SPELLINGS[spelling]
    if where == "top":
        text = storage + "\n" + text.replace(SIM_STORAGE, "")
    else:
        text = text.replace(SIM_STORAGE, storage)
    path.write_text(text)
    assert load_profile(path).storage.pepper_file == "pepper"  # a valid profile to start with
    return path


@pytest.mark.parametrize("spelling", sorted(SPELLINGS))
def test_every_spelling_of_storage_is_provisioned(tmp_path: Path, spelling: str) -> None:
    source = spelled(tmp_path, spelling)
    status, out = provision(tmp_path, source)
    assert status == EXIT_OK, out
    target = tmp_path / "etc" / "profile.toml"
    written = load_profile(target)
    assert written.storage.pepper_file == str((tmp_path / "etc" / "pepper").absolute())
    assert written.storage.state_dir == "~/.local/state/gatewayd"
    assert written.voicemail == load_profile(source).voicemail
    text = target.read_text()
    assert text.count("pepper_file =") == 1  # replaced, not added twice
    if spelling in ("dotted-keys", "inline-table"):
        assert "# kept comment" in text  # the technician's comments stay
    # Provisioning again from the provisioned file changes nothing.
    assert "unchanged" in provision(tmp_path, target)[1]


def test_comments_and_layout_are_kept(tmp_path: Path, profile: Path) -> None:
    provision(tmp_path, profile)
    original = profile.read_text().splitlines()
    written = (tmp_path / "etc" / "profile.toml").read_text().splitlines()
    assert written[0].startswith("# Provisioned by `gatewayd provision` from ")
    changed = [line for line in written[1:] if line not in original]
    assert changed == [f'pepper_file = "{(tmp_path / "etc" / "pepper").absolute()}"']


def test_a_profile_that_would_not_load_never_replaces_the_file(
    tmp_path: Path, profile: Path
) -> None:
    assert provision(tmp_path, profile)[0] == EXIT_OK
    etc = tmp_path / "etc"
    before = (etc / "profile.toml").read_bytes()
    loaded = load_profile(profile)
    # The source changes after it was checked (an editor saving it half-way, say).
    profile.write_text(profile.read_text().replace('[board]\nname = "sim"', "[board]"))
    with pytest.raises(ProvisionError) as caught:
        write_profile(loaded, etc / "profile.toml", (etc / "pepper").absolute())
    message = str(caught.value)
    assert message.startswith(f"{etc / 'profile.toml'}: left unchanged")
    assert "board.name: missing required key" in message
    assert (etc / "profile.toml").read_bytes() == before
    assert sorted(p.name for p in etc.iterdir()) == ["pepper", "profile.toml"]  # no temp left


def test_broken_toml_in_the_source_is_named_and_nothing_is_written(tmp_path: Path) -> None:
    with pytest.raises(ProfileError) as caught:
        with_pepper_file('[board]\nname = "x"\n[storage\n', Path("/p"), Path("board.toml"))
    assert str(caught.value).startswith("board.toml: TOML syntax error")


class _Terminal(io.StringIO):
    """Standard input that says it is a terminal (the prompts are answered by ``ask``)."""

    def isatty(self) -> bool:
        return True


def test_a_mistyped_code_is_asked_again_up_to_three_times() -> None:
    answers = iter(["58204", TECH_CODE, TECH_CODE, "582064", TECH_CODE, TECH_CODE])
    out = io.StringIO()
    code = read_technician_code(_Terminal(), ask=lambda prompt: next(answers), out=out)
    assert code == TECH_CODE
    assert out.getvalue().count("try again") == 2
    assert "the two codes differ; try again" in out.getvalue()
    assert TECH_CODE not in out.getvalue()


def test_three_mistyped_codes_give_up_and_change_nothing() -> None:
    out = io.StringIO()
    with pytest.raises(ProvisionError, match="3 times; nothing was changed"):
        read_technician_code(_Terminal(), ask=lambda prompt: "12", out=out)
    assert out.getvalue().count("try again") == 2


def test_selftest_of_the_shipped_profile_checks_the_pepper_provision_wrote(
    tmp_path: Path,
) -> None:
    """The issue: `selftest --profile usr5637-modem` looked for the pepper elsewhere."""
    status, _ = provision(tmp_path, Path("usr5637-modem"), code=TECH_CODE)
    assert status == EXIT_OK
    pepper = tmp_path / "etc" / "pepper"
    for profile in ("usr5637-modem", str(tmp_path / "etc" / "profile.toml")):
        out = io.StringIO()
        selftest_main(
            profile,
            str(tmp_path / "state"),
            str(tmp_path / "run"),
            etc_dir=str(tmp_path / "etc"),
            out=out,
        )
        shown = out.getvalue()
        assert f"ok    pepper {pepper}: present, mode 0600" in shown, shown
        assert "technician code" not in shown or "FAIL  technician" not in shown
        loaded = load_profile(profile)
        assert resolve_pepper_path(loaded, tmp_path / "state", tmp_path / "etc") == pepper
    # status names the profile the box was provisioned from, not "profile"
    assert load_profile(tmp_path / "etc" / "profile.toml").name == "usr5637-modem"
