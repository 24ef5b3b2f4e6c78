"""``gatewayd selftest --profile X``: check every part a profile names, one line per check.

Run on the box with the daemon stopped (the serial ports and GPIO lines are
its own while it runs): the modem answers ``AT`` with ``OK``, the console port
opens, every GPIO line can be requested, the ALSA devices open at 8 kHz S16
mono, every prompt has a valid WAV in the profile's language, the state file
parses and the pepper is there. Each line is ``ok`` or ``FAIL`` with the
reason and the fix; the exit code is non-zero if anything failed.

:func:`live_checks` is the console's ``selftest``: the checks that make sense
inside the running daemon (it already holds the devices).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import stat
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import alsaaudio
import serial

from gatewayd import paths
from gatewayd.errors import GatewaydError
from gatewayd.gpio import open_backend
from gatewayd.line.at import AtLineKind, AtResponseReader
from gatewayd.paths import resolve_pepper_path, resolve_runtime_dir, resolve_state_dir
from gatewayd.pcm import CHANNELS, PERIOD_FRAMES
from gatewayd.pcm import RATE as SAMPLE_RATE
from gatewayd.profile import MODEM_AUDIO, Profile, load_profile
from gatewayd.prompts import PromptCatalogue, default_audio_dir
from gatewayd.voicemail.config import Policy
from gatewayd.voicemail.hashing import CHECK_BUDGET_S, fitted_n, load_pepper, time_one_check
from gatewayd.voicemail.store import Store

LOGGER = logging.getLogger(__name__)

#: Exit codes: all checks passed, a check failed, the profile itself cannot be used.
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_PROFILE = 2


@dataclass(frozen=True)
class Check:
    """One check: ``ok``, what was checked, and on failure why and how to fix it."""

    name: str
    ok: bool
    detail: str
    fix: str = ""

    def line(self) -> str:
        """``ok    name: detail`` or ``FAIL  name: reason. Fix: ...``."""
        if self.ok:
            return f"ok    {self.name}: {self.detail}"
        fix = f" Fix: {self.fix}" if self.fix else ""
        return f"FAIL  {self.name}: {self.detail}.{fix}"


def _ok(name: str, detail: str) -> Check:
    return Check(name, True, detail)


def _fail(name: str, reason: str, fix: str = "") -> Check:
    return Check(name, False, reason.rstrip("."), fix)


def _about(path: Path, exc: Exception) -> str:
    """The error's message without the leading ``path:`` the check's name already shows."""
    return str(exc).removeprefix(f"{path}: ")


# --- the checks ---------------------------------------------------------------------------


def daemon_running(runtime_dir: Path) -> bool:
    """True if a gatewayd answers on ``<runtime_dir>/ctl.sock`` (it holds the devices then)."""
    path = runtime_dir / paths.CTL_SOCKET
    if not path.exists():
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        try:
            sock.connect(str(path))
        except OSError:
            return False  # a stale socket left by a killed daemon
    return True


def check_modem(port: str, baudrate: int, timeout_s: float, name: str = "modem") -> Check:
    """Open the modem's port and check it answers ``AT`` with ``OK`` within ``timeout_s``."""
    fix_port = (
        "check line.port in the profile (ls -l /dev/serial/by-id/ /dev/ttyACM* /dev/ttyUSB*), "
        "that the modem is plugged in, and that this user may open it (group dialout)"
    )
    try:
        ser = serial.Serial(port, baudrate, timeout=0, write_timeout=timeout_s, exclusive=True)
    except (serial.SerialException, OSError, ValueError) as exc:
        return _fail(f"{name} {port}", f"cannot open the port ({exc})", fix_port)
    reader = AtResponseReader()
    try:
        with contextlib.suppress(serial.SerialException, OSError):
            ser.reset_input_buffer()
        ser.write(b"AT\r")
        deadline = time.monotonic() + timeout_s
        seen: list[str] = []
        while (left := deadline - time.monotonic()) > 0:
            ser.timeout = min(left, 0.2)
            # One byte at least, then whatever else has arrived: no waiting for a full buffer.
            for line in reader.feed(ser.read(max(1, ser.in_waiting))):
                if line.kind is AtLineKind.ECHO:
                    continue
                seen.append(line.text)
                if line.is_final:
                    if line.text.upper() == "OK":
                        return _ok(f"{name} {port}", f"answers AT with OK at {baudrate} baud")
                    return _fail(
                        f"{name} {port}",
                        f"answered AT with {line.text!r}",
                        "power-cycle the modem (unplug it), then run selftest again",
                    )
    except (serial.SerialException, OSError) as exc:
        return _fail(f"{name} {port}", f"the port failed while talking to it ({exc})", fix_port)
    finally:
        with contextlib.suppress(Exception):
            ser.close()
    heard = f" (heard {' | '.join(seen)[:80]!r})" if seen else ""
    return _fail(
        f"{name} {port}",
        f"no OK to AT within {timeout_s:g} s{heard}",
        "check that this port is the voice modem (not another serial device), its cable and "
        "power, and line.baudrate; raise line.command_timeout_s for a slow modem",
    )


