"""The keyboard handset (``gatewayd phone``) and the all-in-one ``gatewayd demo``.

The handset drives the sim line through ``sim.sock`` and shows the daemon's
``events --json`` stream as readable lines: what the box says (the prompt's
text from the catalogue), tones, menus, code and security events. On a
terminal, single keys act at once (cbreak mode, restored on every way out);
when stdin is not a terminal, it reads one command per line, so it can be
scripted (see :data:`LINE_HELP`).

Digits typed on the keyboard are never echoed: what shows is the daemon's
``key`` event, which is masked during code entry.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import io
import json
import logging
import os
import queue
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

from gatewayd.client import (
    CommandFailedError,
    ControlAnswer,
    DaemonUnreachableError,
    ReadyListener,
    SimClient,
    command_timeout,
    ctl_request,
)
from gatewayd.errors import GatewaydError
from gatewayd.paths import forget_demo, point_to_demo
from gatewayd.prompts import PromptCatalogue, default_audio_dir

LOGGER = logging.getLogger(__name__)

#: The first thing a newcomer reads.
BANNER = "Press SPACE to lift the handset, then dial 3103.   (? for help, q to quit)"

KEY_HELP = """\
Keyboard handset: what the keys do
  SPACE    lift / hang up the handset
  0-9 * #  phone keys (to the handset, or to the remote caller during a remote call)
  f        flash (register recall)
  r        a remote caller rings the box (answered after the profile's rings)
  x        the remote caller hangs up
  m        a remote caller leaves a message (rings, waits for the beep, speaks, hangs up)
  s        status of the box (line, menu, code state; never digits)
  ?        this help
  q        quit (Ctrl-C too); a handset still off-hook is hung up first
Create a secret code: SPACE, 3103, 3, 2, 1, four digits then #, 1.
Then try it remotely: SPACE (hang up), r, the code then #."""

LINE_HELP = """\
Commands, one per line (stdin is not a terminal):
  lift | hangup | flash       the handset
  press KEYS                  keys 0-9*# to the party of the current call
  call [NUMBER]               a remote caller rings the box (same as `remote call [NUMBER]`)
  handset ACTION [KEYS]       any sim command, e.g. `remote press 4931#`, `remote hangup`
  remote ACTION [KEYS]        (`remote say FILE.wav`: the remote caller speaks it)
  status | help
  wait TYPE[:VALUE] [SECONDS] wait for an event seen since the last wait, e.g.
                              `wait prompt:code_saved`, `wait call:end 10` (default 30 s)
  sleep SECONDS               pause the script
  quit                        (or end of input)
Blank lines and lines starting with # are skipped. The exit status is 1 if a
command failed or a wait timed out."""

#: Default and longest ``wait`` of a scripted session.
WAIT_DEFAULT_S = 30.0
WAIT_MAX_S = 3600.0
#: Events kept for ``wait`` (older ones are forgotten in a long session).
EVENTS_KEPT = 2000
#: How long quitting waits for the last commands (hang up) to be answered.
CLOSE_TIMEOUT_S = 3.0
#: Prompt texts are shown in this language unless ``status --json`` names another.
DEFAULT_LANGUAGE = "fr"
#: How long ``m`` waits for the box to answer and play the beep before giving up.
MESSAGE_BEEP_WAIT_S = 60.0
#: What the ``m`` caller says, in the shipped audio folder.
CALLER_MESSAGE = Path("demo") / "caller_message.wav"
#: Keys of the phone keypad (the A-D keys exist only as sim commands).
PHONE_KEYS = frozenset("0123456789*#")

MENU_NAMES = {
    "main_menu": "main menu",
    "personalise_menu": "personalise menu",
    "code_menu": "secret-code menu",
    "code_entry": "code entry",
    "code_confirm": "confirm the code",
    "code_check": "code check",
}

_ESCAPE_SEQUENCE = re.compile(rb"\x1b(\[[0-?]*[ -/]*[@-~]|O.|.)?", re.DOTALL)


def _duration(seconds: object) -> str:
    """``900`` -> ``15 min``; ``5400`` -> ``1 h 30 min``; anything odd is shown as given."""
    try:
        total = round(float(str(seconds)))
    except ValueError:
        return str(seconds)
    if total < 60:
        return f"{total} s"
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{hours} h"] if hours else []
    if minutes:
        parts.append(f"{minutes} min")
    if secs and not hours:
        parts.append(f"{secs} s")
    return " ".join(parts)


def format_event(event: Mapping[str, Any], catalogue: PromptCatalogue | None) -> str | None:
    """One readable line for an ``events --json`` event, or None for one not worth a line.

    Never fails: a type this version does not know, or odd fields, are shown as they are.
    """
    kind = event.get("type")
    party = event.get("party")
    state = event.get("state")
    if kind == "prompt":
        prompt_id = str(event.get("id"))
        if prompt_id == "digit_masked":
            return "  box says: •"
        parts = event.get("parts")
        if catalogue is None:
            text = f"[{prompt_id}]"
        elif isinstance(parts, list) and all(isinstance(p, list) for p in parts):
            text = catalogue.compose_text([[str(f) for f in p] for p in parts])
        else:
            text = catalogue.text(prompt_id)
        return f"  box says: « {text} »"
    if kind in ("prompt_end", "stop", "subscribed") or (
        kind == "tone" and event.get("name") is None
    ):
        # Audio ended or was cut by a key: every key would be followed by such a line.
        return None
    if kind == "tone":
        return f"  ♪ {event.get('name')} tone"
    if kind == "key":
        key = event.get("key")
        shown = "•" if key == "masked" else str(key)
        who = "" if party in (None, "handset") else f"{party} "
        return f"  {who}key {shown}"
    if kind == "hook":
        if party == "remote" and state == "on":
            return "  the remote caller hung up"
        hook = {"off": "off-hook", "on": "on-hook"}.get(str(state), str(state))
        return f"  {party or 'handset'} {hook}"
    if kind == "call":
        who = "remote call" if party == "remote" else f"{party or 'handset'} call"
        if state == "start":
            return f"  ☎ {who} starts"
        if state == "end":
            reason = event.get("reason")
            return f"  ☎ {who} ends" + (f" ({reason})" if reason else "")
    if kind == "ring":
        return "  ☎ ring…"
    if kind == "menu":
        return f"  → {MENU_NAMES.get(str(state), str(state))}"
    if kind == "code":
        origin = event.get("origin")
        by = f" (from the {origin})" if origin == "handset" else f" (by {origin})"
        return f"  ✔ secret code {event.get('action')}{by if origin else ''}"
    if kind == "protection":
        return f"  fixed-line code request {state}"
    if kind == "auth":
        if event.get("result") == "ok":
            return "  ✔ code accepted"
        if event.get("result") == "fail":
            return f"  ✘ wrong code ({event.get('failures')} in a row)"
    if kind == "cooldown":
        return f"  ⏳ cool-down: {_duration(event.get('seconds'))} before the next try"
    if kind == "lock":
        return "  ✘ access locked until an advisor reset (`gatewayd ctl reset --yes`)"
    if kind == "line" and state == "fault":
        return f"  ⚠ line fault: {event.get('reason')}"
    # Unknown to this version (or an unexpected shape): shown generically, never an error.
    fields = " ".join(f"{k}={v}" for k, v in event.items() if k not in ("type", "t"))
    return f"  event {'?' if kind is None else kind}: {fields}".rstrip(" :")


def after_the_beep(events: Sequence[Mapping[str, Any]]) -> bool | None:
    """Whether a caller may speak now, from the events since its call started.

    True once the box is ``recording`` and the beep (the prompts played on entering
    it) ended; False when the remote call ended first; None while it is too early.
    """
    recording = False
    for event in events:
        kind = event.get("type")
        if kind == "call" and event.get("party") == "remote" and event.get("state") == "end":
            return False
        if kind == "menu":
            recording = event.get("state") == "recording"
        elif kind == "prompt_end" and recording:
            return True
    return None


def keys_of(data: bytes) -> Iterator[str]:
    """The characters typed in a chunk read from the terminal, without escape sequences.

    An arrow or function key sends ``ESC [ 1 ; 5 D``: its digits must not reach the phone.
    """
    yield from _ESCAPE_SEQUENCE.sub(b"", data).decode("utf-8", errors="ignore")


class _Lane:
    """Sends one party's sim commands in order, on its own connection and thread.

    The UI never waits for the 160 ms of each key; the handset and the remote
    caller have separate lanes so a ringing remote call does not hold up the handset.
    """

    def __init__(
        self, name: str, runtime_dir: Path, done: Callable[[str, str | BaseException], None]
    ) -> None:
        self.name = name
        self._runtime_dir = runtime_dir
        self._done = done
        self._client: SimClient | None = None
        self._queue: queue.Queue[tuple[str, concurrent.futures.Future[str]] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name=f"phone-{name}", daemon=True)
        self._thread.start()

    def submit(self, command: str) -> concurrent.futures.Future[str]:
        """Queue a command; the future holds ``ok`` or the exception."""
        future: concurrent.futures.Future[str] = concurrent.futures.Future()
        self._queue.put((command, future))
        return future

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            command, future = item
            try:
                if self._client is None:  # (re)connect lazily: the daemon may have restarted
                    self._client = SimClient(self._runtime_dir)
                answer = self._client.send(command)
            except Exception as exc:  # reported, and the lane goes on with the next command
                if not isinstance(exc, CommandFailedError) and self._client is not None:
                    self._client.close()
                    self._client = None
                if not isinstance(exc, GatewaydError):
                    LOGGER.exception("sim command %r failed", command)
                self._done(command, exc)
                future.set_exception(exc)
            else:
                self._done(command, answer)
                future.set_result(answer)
        if self._client is not None:
            self._client.close()

    def close(self, timeout: float) -> None:
        """Stop after the commands already queued (waits at most ``timeout``)."""
        self._queue.put(None)
        self._thread.join(timeout)


class Phone:
    """A handset and a remote caller on the sim line, with the box's events shown as text."""

    def __init__(
        self,
        runtime_dir: Path,
        out: TextIO,
        *,
        catalogue: PromptCatalogue | None = None,
        wait_for_answers: bool = False,
    ) -> None:
        self.runtime_dir = runtime_dir
        self.catalogue = catalogue
        #: Set when the events stream ended without us closing it (the daemon stopped).
        self.daemon_gone = threading.Event()
        #: Commands that failed and waits that timed out (the exit status of a script).
        self.failures = 0
        self._out = out
        self._sync = wait_for_answers
        self._lock = threading.Lock()
        self._events_seen = threading.Condition(self._lock)
        self._events: list[dict[str, Any]] = []
        self._wait_mark = 0
        self._handset_off = False
        self._remote = "idle"  # idle | calling | connected
        self._closing = False
        self._closed = False
        self._wake_read, self._wake_write = os.pipe()
        self._stream: ControlAnswer | None = None
        self._reader: threading.Thread | None = None
        self._lanes = {
            party: _Lane(party, runtime_dir, self._answered) for party in ("handset", "remote")
        }

    def start(self) -> dict[str, Any]:
        """Subscribe to events, then learn the line's state (the ``status --json`` answer, or {}).

        Raises DaemonUnreachableError if the daemon cannot be reached.
        """
        # Fail now, with the reason, if there is no sim line (not the sim profile, no daemon).
        SimClient(self.runtime_dir).close()
        # Events before any command, so that nothing the first command causes is missed.
        self._stream = ctl_request(self.runtime_dir, "events --json")
        self._reader = threading.Thread(target=self._read_events, name="phone-events", daemon=True)
        self._reader.start()
        status = self._status_json()
        line = status.get("line")
        if isinstance(line, dict):
            self._handset_off = line.get("handset") == "off-hook"
            self._remote = {"ringing": "calling", "connected": "connected"}.get(
                str(line.get("remote")), "idle"
            )
        return status

    def say(self, text: str) -> None:
        """Print one line (thread-safe)."""
        with self._lock:
            self._write(text)

    def _write(self, text: str) -> None:
        with contextlib.suppress(OSError, ValueError):  # a closed terminal must not kill a thread
            self._out.write(text + "\n")
            self._out.flush()

    # --- actions ------------------------------------------------------------------

    def toggle_handset(self) -> None:
        """SPACE: lift the handset, or hang it up."""
        if self._handset_off:
            self.hang_up()
        else:
            self.lift()

    def lift(self) -> None:
        """The handset goes off-hook."""
        with self._lock:
            self._handset_off = True
        self._send("handset", "handset offhook")

    def hang_up(self) -> None:
        """The handset goes on-hook."""
        with self._lock:
            self._handset_off = False
        self._send("handset", "handset onhook")

    def flash(self) -> None:
        """A register-recall flash on the handset."""
        self._send("handset", "handset flash")

    def press(self, keys: str, party: str | None = None) -> None:
        """Keys to ``party``, by default the party of the current call."""
        to = party or self.key_party()
        self._send(to, f"{to} press {keys}")

    def key_party(self) -> str:
        """Who the keys go to: the remote caller during a remote call, else the handset."""
        with self._lock:
            return "remote" if self._remote != "idle" and not self._handset_off else "handset"

    def remote_call(self, number: str | None = None) -> None:
        """A remote caller (caller ID ``number``, if given) rings the box until it answers."""
        with self._lock:
            if self._remote == "idle":
                self._remote = "calling"
        self._send("remote", f"remote call {number}" if number else "remote call")

    def remote_say(self, path: str) -> None:
        """The remote caller speaks a WAV (8 kHz 16-bit mono); the daemon reads the file."""
        self._send("remote", f"remote say {Path(path).resolve()}")

    def leave_message(self) -> None:
        """A remote caller rings, waits for the beep, says the demo message, and hangs up."""
        with self._lock:
            if self._remote != "idle":
                self._write("  (a remote call is already up: x hangs it up)")
                return
            mark = len(self._events)
        recording = default_audio_dir() / CALLER_MESSAGE
        self.remote_call()
        threading.Thread(target=self._speak_after_beep, args=(mark, recording), daemon=True).start()

    def _speak_after_beep(self, mark: int, recording: Path) -> None:
        deadline = time.monotonic() + MESSAGE_BEEP_WAIT_S
        with self._events_seen:
            while (ready := after_the_beep(self._events[min(mark, len(self._events)) :])) is None:
                left = deadline - time.monotonic()
                if left <= 0 or self._closed or self.daemon_gone.is_set():
                    break
                self._events_seen.wait(min(left, 0.5))
        if ready is None and not self._closed and not self.daemon_gone.is_set():
            self.say(f"  ! no beep within {MESSAGE_BEEP_WAIT_S:g} s: the caller hangs up")
        if ready and not self._closed:
            self.say("» the caller speaks after the beep, then hangs up")
            self.remote_say(str(recording))
        if ready is not False and not self._closed:
            self.remote_hang_up()

    def remote_hang_up(self) -> None:
        """The remote caller hangs up (even while the box is still ringing)."""
        with self._lock:
            ringing, self._remote = self._remote == "calling", "idle"
        if ringing and not self._sync:
            # The remote lane is blocked on `remote call` until the box answers: hang up on a
            # connection of our own so that the ringing stops now.
            threading.Thread(target=self._hang_up_ringing, daemon=True).start()
            return
        self._send("remote", "remote hangup")

    def _hang_up_ringing(self) -> None:
        try:
            with SimClient(self.runtime_dir) as client:
                answer: str | BaseException = client.send("remote hangup")
        except GatewaydError as exc:
            answer = exc
        self._answered("remote hangup", answer)

    def show_status(self) -> None:
        """Print the daemon's ``status`` (never digits)."""
        try:
            with ctl_request(self.runtime_dir, "status") as answer:
                lines = list(answer)
        except DaemonUnreachableError as exc:
            self.say(f"  ! {exc}")
            return
        with self._lock:
            for line in lines:
                self._write(f"  | {line}")

    def _status_json(self) -> dict[str, Any]:
        try:
            with ctl_request(self.runtime_dir, "status --json") as answer:
                text = "".join(answer)
            status = json.loads(text)
        except (GatewaydError, ValueError):
            return {}
        return status if isinstance(status, dict) else {}

    def _send(self, party: str, command: str) -> None:
        future = self._lanes[party].submit(command)
        if self._sync:
            with contextlib.suppress(Exception):  # reported by _answered already
                future.result(timeout=command_timeout(command) + CLOSE_TIMEOUT_S)

    def _answered(self, command: str, answer: str | BaseException) -> None:
        """Called on a lane thread with each command's answer."""
        words = command.split()
        if not isinstance(answer, BaseException):
            if words[:2] == ["remote", "call"]:
                with self._lock:
                    if self._remote == "calling":
                        self._remote = "connected"
            return
        with self._lock:
            self.failures += 1
            if words[:2] == ["remote", "call"] and self._remote == "calling":
                self._remote = "idle"
            reason = answer.reason if isinstance(answer, CommandFailedError) else str(answer)
            self._write(f"  ! {command}: {reason}")
        if words[:1] == ["handset"] and words[1:2] != ["press"]:
            # Our idea of the hook state was wrong (e.g. another client lifted it): ask the box.
            line = self._status_json().get("line")
            if isinstance(line, dict) and "handset" in line:
                with self._lock:
                    self._handset_off = line["handset"] == "off-hook"

    # --- events ---------------------------------------------------------------------

    def _read_events(self) -> None:
        assert self._stream is not None
        try:
            for line in self._stream:
                self._on_event_line(line)
        except DaemonUnreachableError as exc:
            if not self._closing:
                self.say(f"  ! {exc}")
        if not self._closing:
            self.say("  ! the daemon closed the events stream: it stopped")
            self.daemon_gone.set()
            with contextlib.suppress(OSError):
                os.write(self._wake_write, b"x")

    def _on_event_line(self, line: str) -> None:
        try:
            event = json.loads(line)
        except ValueError:
            self.say(f"  ! daemon: {line}" if line.startswith("error") else f"  daemon: {line}")
            return
        if not isinstance(event, dict):
            self.say(f"  event: {line}")
            return
        with self._lock:
            if event.get("party") == "remote" and (
                event.get("type") == "call" and event.get("state") == "end"
            ):
                self._remote = "idle"
            self._events.append(event)
            if len(self._events) > EVENTS_KEPT:  # a long session: forget the oldest half
                drop = EVENTS_KEPT // 2
                del self._events[:drop]
                self._wait_mark = max(0, self._wait_mark - drop)
            self._events_seen.notify_all()
            try:
                text = format_event(event, self.catalogue)
            except Exception:  # a display bug must not end the events stream
                LOGGER.exception("cannot show event %r", event)
                text = f"  event: {line}"
            if text is not None:
                self._write(text)
            if (
                event.get("type") == "call"
                and event.get("party") == "handset"
                and event.get("state") == "end"
                and self._handset_off
            ):
                self._write("  (the box ended the call: hang up the handset)")

    def wait_event(self, kind: str, value: str | None, timeout: float) -> bool:
        """True once an event of ``kind`` (with a field equal to ``value``) was seen since the
        previous wait; False after ``timeout`` s or if the daemon went away."""
        deadline = time.monotonic() + timeout
        with self._events_seen:
            while True:
                for index in range(self._wait_mark, len(self._events)):
                    event = self._events[index]
                    if event.get("type") == kind and (
                        value is None
                        or any(str(v) == value for k, v in event.items() if k != "type")
                    ):
                        self._wait_mark = index + 1
                        return True
                left = deadline - time.monotonic()
                if left <= 0 or self.daemon_gone.is_set():
                    return False
                self._events_seen.wait(min(left, 0.5))

    # --- life cycle -------------------------------------------------------------------

    def close(self) -> None:
        """Hang up what is still up, stop the threads, close the sockets; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        if not self.daemon_gone.is_set():
            with self._lock:
                handset_off, remote = self._handset_off, self._remote
            if handset_off or remote != "idle":
                self.say("  (hanging up before leaving)")
            self._sync = True  # wait for these last answers
            if handset_off:
                self.hang_up()
            if remote != "idle":
                self.remote_hang_up()
        for lane in self._lanes.values():
            lane.close(CLOSE_TIMEOUT_S)
        self._closing = True
        if self._stream is not None:
            self._stream.close()
        if self._reader is not None:
            self._reader.join(CLOSE_TIMEOUT_S)
        os.close(self._wake_read)
        os.close(self._wake_write)

    # --- the two front ends ---------------------------------------------------------------

    def handle_key(self, key: str) -> bool:
        """Act on one key typed on the terminal; False when it means quit."""
        if key in PHONE_KEYS:
            # No echo here: the daemon's key event shows it, masked during code entry.
            self.press(key)
        elif key == " ":
            self.say("» hang up" if self._handset_off else "» lift the handset")
            self.toggle_handset()
        elif key in "fF":
            self.say("» flash")
            self.flash()
        elif key in "rR":
            self.say("» a remote caller dials the box")
            self.remote_call()
        elif key in "xX":
            self.say("» the remote caller hangs up")
            self.remote_hang_up()
        elif key in "mM":
            self.say("» a remote caller dials the box to leave a message")
            self.leave_message()
        elif key in "sS":
            self.show_status()
        elif key in "?hH":
            self.say(KEY_HELP)
        elif key in "qQ\x04":  # q, or Ctrl-D
            return False
        elif key in "\r\n":
            self.say("")
        elif key.isprintable():
            self.say(f"  ({key!r} is not a phone key; ? for help)")
        return True

    def run_keys(self, fd: int) -> None:
        """The terminal UI: single keys from ``fd`` (cbreak mode) until q, Ctrl-C or EOF."""
        import termios
        import tty

        saved = termios.tcgetattr(fd)
        previous_cont = None
        if threading.current_thread() is threading.main_thread():
            # After Ctrl-Z and `fg` the shell has put the terminal back in line mode.
            previous_cont = signal.signal(
                signal.SIGCONT, lambda signum, frame: tty.setcbreak(fd, termios.TCSANOW)
            )
        try:
            tty.setcbreak(fd)  # keeps ISIG, so Ctrl-C still interrupts
            self.say(BANNER)
            while True:
                readable, _, _ = select.select([fd, self._wake_read], [], [])
                if self._wake_read in readable:
                    return
                data = os.read(fd, 64)
                if not data:
                    return
                for key in keys_of(data):
                    if not self.handle_key(key):
                        return
        except KeyboardInterrupt:
            return
        finally:
            termios.tcsetattr(fd, termios.TCSADRAIN, saved)
            if previous_cont is not None:
                signal.signal(signal.SIGCONT, previous_cont)

    def run_lines(self, lines: TextIO) -> None:
        """The scripted UI: one command per line (:data:`LINE_HELP`) until quit or EOF."""
        self.say("gatewayd phone: reading commands from stdin (`help` lists them)")
        for raw in lines:
            if self.daemon_gone.is_set():
                return
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            if not self.run_line(line):
                return

    def run_line(self, line: str) -> bool:
        """One scripted command; False when it means quit."""
        words = line.split()
        name, args = words[0].lower(), words[1:]
        simple: dict[str, Callable[[], None]] = {
            "lift": self.lift,
            "hangup": self.hang_up,
            "flash": self.flash,
            "call": self.remote_call,
            "status": self.show_status,
        }
        if name in ("quit", "exit"):
            return False
        if name in simple and not args:
            simple[name]()
        elif name == "call" and len(args) == 1:
            self.remote_call(args[0])
        elif name == "help":
            self.say(LINE_HELP)
        elif name == "press" and len(args) == 1:
            self.press(args[0])
        elif name in ("handset", "remote") and args:
            self._sim_line(name, args)
        elif name == "wait" and 1 <= len(args) <= 2:
            self._wait_line(args)
        elif name == "sleep" and len(args) == 1:
            seconds = _seconds(args[0])
            if seconds is None:
                self._script_error(f"sleep takes seconds, got {args[0]!r}")
            else:
                time.sleep(seconds)
        else:
            self._script_error(f"cannot run {line!r}; `help` lists the commands")
        return True

    def _sim_line(self, party: str, args: list[str]) -> None:
        """``handset ...`` / ``remote ...``: as the keys would, so the phone tracks the line."""
        action = {
            ("handset", "offhook"): self.lift,
            ("handset", "onhook"): self.hang_up,
            ("handset", "flash"): self.flash,
            ("remote", "call"): self.remote_call,
            ("remote", "hangup"): self.remote_hang_up,
        }.get((party, args[0]))
        if action is not None and len(args) == 1:
            action()
        elif (party, args[0]) == ("remote", "call") and len(args) == 2:
            self.remote_call(args[1])
        elif (party, args[0]) == ("remote", "say") and len(args) >= 2:
            self.remote_say(" ".join(args[1:]))
        elif args[0] == "press" and len(args) == 2:
            self.press(args[1], party)
        else:  # the daemon says what is wrong with it
            self._send(party, " ".join([party, *args]))

    def _wait_line(self, args: list[str]) -> None:
        kind, _, value = args[0].partition(":")
        seconds = _seconds(args[1]) if len(args) == 2 else WAIT_DEFAULT_S
        if seconds is None:
            self._script_error(f"wait takes seconds, got {args[1]!r}")
            return
        if not self.wait_event(kind, value or None, seconds):
            self._script_error(f"no {args[0]} event within {seconds:g} s")

    def _script_error(self, message: str) -> None:
        with self._lock:
            self.failures += 1
            self._write(f"  ! {message}")


def _seconds(text: str) -> float | None:
    try:
        seconds = float(text)
    except ValueError:
        return None
    return seconds if 0 <= seconds <= WAIT_MAX_S else None


def _load_catalogue(language: str, out: TextIO) -> PromptCatalogue | None:
    try:
        return PromptCatalogue.load(default_audio_dir(), language)
    except GatewaydError as exc:
        out.write(f"gatewayd phone: prompts shown by id only: {exc}\n")
        return None


@contextlib.contextmanager
def _terminate_cleanly() -> Iterator[None]:
    """SIGTERM and SIGHUP unwind like an exception, so the terminal and the daemon are restored."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def leave(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    previous = {sig: signal.signal(sig, leave) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _tolerant(out: TextIO) -> None:
    """A terminal whose encoding lacks « ♪ ☎ shows '?' for them rather than losing the line."""
    if isinstance(out, io.TextIOWrapper):
        out.reconfigure(errors="replace")


def run_phone(runtime_dir: Path, stdin: TextIO, out: TextIO) -> int:
    """``gatewayd phone``: 0 when the user quits, 1 if the daemon went away or a script failed,
    2 if the daemon cannot be reached."""
    _tolerant(out)
    catalogue = _load_catalogue(DEFAULT_LANGUAGE, out)
    phone = Phone(runtime_dir, out, catalogue=catalogue, wait_for_answers=not stdin.isatty())
    with _terminate_cleanly():
        try:
            status = phone.start()
        except DaemonUnreachableError as exc:
            phone.close()
            out.write(f"gatewayd phone: {exc}\n")
            return 2
        language = status.get("language")
        if isinstance(language, str) and language != DEFAULT_LANGUAGE:
            phone.catalogue = _load_catalogue(language, out)
        try:
            if stdin.isatty():
                phone.run_keys(stdin.fileno())
            else:
                phone.run_lines(stdin)
        except KeyboardInterrupt:
            pass
        finally:
            phone.close()
    if phone.daemon_gone.is_set():
        return 1
    return 1 if phone.failures and not stdin.isatty() else 0


# --- gatewayd demo ----------------------------------------------------------------------

#: How long the demo waits for the daemon's READY=1.
DEMO_READY_TIMEOUT_S = 15.0
#: After SIGTERM, how long the daemon has to stop before it is killed.
DEMO_STOP_TIMEOUT_S = 10.0
#: Lines of the daemon log shown when it fails.
LOG_TAIL_LINES = 25


def default_demo_state_dir() -> Path:
    """Where the demo keeps its box (code, counter, pepper) between runs."""
    return Path.home() / ".local" / "state" / "gatewayd-demo"


def _log_tail(path: Path) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError as exc:
        return f"(cannot read {path}: {exc.strerror or exc})"
    return "\n".join(lines[-LOG_TAIL_LINES:]) or "(empty)"


def _stop_daemon(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM (the daemon's one shutdown path), then SIGKILL if it does not stop in time."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(DEMO_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def run_demo(state_dir: str | None, stdin: TextIO, out: TextIO, fresh: bool = False) -> int:
    """``gatewayd demo``: a sim-profile daemon in a fresh runtime dir, and the handset on it.

    ``fresh`` empties the default demo state first (no code, no cool-down, no messages).
    0 when the user quits; 1 if the daemon did not start or stopped under us; 2 if
    ``fresh`` is refused.
    """
    state = Path(state_dir).expanduser() if state_dir else default_demo_state_dir()
    if fresh:
        if state_dir and state.exists() and any(state.iterdir()):
            out.write(
                f"gatewayd demo: --fresh empties only the default demo state "
                f"({default_demo_state_dir()}); remove {state} yourself, or leave out "
                "--state-dir\n"
            )
            return 2
        shutil.rmtree(state, ignore_errors=True)
    runtime = Path(tempfile.mkdtemp(prefix="gatewayd-demo-"))
    log_path = runtime / "gatewayd.log"
    out.write(f"gatewayd demo: daemon log in {log_path}\n")
    kept = "emptied (--fresh)" if fresh else "kept between demos; --fresh starts empty"
    out.write(f"gatewayd demo: the box's state (your secret code) in {state}, {kept}\n")
    out.write(
        f"gatewayd demo: sockets in {runtime}; `gatewayd ctl status`, `gatewayd phone` and "
        "`gatewayd sim` in another terminal find this demo by themselves\n"
    )
    out.flush()
    try:
        with ReadyListener(runtime / "notify.sock") as ready, log_path.open("ab") as log:
            env = {**os.environ, "NOTIFY_SOCKET": ready.address}
            for inherited in ("JOURNAL_STREAM", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS"):
                env.pop(inherited, None)  # ours if we run under systemd; not the child's
            command = [
                sys.executable,
                "-m",
                "gatewayd",
                "run",
                "--profile",
                "sim",
                "--runtime-dir",
                str(runtime),
                "--state-dir",
                str(state),
            ]
            LOGGER.debug("starting %s", command)
            daemon = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                # Its own session: Ctrl-C in this terminal reaches the demo, which then
                # stops the daemon with SIGTERM, once.
                start_new_session=True,
            )
            try:
                if not ready.wait(DEMO_READY_TIMEOUT_S, lambda: daemon.poll() is None):
                    why = (
                        f"exited with status {daemon.returncode}"
                        if daemon.poll() is not None
                        else f"was not ready within {DEMO_READY_TIMEOUT_S:g} s"
                    )
                    out.write(f"gatewayd demo: the daemon {why}; its log:\n")
                    out.write(_log_tail(log_path) + "\n")
                    return 1
                with contextlib.suppress(OSError):  # the demo works without it
                    point_to_demo(runtime)
                code = run_phone(runtime, stdin, out)
            finally:
                _stop_daemon(daemon)
            if daemon.returncode != 0:
                out.write(f"gatewayd demo: the daemon ended with status {daemon.returncode}:\n")
                out.write(_log_tail(log_path) + "\n")
                return 1
            return code
    finally:
        out.flush()
        forget_demo(runtime)
        shutil.rmtree(runtime, ignore_errors=True)
