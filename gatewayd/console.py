"""The console's command language, served on the serial console and on the control socket.

One :class:`Console` is one session. On the serial console a session starts
unprivileged: ``status``, ``events``, ``line``, ``profile``, ``version``,
``audit`` and ``loglevel`` need no login; ``reset``, ``ring``, ``play``,
``tone``, ``selftest`` and ``loglevel LEVEL`` need ``login`` with the
technician code (:class:`TechnicianAuth`: hashed like the subscriber's code,
3 wrong codes -> 60 s delay, doubling), and a session without input for
:data:`IDLE_LOGOUT_S` is logged out. The control socket is ``trusted``: its
file mode is its access control, so it never logs in.

No command, in any state, reads or sets the subscriber's code: ``status``
shows facts about it (set or not, failures, cool-down, lock, protection),
never digits, and :class:`ServiceView` has no way to set one.
"""

from __future__ import annotations

import enum
import itertools
import json
import logging
import math
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from gatewayd import __version__
from gatewayd.errors import GatewaydError
from gatewayd.voicemail.hashing import CodeHasher
from gatewayd.voicemail.store import Store

if TYPE_CHECKING:
    from gatewayd.selftest import Check

LOGGER = logging.getLogger(__name__)

#: A logged-in session with no input for this long is logged out.
IDLE_LOGOUT_S = 300.0
#: Every this many consecutive wrong technician codes start a login delay ...
LOGIN_TRIES_PER_DELAY = 3
#: ... of this long the first time, doubled each time ...
LOGIN_DELAY_FIRST_S = 60.0
#: ... up to this.
LOGIN_DELAY_CAP_S = 3600.0
#: Technician codes are this many digits (the subscriber's are exactly 4).
TECH_CODE_LENGTHS = range(4, 9)
#: ``ring`` without SECONDS rings one French cadence (1.5 s on, 3.5 s off); at most this.
RING_DEFAULT_S = 5.0
RING_MAX_S = 60.0
#: ``tone NAME`` without SECONDS plays this long; at most this.
TONE_DEFAULT_S = 3.0
TONE_MAX_S = 10.0
#: Levels ``loglevel`` accepts (``trace`` shows raw serial bytes, keys masked).
LOG_LEVEL_NAMES = ("trace", "debug", "info", "warning", "error")

PROMPT = "gatewayd> "
PROMPT_LOGGED_IN = "gatewayd# "
LOGIN_PROMPT = "technician code (not echoed): "
CONFIRM_PROMPT = "type yes to reset the subscriber's code, anything else cancels: "

HELP_PUBLIC = """\
gatewayd console commands:
  help              this help
  status [--json]   line state, current menu, and the code's state (never its digits)
  line              hook, ringing, call and the last keys (code digits shown as *)
  profile           the hardware profile in use
  events [--json]   live events, one per line (code digits masked), until a key is pressed
                    or the client leaves
  audit [N]         the last N audit records (default 20): what, origin, time
  messages [--json] the mailbox: id, received (UTC), length, folder (never the audio or the
                    caller's number; messages are heard only on the phone, with the code)
  version           gatewayd version
  loglevel [LEVEL]  the current log level; setting one (after login): trace, debug,
                    info, warning or error"""

HELP_PRIVILEGED = """\
  reset             advisor/technician reset: clears the code, the failure counter, the lock
                    and the fixed-line protection; asks for confirmation (`reset --yes` does
                    not); the subscriber then creates a new code from the fixed line
  ring [SECONDS]    ring the handset (default 5 s, at most 60)
  play PROMPT_ID    play a prompt, e.g. `play main_menu`
  tone NAME [SECONDS]
                    play a tone of the tone plan (dial, busy, congestion, ringback),
                    default 3 s
  selftest          check the state file, pepper, prompts, line and audio of the running box"""

HELP_LOGIN = """\
  login             technician login (asks for the technician code)
after login:"""

HELP_LOGOUT = "  logout            end the technician session (also after 5 min without input)"