def check_serial_port(port: str, baudrate: int, name: str = "console") -> Check:
    """Open a serial port at ``baudrate`` 8N1 and close it again."""
    try:
        ser = serial.Serial(port, baudrate, timeout=0, exclusive=True)
    except (serial.SerialException, OSError, ValueError) as exc:
        return _fail(
            f"{name} {port}",
            f"cannot open the port ({exc})",
            "check console.port in the profile (e.g. /dev/ttyS0, /dev/ttyAMA0), that no getty "
            "uses it (systemctl mask serial-getty@ttyS0.service) and group dialout",
        )
    ser.close()
    return _ok(f"{name} {port}", f"opens at {baudrate} baud 8N1")


def check_gpio(profile: Profile) -> list[Check]:
    """Request every GPIO line of a ``gpio-slic`` profile (outputs at their idle level)."""
    slic = profile.line.slic
    if slic is None:
        return []
    options: dict[str, Any] = {"chip": slic.gpio_chip} if slic.gpio_backend == "gpiod" else {}
    where = f"gpio ({slic.gpio_backend}{', ' + slic.gpio_chip if options else ''})"
    try:
        backend = open_backend(slic.gpio_backend, **options)
    except GatewaydError as exc:
        return [_fail(where, str(exc), "check line.gpio_backend and line.gpio_chip")]
    checks: list[Check] = []
    outputs = {"rm": False, "fr": True}  # not ringing; F/R forward (HARDWARE.md §2)
    with backend:
        for pin_name, pin in vars(slic.pins).items():
            if pin is None:
                continue
            what = "output" if pin_name in outputs else "input"
            name = f"gpio {pin_name} (line {pin}, {what})"
            try:
                if pin_name in outputs:
                    backend.setup_output(pin, outputs[pin_name])
                else:
                    backend.setup_input(pin)
            except GatewaydError as exc:
                checks.append(
                    _fail(
                        name,
                        str(exc),
                        f"check line.pins.{pin_name} against the wiring, and that no other "
                        "program holds the line (gpioinfo)",
                    )
                )
            else:
                checks.append(_ok(name, "requested"))
    return checks


@contextlib.contextmanager
def _alsa_messages() -> Iterator[list[str]]:
    """Catch what libasound writes on file descriptor 2 (``ALSA lib pcm.c:...``).

    Those lines would land between the check lines; the list receives them, once the block
    ends, for a failure to quote.
    """
    caught: list[str] = []
    with tempfile.TemporaryFile() as sink:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(sink.fileno(), 2)
        try:
            yield caught
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            text = sink.read().decode("utf-8", errors="replace")
            caught.extend(line.strip() for line in text.splitlines() if line.strip())


def check_alsa(device: str, capture: bool = False) -> Check:
    """Open an ALSA PCM at 8 kHz S16_LE mono and check ALSA kept that format."""
    kind = "capture" if capture else "playback"
    name = f"audio {kind} {device!r}"
    with _alsa_messages() as messages:
        opened = _open_alsa(device, capture)
    if isinstance(opened, alsaaudio.ALSAAudioError):
        said = f"; ALSA says: {' / '.join(messages)}" if messages else ""
        return _fail(
            name,
            f"cannot open it ({opened}){said}",
            f"check audio.{kind} in the profile against `aplay -L` / `arecord -L` "
            "(a USB sound card is often plughw:CARD=Device) and that this user is in group audio",
        )
    pcm = opened
    try:
        info = pcm.info()
    finally:
        if not capture:
            pcm.drop()  # close() drains playback: never block on it
        pcm.close()
    got = (info.get("rate"), info.get("channels"), info.get("format_name"))
    if got != (SAMPLE_RATE, CHANNELS, "S16_LE"):
        return _fail(
            name,
            f"opened as {got[0]} Hz, {got[1]} channel(s), {got[2]} instead of 8000 Hz mono S16_LE",
            'use a "plughw:" device (ALSA converts) instead of "hw:"',
        )
    return _ok(name, "opens at 8000 Hz, S16_LE, mono")


