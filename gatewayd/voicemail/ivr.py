"""The 3103 call flow (DESIGN.md §1) as a pure state machine.

:class:`Ivr` is fed :mod:`gatewayd.events` line events and returns actions
(play prompts, tones, stop, hang up, timers, notifications). It does no I/O
and reads time only from the injected clock, so every flow is tested without
hardware. The whole call flow of 3103 is in this file: the menus are data
(:data:`MENUS`), the engine is :class:`Ivr`.

Flow, as the subscriber lives it:

- off-hook: dial tone; digits collected until they match the access number
  (then the service) or cannot match (congestion tone);
- main menu -> personalise menu -> secret-code menu -> code entry -> read-back
  -> confirm: the code is stored before "Votre demande est prise en compte." plays;
- a remote session (or a protected fixed line) enters the code first; wrong codes
  are counted before they are checked (see :mod:`gatewayd.voicemail.policy`).

Everywhere ``*`` goes back, a key during a prompt stops it (barge-in), a menu
with no key is replayed then the call ends with ``goodbye``; a hang-up before
the confirmation changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from gatewayd.errors import PolicyError
from gatewayd.events import (
    Action,
    Answer,
    CancelTimer,
    Digit,
    Flash,
    Hangup,
    LineEvent,
    LineFault,
    Notify,
    OffHook,
    OnHook,
    Party,
    Play,
    PlaybackDone,
    PlayTone,
    PromptRef,
    RemoteAnswered,
    RemoteHangup,
    Ring,
    SpokenDigit,
    StartTimer,
    StopAudio,
    TimerExpired,
)
from gatewayd.voicemail.codes import CODE_LENGTH
from gatewayd.voicemail.config import VoicemailConfig
from gatewayd.voicemail.policy import Access, SecretCodeService

LOGGER = logging.getLogger(__name__)

#: Timer names the IVR asks for.
DIAL_TIMER = "dial"
MENU_TIMER = "menu"
#: Event loops may fire a timer a hair before its deadline; earlier than this is stale.
TIMER_SLACK_S = 0.005
#: A digit buffer never grows past this: an over-long entry is just "bad length".
MAX_ENTRY_KEYS = 16

# States. Menus are listed in MENUS; the others are handled by the engine.
IDLE = "idle"
DIALING = "dialing"
DEAD = "dead"  # congestion/busy tone until the handset goes on-hook
AUTH = "code_check"  # entering the code to get in (remote, or protected fixed line)
MAIN_MENU = "main_menu"
PERSONALISE_MENU = "personalise_menu"
CODE_MENU = "code_menu"
CODE_ENTRY = "code_entry"  # keying a new code
CODE_CONFIRM = "code_confirm"  # read-back, then 1 keep / 2 another
ENDING = "ending"  # a last prompt plays, then the call ends

#: States in which keys may be code digits: events show them as "masked". The ending
#: and dead states count too, since a caller may go on keying a guess after the last try.
SECRET_STATES = frozenset({AUTH, CODE_ENTRY, ENDING, DEAD})


@dataclass(frozen=True)
class Menu:
    """A menu: what it says, and where ``*`` leads."""

    prompts: tuple[str, ...]
    back: str | None


#: Static menus. The code menu's prompt depends on whether a code exists (see Ivr._menu_prompts).
MENUS: dict[str, Menu] = {
    MAIN_MENU: Menu(("main_menu",), back=None),
    PERSONALISE_MENU: Menu(("personalise_menu",), back=MAIN_MENU),
    CODE_MENU: Menu(("code_menu_set",), back=PERSONALISE_MENU),
    CODE_ENTRY: Menu(("code_enter_new",), back=CODE_MENU),
    CODE_CONFIRM: Menu(("code_confirm_menu",), back=CODE_MENU),
    AUTH: Menu(("code_enter",), back=None),
}


@dataclass
class _Call:
    """The one call in progress."""

    party: Party
    state: str = IDLE
    keys: str = ""  # dialled number, or the code being keyed
    pending_code: str = field(default="", repr=False)  # new code awaiting confirmation
    modifying: bool = False
    replays: int = 0  # menu timeouts in a row
    bad_entries: int = 0  # invalid code entries in this entry session
    checks: int = 0  # codes checked in this call
    tone: bool = False  # a tone plays (dial tone is stopped by the first key)
    play_id: int | None = None  # the Play whose PlaybackDone we wait for
    then: Callable[[], None] | None = None  # what follows the current prompt


class Ivr:
    """The voicemail service of one line: feed it events, carry out the actions it returns."""

    def __init__(
        self,
        service: SecretCodeService,
        config: VoicemailConfig,
        clock: Callable[[], float],
        *,
        answer_after_rings: int = 2,
    ) -> None:
        self._service = service
        # Answering (temporary, until the declared call flow): rings of the current trunk call.
        self._answer_after_rings = answer_after_rings
        self._rings = 0
        self._config = config
        self._keys = config.keys
        self._timeouts = config.timeouts
        self._clock = clock
        self._call: _Call | None = None
        self._handset_off = False
        self._next_play_id = 0
        self._deadlines: dict[str, float] = {}
        self._out: list[Action] = []

    # --- what the outside may look at ------------------------------------------

    @property
    def state(self) -> str:
        """The current menu/state name (``idle`` when no call)."""
        return self._call.state if self._call else IDLE

    @property
    def party(self) -> Party | None:
        """Who is on the call, if anyone."""
        return self._call.party if self._call else None

    @property
    def handset_off_hook(self) -> bool:
        """Whether the box's own handset is off-hook."""
        return self._handset_off

    @property
    def masking(self) -> bool:
        """True while keys are code digits (logs and events must show them masked)."""
        return self._call is not None and self._call.state in SECRET_STATES

    # --- the engine --------------------------------------------------------------

    def handle(self, event: LineEvent) -> list[Action]:
        """Feed one event; returns the actions to carry out, in order."""
        self._out = []
        try:
            self._dispatch(event)
        except Exception:
            # A bug in one call must not take the line down: end the call, keep the service.
            LOGGER.exception("error in the call flow; ending the call")
            self._out.append(StopAudio())
            self._end_call(reason="error")
        out, self._out = self._out, []
        return out

    def _dispatch(self, event: LineEvent) -> None:
        match event:
            case OffHook():
                self._on_off_hook()
            case OnHook():
                self._on_on_hook()
            case Flash():
                LOGGER.debug("flash ignored by the voicemail service")
            case Digit(key=key, party=party):
                self._on_key(key, party)
            case Ring():
                self._on_ring()
            case RemoteAnswered():
                self._rings = 0
                self._on_remote_answered()
            case RemoteHangup():
                self._rings = 0
                if self._call and self._call.party == "remote":
                    self._notify(type="hook", party="remote", state="on")
                    self._out.append(StopAudio())
                    self._end_call(reason="hangup")
            case LineFault(reason=reason):
                LOGGER.error("line fault: %s", reason)
                if self._call:
                    self._out.append(StopAudio())
                    self._end_call(reason="line_fault")
            case TimerExpired(name=name):
                self._on_timer(name)
            case PlaybackDone(play_id=play_id):
                self._on_playback_done(play_id)

    # --- hook and calls ---------------------------------------------------------------

    def _on_ring(self) -> None:
        if self._handset_off or self._call is not None:
            return  # the handset takes (or is busy with) the call: the box does not answer
        self._rings += 1
        if self._rings == self._answer_after_rings:
            self._out.append(Answer())

    def _on_off_hook(self) -> None:
        self._rings = 0
        if self._handset_off:
            return  # off-hook twice: nothing new
        self._handset_off = True
        self._notify(type="hook", party="handset", state="off")
        if self._call is not None:
            LOGGER.info("handset lifted during a remote call; ignored by the service")
            return
        self._call = _Call(party="handset", state=DIALING)
        self._notify(type="call", party="handset", state="start")
        self._tone("dial")
        self._start_timer(DIAL_TIMER, self._timeouts.first_digit)

    def _on_on_hook(self) -> None:
        if not self._handset_off:
            return
        self._handset_off = False
        self._notify(type="hook", party="handset", state="on")
        if self._call is not None and self._call.party == "handset":
            self._out.append(StopAudio())
            self._end_call(reason="hangup")

    def _on_remote_answered(self) -> None:
        if self._call is not None:
            LOGGER.info("remote call while the line is busy: hanging it up")
            self._out.append(Hangup())
            return
        self._call = _Call(party="remote")
        self._notify(type="call", party="remote", state="start")
        self._enter_auth()

    def _end_call(self, reason: str) -> None:
        call = self._call
        if call is None:
            return
        for name in list(self._deadlines):
            self._cancel_timer(name)
        self._call = None  # drops any pending, unconfirmed code with it
        self._notify(type="call", party=call.party, state="end", reason=reason)

    # --- keys ------------------------------------------------------------------------

    def _on_key(self, key: str, party: Party) -> None:
        call = self._call
        if call is None or call.party != party:
            return  # key while on-hook, or from a party not in the call
        self._notify(type="key", party=party, key="masked" if call.state in SECRET_STATES else key)
        if call.state in (DEAD, ENDING, IDLE):
            return
        if call.play_id is not None or call.tone:
            # Barge-in: the key stops the prompt (or dial tone) at once and is acted on.
            self._out.append(StopAudio())
            call.play_id = None
            call.tone = False
            call.then = None
        self._cancel_timer(MENU_TIMER)
        if call.state == DIALING:
            self._dial_key(call, key)
        elif call.state in (AUTH, CODE_ENTRY):
            self._entry_key(call, key)
        else:
            self._menu_key(call, call.state, key)

    def _dial_key(self, call: _Call, key: str) -> None:
        call.keys += key
        number = self._config.access_number
        if call.keys == number:
            self._cancel_timer(DIAL_TIMER)
            if self._service.status().protection:
                self._enter_auth()
            else:
                self._enter_menu(MAIN_MENU)
        elif number.startswith(call.keys):
            self._start_timer(DIAL_TIMER, self._timeouts.inter_digit)
        else:
            self._cancel_timer(DIAL_TIMER)
            self._dead("congestion")  # not ours: the rest of the dial plan is the VoIP stack's

    def _menu_key(self, call: _Call, state: str, key: str) -> None:
        keys = self._keys
        call.replays = 0
        if key == keys.back:
            back = MENUS[state].back if state in MENUS else None
            self._enter_menu(back or state)
            return
        if state == MAIN_MENU:
            if key == keys.main_personalise:
                return self._enter_menu(PERSONALISE_MENU)
            if key == keys.main_listen and self._config.mailbox_exists:
                return self._announce(("no_messages",), then=MAIN_MENU)
        elif state == PERSONALISE_MENU:
            if key == keys.personalise_code:
                if call.party != "handset":
                    return self._announce(("code_only_fixed_line",), then=PERSONALISE_MENU)
                return self._enter_menu(CODE_MENU)
        elif state == CODE_MENU:
            code_set = self._service.status().code_set
            if not code_set and key == keys.code_create:
                return self._enter_entry(modifying=False)
            if code_set and key == keys.code_modify:
                return self._enter_entry(modifying=True)
            if code_set and key == keys.code_protection:
                return self._toggle_protection()
        elif state == CODE_CONFIRM:
            if key == keys.confirm_yes:
                return self._confirm()
            if key == keys.confirm_retry:
                return self._enter_entry(modifying=call.modifying)
        self._announce(("invalid_key",), then=state)

    def _entry_key(self, call: _Call, key: str) -> None:
        keys = self._keys
        if key == keys.back:
            call.keys = ""
            back = MENUS[call.state].back
            if back is None:  # code check: nowhere to go back to, ask again
                self._prompt_menu(AUTH)
            else:
                self._enter_menu(back)
            return
        if key != keys.end_entry:
            if len(call.keys) < MAX_ENTRY_KEYS:
                call.keys += key
            self._start_timer(MENU_TIMER, self._timeouts.menu)
            return
        entry, call.keys = call.keys, ""  # one attempt per '#': the buffer is always cleared
        call.replays = 0
        if len(entry) != CODE_LENGTH or not entry.isdigit():
            self._bad_entry(call, "code_bad_length")
        elif call.state == AUTH:
            self._check_code(call, entry)
        else:
            self._new_code(call, entry)

    def _bad_entry(self, call: _Call, prompt: str) -> None:
        call.bad_entries += 1
        if call.bad_entries >= self._timeouts.entry_tries:
            call.bad_entries = 0
            if call.state == AUTH:
                return self._finish((prompt, "goodbye"))
            return self._announce((prompt,), then=CODE_MENU)
        self._play((prompt, *MENUS[call.state].prompts), then=self._wait_key)

    # --- code check (remote access, protected fixed line) ------------------------------

    def _enter_auth(self) -> None:
        call = self._require_call()
        access = self._service.access()
        if access is Access.NO_CODE:
            if call.party == "remote":
                return self._finish(("code_create_first",))
            return self._enter_menu(MAIN_MENU)  # protection without a code cannot stand
        if access is Access.LOCKED:
            self._notify(type="lock")
            return self._finish(("code_locked",))
        if access is Access.COOLDOWN:
            remaining = self._service.status().cooldown_remaining_s
            self._notify(type="cooldown", seconds=round(remaining))
            return self._finish(("code_too_many_failures",))
        call.bad_entries = 0
        self._enter_menu(AUTH)

    def _check_code(self, call: _Call, code: str) -> None:
        if self._service.access() is not Access.OPEN:
            return self._enter_auth()  # a reset or another call changed things meanwhile
        try:
            result = self._service.check(code, call.party)
        except PolicyError:
            return self._enter_auth()
        call.checks += 1
        if result.ok:
            self._notify(type="auth", result="ok", failures=0, party=call.party)
            return self._enter_menu(MAIN_MENU)
        self._notify(type="auth", result="fail", failures=result.failures, party=call.party)
        if result.locked:
            self._notify(type="lock")
            return self._finish(("code_wrong", "code_locked"))
        if result.cooldown_s:
            self._notify(type="cooldown", seconds=round(result.cooldown_s))
        if result.cooldown_s or call.checks >= self._service.policy.tries_per_call:
            return self._finish(("code_too_many_failures",))
        self._play(("code_wrong", *MENUS[AUTH].prompts), then=self._wait_key)

    # --- create / modify -------------------------------------------------------------

    def _enter_entry(self, modifying: bool) -> None:
        call = self._require_call()
        call.modifying = modifying
        call.bad_entries = 0
        call.keys = ""
        call.pending_code = ""
        self._enter_menu(CODE_ENTRY)

    def _new_code(self, call: _Call, code: str) -> None:
        refusal = self._service.refusal(code)
        if refusal is not None:
            LOGGER.info("new code refused: %s", refusal.value)
            return self._bad_entry(call, "code_trivial")
        call.pending_code = code
        call.state = CODE_CONFIRM
        call.replays = 0
        self._notify(type="menu", state=CODE_CONFIRM)
        readback: tuple[PromptRef, ...] = tuple(SpokenDigit(d) for d in code)
        self._play(("code_you_entered", *readback, "code_confirm_menu"), then=self._wait_key)

    def _confirm(self) -> None:
        call = self._require_call()
        code, call.pending_code = call.pending_code, ""
        action = self._service.set_code(code, "handset")  # durable before the prompt plays
        self._notify(type="code", action=action, origin="handset")
        self._announce(("code_saved",), then=CODE_MENU)

    def _toggle_protection(self) -> None:
        on = not self._service.status().protection
        self._service.set_protection(on, "handset")
        self._notify(type="protection", state="on" if on else "off")
        self._announce(("protection_on" if on else "protection_off",), then=CODE_MENU)

    # --- menus, prompts and timers ---------------------------------------------------

    def _menu_prompts(self, state: str) -> tuple[str, ...]:
        if state == CODE_MENU and not self._service.status().code_set:
            return ("code_none_yet", "code_menu_new")
        return MENUS[state].prompts

    def _enter_menu(self, state: str) -> None:
        call = self._require_call()
        call.state = state
        call.replays = 0
        call.keys = ""
        self._notify(type="menu", state=state)
        self._prompt_menu(state)

    def _prompt_menu(self, state: str) -> None:
        self._play(self._menu_prompts(state), then=self._wait_key)

    def _wait_key(self) -> None:
        self._start_timer(MENU_TIMER, self._timeouts.menu)

    def _announce(self, prompts: tuple[str, ...], then: str) -> None:
        """Play an informative prompt followed by the menu ``then``; a key acts on that menu."""
        call = self._require_call()
        call.state = then
        call.replays = 0
        call.keys = ""
        self._notify(type="menu", state=then)
        self._play((*prompts, *self._menu_prompts(then)), then=self._wait_key)

    def _finish(self, prompts: tuple[str, ...]) -> None:
        """Play the last prompts, then end the call (hang up remote, busy tone on the handset)."""
        call = self._require_call()
        call.state = ENDING
        self._cancel_timer(MENU_TIMER)
        self._play(prompts, then=self._after_finish)

    def _after_finish(self) -> None:
        call = self._require_call()
        if call.party == "remote":
            self._out.append(Hangup())
            self._end_call(reason="ended")
        else:
            self._dead("busy")

    def _dead(self, tone: str) -> None:
        call = self._require_call()
        call.state = DEAD
        call.play_id = None
        self._tone(tone)

    def _play(self, prompts: tuple[PromptRef, ...], then: Callable[[], None]) -> None:
        call = self._require_call()
        self._cancel_timer(MENU_TIMER)
        self._next_play_id += 1
        call.play_id = self._next_play_id
        call.tone = False
        call.then = then
        self._out.append(Play(prompts=prompts, play_id=call.play_id))

    def _tone(self, name: str) -> None:
        call = self._require_call()
        call.tone = True
        self._out.append(PlayTone(name))

    def _on_playback_done(self, play_id: int) -> None:
        call = self._call
        if call is None or call.play_id != play_id:
            return  # stale: that playback was stopped or replaced
        call.play_id = None
        then, call.then = call.then, None
        if then is not None:
            then()

    def _on_timer(self, name: str) -> None:
        deadline = self._deadlines.get(name)
        if deadline is None or self._clock() < deadline - TIMER_SLACK_S:
            return  # stale or early: a newer timer of that name replaced it
        del self._deadlines[name]
        call = self._call
        if call is None:
            return
        if name == DIAL_TIMER and call.state == DIALING:
            self._out.append(StopAudio())
            self._dead("congestion")
        elif name == MENU_TIMER and call.state in MENUS:
            call.replays += 1
            call.keys = ""
            if call.replays > self._timeouts.menu_replays:
                self._finish(("goodbye",))
            else:
                self._prompt_menu(call.state)

    def _start_timer(self, name: str, seconds: float) -> None:
        self._deadlines[name] = self._clock() + seconds
        self._out.append(StartTimer(name, seconds))

    def _cancel_timer(self, name: str) -> None:
        if self._deadlines.pop(name, None) is not None:
            self._out.append(CancelTimer(name))

    def _notify(self, **event: object) -> None:
        self._out.append(Notify(dict(event)))

    def _require_call(self) -> _Call:
        if self._call is None:
            raise RuntimeError("no call in progress")
        return self._call