class CommandError(GatewaydError, ValueError):
    """A console command that cannot be carried out now; the message says why and what to do."""


class ServiceView(Protocol):
    """What the console needs from the daemon; nothing here reads or sets the code."""

    def status(self) -> dict[str, Any]:
        """Line, menu and code state, JSON-ready, without digits."""
        ...

    def reset_code(self, origin: str) -> None:
        """The advisor/technician reset."""
        ...

    def audit(self, last: int) -> list[dict[str, Any]]:
        """The last audit records."""
        ...

    def messages(self) -> list[dict[str, Any]]:
        """The mailbox's messages (id, received, seconds, folder); never audio or caller."""
        ...

    def profile_summary(self) -> dict[str, Any]:
        """The profile in use: name, file, board, line, audio, console, storage."""
        ...

    def ring(self, seconds: float) -> None:
        """Ring the handset for ``seconds``; :class:`CommandError` if the line cannot."""
        ...

    def play_prompt(self, prompt_id: str) -> None:
        """Play one prompt; :class:`CommandError` for an unknown id or a call in progress."""
        ...

    def play_tone(self, name: str, seconds: float) -> None:
        """Play a tone of the tone plan for ``seconds``; :class:`CommandError` if impossible."""
        ...

    def self_check(self) -> list[Check]:
        """Checks of the running box (state file, pepper, prompts, line, audio)."""
        ...

    def log_level(self) -> str:
        """The current log level name."""
        ...

    def set_log_level(self, level: str) -> None:
        """Set the log level (one of :data:`LOG_LEVEL_NAMES`)."""
        ...


@runtime_checkable
class HandsetRinger(Protocol):
    """A line driver that can ring the box's own handset (a SLIC line), for ``ring``."""

    def ring(self, seconds: float) -> None:
        """Ring the handset for ``seconds`` at the profile's cadence, then stop."""
        ...


@dataclass(frozen=True)
class Reply:
    """Lines to send back; ``ok`` False when the command failed (lines start with ``error``)."""

    lines: tuple[str, ...]
    ok: bool = True


@dataclass(frozen=True)
class Stream:
    """Stream events until the client leaves, as JSON lines or human-readable lines."""

    as_json: bool


def _error(message: str) -> Reply:
    return Reply((f"error {message}",), ok=False)


def format_event(event: dict[str, Any]) -> str:
    """One human-readable line for an event (digits are already masked in events)."""
    kind = event.get("type", "?")
    rest = " ".join(f"{k}={v}" for k, v in event.items() if k not in ("type", "t", "time"))
    # The wall-clock time of day (a person reads this), else the monotonic seconds.
    wall = str(event.get("time", ""))
    when = wall[11:23] if len(wall) >= 23 else f"{event.get('t', 0):12.3f}"
    return f"{when} {kind:8} {rest}".rstrip()


def _format_audit(records: list[dict[str, Any]]) -> tuple[str, ...]:
    """One line per record, in columns as wide as the longest entry of the listing."""
    what_width = max([14, *(len(str(r.get("what", "?"))) for r in records)])
    origin_width = max([8, *(len(str(r.get("origin", "?"))) for r in records)])
    lines = []
    for record in records:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(record.get("time", 0))))
        details = " ".join(
            f"{k}={v}" for k, v in record.items() if k not in ("what", "origin", "time")
        )
        what, origin = str(record.get("what", "?")), str(record.get("origin", "?"))
        lines.append(f"{stamp} {what:{what_width}} by {origin:{origin_width}} {details}".rstrip())
    return tuple(lines)


def _show(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}={_show(v)}" for k, v in value.items())
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _seconds(text: str) -> float | None:
    """A positive finite number of seconds, or None."""
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) and value > 0 else None


# --- the technician's login ----------------------------------------------------------