def _open_alsa(device: str, capture: bool) -> Any:
    """The opened PCM, or the ALSA error (returned, not raised)."""
    try:
        return alsaaudio.PCM(
            alsaaudio.PCM_CAPTURE if capture else alsaaudio.PCM_PLAYBACK,
            alsaaudio.PCM_NONBLOCK,
            rate=SAMPLE_RATE,
            channels=CHANNELS,
            format=alsaaudio.PCM_FORMAT_S16_LE,
            periodsize=PERIOD_FRAMES,
            periods=4,
            device=device,
        )
    except alsaaudio.ALSAAudioError as exc:
        return exc


def check_prompts(language: str, audio_dir: Path | None = None) -> Check:
    """Every prompt of the catalogue has a playable WAV in ``language``."""
    directory = audio_dir or default_audio_dir()
    name = f"prompts ({language})"
    try:
        catalogue = PromptCatalogue.load(directory, language)
    except GatewaydError as exc:
        return _fail(name, str(exc), "reinstall gatewayd (the audio/ folder ships with it)")
    problems = catalogue.problems()
    if problems:
        shown = "; ".join(f"{prompt_id}: {why}" for prompt_id, why in sorted(problems.items()))
        return _fail(
            name,
            f"{len(problems)} of {len(catalogue.ids)} prompts unplayable: {shown}",
            f"regenerate them (audio/generate.sh) or reinstall gatewayd; {directory}/{language}/ "
            "must hold one 8000 Hz 16-bit mono WAV per prompt id",
        )
    return _ok(name, f"{len(catalogue.ids)} prompts, each a valid 8 kHz 16-bit mono WAV")


def check_state(state_dir: Path, console: bool = False) -> list[Check]:
    """The state file parses (or does not exist yet); with a console, a technician code is set."""
    path = state_dir / paths.STATE_FILE
    name = f"state {path}"
    if not path.exists():
        checks = [_ok(name, "not created yet (the daemon creates it at its first start)")]
        if console:
            checks.append(_no_technician_code())
        return checks
    try:
        with Store(path) as store:
            store.mailbox()
            technician = store.technician()
    except GatewaydError as exc:
        return [_fail(name, _about(path, exc))]
    checks = [_ok(name, "parses (schema, mailbox and technician documents valid)")]
    if console:
        checks.append(
            _ok("technician code", "set (the serial console's `login` works)")
            if technician.code_set
            else _no_technician_code()
        )
    return checks


def _no_technician_code() -> Check:
    return _fail(
        "technician code",
        "not set: the serial console cannot log in (reset, ring, play... refused)",
        "gatewayd provision --profile PROFILE --tech-code",
    )


def check_pepper(path: Path) -> Check:
    """The pepper file is there, long enough, and readable by its owner only."""
    name = f"pepper {path}"
    with contextlib.suppress(OSError):
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:  # the daemon refuses it too (load_pepper); say the fix apart
            return _fail(
                name,
                f"readable or writable by others than its owner (mode {mode:04o})",
                f"chmod 600 {path}",
            )
    try:
        load_pepper(path)
        mode = stat.S_IMODE(path.stat().st_mode)
    except (GatewaydError, OSError) as exc:
        return _fail(name, _about(path, exc))
    return _ok(name, f"present, mode {mode:04o}")


def check_code_cost(policy: Policy, seconds: float | None = None) -> Check:
    """Whether the profile's ``scrypt_n`` keeps a code check under budget on this board.

    ``seconds`` is the measured time of one check (measured here when None).
    """
    n = policy.scrypt_n
    took = time_one_check(n, policy.scrypt_r, policy.scrypt_p) if seconds is None else seconds
    fit = fitted_n(took, n)
    name = "code check cost"
    said = f"{took * 1000:.0f} ms per check at scrypt_n = {n} on this board"
    if took <= CHECK_BUDGET_S:
        return _ok(name, f"{said} (<= {CHECK_BUDGET_S * 1000:.0f} ms; {fit} would still fit)")
    return _fail(
        name,
        f"{said}, over {CHECK_BUDGET_S * 1000:.0f} ms: the caller waits that long for the verdict",
        f"set scrypt_n = {fit} in [voicemail.policy] (`gatewayd provision --fit-scrypt` "
        "writes it); the stored code is re-hashed at its next right entry",
    )