def technician_code_problem(code: str) -> str | None:
    """Why ``code`` cannot be a technician code (4-8 digits, not guessable), or None."""
    if not (code.isascii() and code.isdigit()) or len(code) not in TECH_CODE_LENGTHS:
        return (
            f"a technician code is {TECH_CODE_LENGTHS.start} to {TECH_CODE_LENGTHS.stop - 1} "
            "digits 0-9"
        )
    if len(set(code)) == 1:
        return "all its digits are the same"
    steps = {(int(b) - int(a)) % 10 for a, b in itertools.pairwise(code)}
    if steps in ({1}, {9}):
        return "its digits run up or down"
    return None


class LoginOutcome(enum.Enum):
    """What a login attempt came to."""

    OK = "ok"
    WRONG = "wrong"
    DELAYED = "delayed"  # refused without looking at the code: a login delay runs
    NOT_SET = "not_set"  # no technician code on this box


@dataclass(frozen=True)
class LoginResult:
    """The outcome, the consecutive failures, and the delay now running (seconds, 0 if none)."""

    outcome: LoginOutcome
    failures: int = 0
    delay_s: float = 0.0


@dataclass
class PendingLogin:
    """A technician try counted on disk whose comparison is not made yet (never shows the code)."""

    origin: str
    #: Consecutive failures on disk, this try included.
    failures: int
    #: The login delay this try starts if the code is wrong (armed already).
    delay_s: float
    salt: bytes = field(repr=False)
    code_hash: bytes = field(repr=False)
    #: The code typed, or "" when its shape cannot be a technician code.
    code: str = field(repr=False)


@dataclass(frozen=True)
class Deferred:
    """An answer that needs a code comparison first (scrypt, too slow for the event loop).

    The session runs ``compare`` in a worker, then ``finish`` on its own thread with
    the verdict (None when the comparison raised) and sends the :class:`Reply`.
    """

    compare: Callable[[], bool]
    finish: Callable[[bool | None], Reply]


class TechnicianAuth:
    """The technician code of the box: ``scrypt(HMAC(pepper, code), salt)`` in the state file.

    Like the subscriber's code, a try is counted durably before the comparison.
    The 3rd, 6th, 9th... consecutive wrong code starts a login delay (60 s,
    doubled each time, capped), on ``clock`` (monotonic seconds); after a
    restart a pending delay starts again in full.
    """

    def __init__(self, store: Store, hasher: CodeHasher, clock: Callable[[], float]) -> None:
        self._store = store
        self._hasher = hasher
        self._clock = clock
        self._delay_until = 0.0
        failures = store.technician().failures
        delay = self.delay_for(failures)
        if delay:
            self._delay_until = clock() + delay
            LOGGER.info("technician login delay of %d s re-armed after start", delay)

    @staticmethod
    def delay_for(failures: int) -> float:
        """The delay the ``failures``-th consecutive wrong code starts (0 if none)."""
        if failures <= 0 or failures % LOGIN_TRIES_PER_DELAY:
            return 0.0
        doublings = failures // LOGIN_TRIES_PER_DELAY - 1
        if LOGIN_DELAY_FIRST_S * 2.0 ** min(doublings, 64) >= LOGIN_DELAY_CAP_S:
            return LOGIN_DELAY_CAP_S
        return float(LOGIN_DELAY_FIRST_S * 2**doublings)

    @property
    def code_set(self) -> bool:
        """Whether a technician code was provisioned."""
        return self._store.technician().code_set

    def delay_remaining(self) -> float:
        """Seconds until a login may be tried again (0 when it may now)."""
        return max(0.0, self._delay_until - self._clock())

    def login(self, code: str, origin: str) -> LoginResult:
        """Check a technician code: count the try on disk first, then compare (one thread)."""
        pending = self.begin_login(code, origin)
        if isinstance(pending, LoginResult):
            return pending
        return self.settle(pending, self.verify(pending))

    def begin_login(self, code: str, origin: str) -> LoginResult | PendingLogin:
        """Step 1 (event loop): refuse (not set, delay running), else count the try durably.

        The delay this try would start is armed from the durable count at once: a
        right code clears it in :meth:`settle`, anything failing after leaves it.
        """
        technician = self._store.technician()
        if technician.code_hash is None or technician.salt is None:
            return LoginResult(LoginOutcome.NOT_SET)
        remaining = self.delay_remaining()
        if remaining > 0:
            return LoginResult(LoginOutcome.DELAYED, technician.failures, remaining)
        failures = technician.failures + 1
        self._store.update_technician(failures=failures)  # durable before the comparison
        delay = self.delay_for(failures)
        if delay:
            self._delay_until = self._clock() + delay
        # A code of the wrong shape cannot be right; it still counts (it was a guess).
        shaped = code.isascii() and code.isdigit() and len(code) in TECH_CODE_LENGTHS
        return PendingLogin(
            origin, failures, delay, technician.salt, technician.code_hash, code if shaped else ""
        )

    def verify(self, pending: PendingLogin) -> bool:
        """Step 2 (any thread): the comparison (scrypt); no storage, no shared state."""
        if not pending.code:
            return False
        return self._hasher.verify(pending.code, pending.salt, pending.code_hash)

    def settle(self, pending: PendingLogin, ok: bool) -> LoginResult:
        """Step 3 (event loop): clear the counter and log in, or audit the failure."""
        origin, failures, delay = pending.origin, pending.failures, pending.delay_s
        if ok and self._store.technician().code_hash != pending.code_hash:
            ok = False  # the code was provisioned again during the comparison: not this one
        if ok:
            with self._store.transaction():
                self._store.update_technician(failures=0)
                self._store.audit("tech_login", origin)
            self._delay_until = 0.0
            LOGGER.info("technician logged in on the %s", origin)
            return LoginResult(LoginOutcome.OK)
        with self._store.transaction():
            self._store.audit("tech_login_failure", origin, failures=failures)
            if delay:
                self._store.audit("tech_lockout", origin, seconds=delay)
        LOGGER.warning(
            "wrong technician code on the %s (%d consecutive)%s",
            origin,
            failures,
            f"; logins refused for {delay:.0f} s" if delay else "",
        )
        return LoginResult(LoginOutcome.WRONG, failures, delay)

    def set_code(self, code: str, origin: str) -> None:
        """Store a new technician code (``gatewayd provision``); clears failures and delay."""
        problem = technician_code_problem(code)
        if problem is not None:
            raise CommandError(f"technician code refused: {problem}")
        salt = self._hasher.new_salt()
        code_hash = self._hasher.hash(code, salt)
        with self._store.transaction():
            self._store.update_technician(code_hash=code_hash, salt=salt, failures=0)
            self._store.audit("tech_code_set", origin)
        self._delay_until = 0.0
        LOGGER.info("technician code set (%s)", origin)


# --- the interpreter -------------------------------------------------------------------


class _Pending(enum.Enum):
    """What the next input line is, when it is not a command."""

    NONE = "none"
    LOGIN_CODE = "login_code"
    RESET_CONFIRM = "reset_confirm"


Command = Callable[[list[str]], Reply | Stream]
#: What a line comes to: lines to send, an events stream, or a reply after a comparison.
Answer = Reply | Stream | Deferred