# --- running them -------------------------------------------------------------------------


def run_checks(profile: Profile, state_dir: Path, etc_dir: Path | None = None) -> Iterator[Check]:
    """Every check for ``profile``, in the order a technician fixes things."""
    line = profile.line
    if line.modem is not None:
        modem = line.modem
        yield check_modem(modem.port, modem.baudrate, modem.command_timeout_s)
    yield from check_gpio(profile)
    if profile.console is not None:
        yield check_serial_port(profile.console.port, profile.console.baudrate)
    audio = profile.audio
    if audio.playback == MODEM_AUDIO:
        yield _ok("audio playback", "through the voice modem (+VTX), checked with the modem")
    else:
        yield check_alsa(audio.playback)
    if audio.capture and audio.capture != MODEM_AUDIO:
        yield check_alsa(audio.capture, capture=True)
    yield check_prompts(profile.voicemail.language)
    yield check_code_cost(profile.voicemail.policy)
    yield from check_state(state_dir, console=profile.console is not None)
    pepper = resolve_pepper_path(profile, state_dir, etc_dir)
    if profile.storage.create_pepper and not pepper.exists():
        # Only the sim profile may do this (the profile loader refuses it elsewhere).
        yield _ok(f"pepper {pepper}", "not created yet (the sim profile makes its own at start)")
    else:
        yield check_pepper(pepper)


def default_profile(etc_dir: Path | None = None) -> str:
    """The provisioned profile (``/etc/gatewayd/profile.toml``) if there is one, else ``sim``."""
    provisioned = (etc_dir or paths.DEFAULT_ETC_DIR) / paths.PROFILE_FILE
    return str(provisioned) if provisioned.is_file() else "sim"


def main(
    profile: str | None,
    state_dir: str | None,
    runtime_dir: str | None = None,
    *,
    etc_dir: str | None = None,
    out: TextIO | None = None,
) -> int:
    """``gatewayd selftest``: print one line per check; 0 if all passed, 1 if not, 2 bad profile.

    ``profile`` None means :func:`default_profile`.
    """
    stream = out or sys.stdout
    etc = Path(etc_dir) if etc_dir else None

    def say(text: str) -> None:
        print(text, file=stream, flush=True)

    try:
        loaded = load_profile(profile if profile is not None else default_profile(etc))
    except GatewaydError as exc:
        say(f"FAIL  profile: {exc}")
        return EXIT_BAD_PROFILE
    say(f"gatewayd selftest: profile {loaded.name} ({loaded.source}), driver {loaded.line.driver}")
    if daemon_running(resolve_runtime_dir(runtime_dir)):
        say(
            "FAIL  gatewayd is running and holds the devices. Fix: stop it first "
            "(systemctl stop gatewayd), or run `selftest` on its console"
        )
        return EXIT_FAILED
    failed = total = 0
    for check in run_checks(loaded, resolve_state_dir(state_dir, loaded), etc):
        total += 1
        failed += not check.ok
        say(check.line())
    say(
        f"selftest: all {total} checks ok"
        if not failed
        else f"selftest: {failed} of {total} checks failed"
    )
    return EXIT_FAILED if failed else EXIT_OK


def live_checks(
    profile: Profile,
    store: Store,
    pepper_path: Path,
    line_status: dict[str, Any],
    audio_ok: Callable[[], bool],
    audio_dir: Path | None = None,
) -> list[Check]:
    """The console's ``selftest`` inside the running daemon (devices are already open)."""
    checks: list[Check] = []
    try:
        store.mailbox()
        technician = store.technician()  # reads the file itself, past TinyDB's query cache
    except GatewaydError as exc:
        checks.append(_fail(f"state {store.path}", _about(store.path, exc)))
    else:
        checks.append(_ok(f"state {store.path}", "readable and valid"))
        if profile.console is not None and not technician.code_set:
            checks.append(_no_technician_code())
    checks.append(check_pepper(pepper_path))
    checks.append(check_prompts(profile.voicemail.language, audio_dir))
    connected = line_status.get("connected")
    name = f"line ({profile.line.driver})"
    if connected is False:
        checks.append(
            _fail(name, "not connected", "see `line` and the log; check the cable and power")
        )
    else:
        checks.append(_ok(name, "started" + (", connected" if connected else "")))
    checks.append(
        _ok("audio output", "open")
        if audio_ok()
        else _fail("audio output", "not open", "see the log for the device error")
    )
    return checks