class Console:
    """One console session: parses and runs command lines against the daemon.

    ``trusted`` sessions (the control socket) may run every command without a
    login. Other sessions log in with the technician code through ``auth``.
    ``interactive`` sessions (the serial console) ask questions (the code, a
    confirmation) on the next line; others must say ``reset --yes``.
    ``clock`` (monotonic seconds) times the idle logout. A login code comes back as a
    :class:`Deferred`: the session compares it in a worker, so the event loop never
    waits for scrypt.
    """

    def __init__(
        self,
        service: ServiceView,
        origin: str,
        *,
        trusted: bool = False,
        interactive: bool = False,
        auth: TechnicianAuth | None = None,
        clock: Callable[[], float] = time.monotonic,
        idle_logout_s: float = IDLE_LOGOUT_S,
    ) -> None:
        self._service = service
        self._origin = origin
        self._trusted = trusted
        self._interactive = interactive
        self._auth = auth
        self._clock = clock
        self._idle_logout_s = idle_logout_s
        self._logged_in = False
        self._last_input = clock()
        self._pending = _Pending.NONE
        public: dict[str, Command] = {
            "help": self._help,
            "status": self._status,
            "line": self._line,
            "profile": self._profile,
            "events": self._events,
            "audit": self._audit,
            "messages": self._messages,
            "version": self._version,
            "loglevel": self._loglevel,
            "login": self._login,
            "logout": self._logout,
        }
        privileged: dict[str, Command] = {
            "reset": self._reset,
            "ring": self._ring,
            "play": self._play,
            "tone": self._tone,
            "selftest": self._selftest,
        }
        self._public = public
        self._privileged = privileged

    # --- session state ------------------------------------------------------------

    @property
    def logged_in(self) -> bool:
        """Whether privileged commands run (always on a trusted session)."""
        return self._trusted or self._logged_in

    @property
    def prompt(self) -> str:
        """What to show before the next input line."""
        if self._pending is _Pending.LOGIN_CODE:
            return LOGIN_PROMPT
        if self._pending is _Pending.RESET_CONFIRM:
            return CONFIRM_PROMPT
        return PROMPT_LOGGED_IN if self._logged_in else PROMPT

    @property
    def secret_input(self) -> bool:
        """True when the next line is a code: the terminal must not echo it."""
        return self._pending is _Pending.LOGIN_CODE

    def idle_remaining(self) -> float | None:
        """Seconds until the idle logout, or None when nobody is logged in."""
        if not self._logged_in:
            return None
        return max(0.0, self._last_input + self._idle_logout_s - self._clock())

    def expire_idle(self) -> str | None:
        """Log out an idle session; the notice to show, or None if nothing happened."""
        remaining = self.idle_remaining()
        if remaining is None or remaining > 0:
            return None
        self._logged_in = False
        self._pending = _Pending.NONE
        minutes = self._idle_logout_s / 60
        LOGGER.info("technician logged out on the %s (idle %g min)", self._origin, minutes)
        return f"logged out: no input for {minutes:g} min"

    def end_session(self) -> None:
        """Forget the login and any question (the port was lost, the client left)."""
        if self._logged_in:
            LOGGER.info("technician session on the %s ended", self._origin)
        self._logged_in = False
        self._pending = _Pending.NONE

    def cancel(self) -> None:
        """Drop a pending question (Ctrl-C at a prompt)."""
        self._pending = _Pending.NONE

    # --- running a line ---------------------------------------------------------------

    def run(self, line: str) -> Answer:
        """Run one input line: a command, or the answer to the pending question."""
        notice = self.expire_idle()
        if self._clock() - self._last_input >= self._idle_logout_s:
            # A question left unanswered that long is void (the next person at the
            # terminal must not have a command taken for a code): the line is a command.
            self._pending = _Pending.NONE
        self._last_input = self._clock()
        answer = self._answer_or_command(line)
        if notice is not None and isinstance(answer, Reply):
            return Reply((notice, *answer.lines), ok=answer.ok)
        return answer

    def _answer_or_command(self, line: str) -> Answer:
        pending, self._pending = self._pending, _Pending.NONE
        if pending is _Pending.LOGIN_CODE:
            return self._check_code(line)
        if pending is _Pending.RESET_CONFIRM:
            if line.strip().lower() == "yes":
                return self._do_reset()
            return Reply(("reset cancelled: nothing changed",))
        return self._command(line)

    def _command(self, line: str) -> Reply | Stream:
        try:
            words = shlex.split(line)
        except ValueError as exc:
            return _error(f"cannot parse the command: {exc}")
        if not words:
            return Reply(())
        name, args = words[0], words[1:]
        command = self._public.get(name)
        if command is None:
            command = self._privileged.get(name)
            if command is not None and not self.logged_in:
                return _error(f"`{name}` needs a technician login: type `login` first")
        if command is None:
            shown = name if name.isprintable() else repr(name)
            return _error(f"unknown command {shown[:40]!r}; type `help` for the list")
        try:
            return command(args)
        except CommandError as exc:
            return _error(str(exc))

    # --- commands -----------------------------------------------------------------------

    def _help(self, args: list[str]) -> Reply:
        parts = [HELP_PUBLIC]
        if not self._trusted:
            parts.append(HELP_LOGIN)
        parts.append(HELP_PRIVILEGED)
        if not self._trusted:
            parts.append(HELP_LOGOUT)
        return Reply(tuple("\n".join(parts).splitlines()))

    def _version(self, args: list[str]) -> Reply:
        return Reply((f"gatewayd {__version__}",))

    def _status(self, args: list[str]) -> Reply:
        if args not in ([], ["--json"]):
            return _error("usage: status [--json]")
        status = self._service.status()
        if args:
            return Reply((json.dumps(status, sort_keys=True),))
        return Reply(tuple(f"{key}: {_show(value)}" for key, value in status.items()))

    def _line(self, args: list[str]) -> Reply:
        if args:
            return _error("usage: line")
        line = self._service.status().get("line", {})
        if not isinstance(line, dict):
            return Reply((f"line: {_show(line)}",))
        return Reply(tuple(f"{key}: {_show(value) or '-'}" for key, value in line.items()))

    def _profile(self, args: list[str]) -> Reply:
        if args:
            return _error("usage: profile")
        summary = self._service.profile_summary()
        return Reply(tuple(f"{key}: {_show(value)}" for key, value in summary.items()))

    def _events(self, args: list[str]) -> Reply | Stream:
        if args not in ([], ["--json"]):
            return _error("usage: events [--json]")
        return Stream(as_json=bool(args))

    def _audit(self, args: list[str]) -> Reply:
        if len(args) > 1 or (args and not (args[0].isascii() and args[0].isdigit())):
            return _error("usage: audit [N]")
        last = int(args[0]) if args else 20
        records = self._service.audit(max(1, min(last, 1000)))
        if not records:
            return Reply(("no audit records",))
        return Reply(_format_audit(records))

    def _messages(self, args: list[str]) -> Reply:
        if args not in ([], ["--json"]):
            return _error("usage: messages [--json]")
        listing = self._service.messages()
        if args:
            return Reply((json.dumps(listing),))
        if not listing:
            return Reply(("no messages",))
        lines = [f"{'id':<22} {'received (UTC)':<25} {'length':>7}  folder"]
        for m in listing:
            flag = " (recovered)" if m["recovered"] else ""
            lines.append(
                f"{m['id']:<22} {m['received']:<25} {m['seconds']:>6.1f}s  {m['folder']}{flag}"
            )
        return Reply(tuple(lines))

    def _loglevel(self, args: list[str]) -> Reply:
        if not args:
            return Reply((f"log level: {self._service.log_level()}",))
        if len(args) != 1 or args[0].lower() not in LOG_LEVEL_NAMES:
            return _error(f"usage: loglevel [{'|'.join(LOG_LEVEL_NAMES)}]")
        if not self.logged_in:
            return _error("setting the log level needs a technician login: type `login` first")
        level = args[0].lower()
        self._service.set_log_level(level)
        LOGGER.warning("log level set to %s from the %s", level, self._origin)
        return Reply((f"ok: log level {level}",))

    def _login(self, args: list[str]) -> Reply:
        if self._trusted:
            return _error("no login here: the control socket is trusted by its file mode")
        if args:
            return _error("type `login` alone; the code is asked on the next line (not echoed)")
        if self._logged_in:
            return Reply(("already logged in",))
        if self._auth is None or not self._auth.code_set:
            return _error(
                "no technician code on this box; set one with `gatewayd provision --tech-code`"
            )
        remaining = self._auth.delay_remaining()
        if remaining > 0:
            return _error(f"too many wrong codes: try again in {math.ceil(remaining)} s")
        if not self._interactive:
            return _error("login needs an interactive console")
        self._pending = _Pending.LOGIN_CODE
        return Reply(())

    def _check_code(self, code: str) -> Reply | Deferred:
        if not code:
            return Reply(("login cancelled",))
        auth = self._auth
        assert auth is not None
        pending = auth.begin_login(code, self._origin)  # counted on disk now
        if isinstance(pending, LoginResult):
            return self._login_reply(pending)

        def finish(ok: bool | None) -> Reply:
            if ok is None:  # the comparison raised: the try stays counted, no login
                return _error("the code could not be checked; see the log")
            return self._login_reply(auth.settle(pending, ok))

        return Deferred(lambda: auth.verify(pending), finish)

    def _login_reply(self, result: LoginResult) -> Reply:
        if result.outcome is LoginOutcome.OK:
            self._logged_in = True
            self._last_input = self._clock()
            minutes = self._idle_logout_s / 60
            return Reply((f"ok: logged in as technician (logged out after {minutes:g} min idle)",))
        if result.outcome is LoginOutcome.DELAYED:
            return _error(f"too many wrong codes: try again in {math.ceil(result.delay_s)} s")
        if result.outcome is LoginOutcome.NOT_SET:
            return _error("no technician code on this box")
        if result.delay_s:
            return _error(
                f"wrong code ({result.failures} in a row): logins refused for "
                f"{result.delay_s:.0f} s"
            )
        return _error("wrong code")

    def _logout(self, args: list[str]) -> Reply:
        if self._trusted:
            return _error("no login here: the control socket is trusted by its file mode")
        if not self._logged_in:
            return Reply(("not logged in",))
        self._logged_in = False
        LOGGER.info("technician logged out on the %s", self._origin)
        return Reply(("ok: logged out",))

    def _reset(self, args: list[str]) -> Reply:
        if args == ["--yes"]:
            return self._do_reset()
        if args or not self._interactive:
            return _error(
                "reset clears the code, the failure counter, the lock and the protection; "
                "confirm with `reset --yes`"
            )
        self._pending = _Pending.RESET_CONFIRM
        return Reply(
            (
                "reset clears the subscriber's secret code, the failure counter, the lock and "
                "the fixed-line protection.",
            )
        )

    def _do_reset(self) -> Reply:
        self._service.reset_code(self._origin)
        return Reply(
            ("ok: secret code reset; the subscriber can create a new one from the fixed line",)
        )

    def _ring(self, args: list[str]) -> Reply:
        seconds = RING_DEFAULT_S if not args else _seconds(args[0])
        if len(args) > 1 or seconds is None or seconds > RING_MAX_S:
            return _error(f"usage: ring [SECONDS] (0 < SECONDS <= {RING_MAX_S:g})")
        self._service.ring(seconds)
        return Reply((f"ok: ringing the handset for {seconds:g} s",))

    def _play(self, args: list[str]) -> Reply:
        if len(args) != 1:
            return _error("usage: play PROMPT_ID (e.g. play main_menu)")
        self._service.play_prompt(args[0])
        return Reply((f"ok: playing {args[0]}",))

    def _tone(self, args: list[str]) -> Reply:
        seconds = TONE_DEFAULT_S if len(args) < 2 else _seconds(args[1])
        if not 1 <= len(args) <= 2 or seconds is None or seconds > TONE_MAX_S:
            return _error(f"usage: tone NAME [SECONDS] (0 < SECONDS <= {TONE_MAX_S:g})")
        self._service.play_tone(args[0], seconds)
        return Reply((f"ok: playing tone {args[0]} for {seconds:g} s",))

    def _selftest(self, args: list[str]) -> Reply:
        if args:
            return _error("usage: selftest")
        checks = self._service.self_check()
        failed = sum(not check.ok for check in checks)
        summary = (
            f"selftest: all {len(checks)} checks ok"
            if not failed
            else f"selftest: {failed} of {len(checks)} checks failed"
        )
        return Reply((*(check.line() for check in checks), summary), ok=not failed)
