"""The engine that runs the 3103 call flow declared in :mod:`gatewayd.voicemail.flow`.

:class:`Ivr` is fed :mod:`gatewayd.events` line events and returns actions
(play prompts, tones, stop, hang up, timers, notifications). It does no I/O
and reads time only from the injected clock, so every flow is tested without
hardware. Menus are looked up, not branched on: a key in a menu is resolved by
:func:`gatewayd.voicemail.flow.choose` and leads to a state or to one of the
engine's actions (:attr:`Ivr._ACTIONS`).

What the engine owns, beside the tables:

- off-hook: dial tone; digits collected until they match the access number
  (then the service) or cannot match (congestion tone);
- entries: digits ended by ``#``; the code check counts a try before it is compared
  (see :mod:`gatewayd.voicemail.policy`); a new code is read back, then stored before
  "Votre demande est prise en compte." plays;
- everywhere ``*`` goes back, a key during a prompt stops it (barge-in), a menu with no
  key is replayed then the call ends with ``goodbye``; a hang-up before the confirmation
  changes nothing.

Per-flow context lives in small objects (:class:`Dialing`, :class:`CodeCheck`,
:class:`NewCode`), not in the call.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol

import gatewayd.voicemail.spoken as spoken
from gatewayd.errors import PolicyError
from gatewayd.events import (
    Action,
    Answer,
    CancelTimer,
    CheckCode,
    CodeChecked,
    ComposedPrompt,
    Digit,
    Flash,
    Hangup,
    LineEvent,
    LineFault,
    MaskedPrompt,
    MessageAudio,
    Notify,
    OffHook,
    OnHook,
    OwnGreeting,
    Party,
    PendingGreeting,
    Play,
    PlaybackDone,
    PlayTone,
    PromptRef,
    RecordingEnded,
    RemoteAnswered,
    RemoteHangup,
    Ring,
    RingStation,
    SpokenDigit,
    StartRecording,
    StartTimer,
    StopAudio,
    StopRecording,
    TimerExpired,
)
from gatewayd.voicemail.codes import CODE_LENGTH, Refusal
from gatewayd.voicemail.config import VoicemailConfig
from gatewayd.voicemail.flow import (
    ENTRIES,
    MENUS,
    PRESS,
    SECRET_STATES,
    Cond,
    Do,
    Entry,
    Menu,
    Option,
    OtherKeys,
    State,
    bad_length_prompt,
    choose,
    entry_prompt,
    key_fragment,
    menu_prompt,
    variant,
)
from gatewayd.voicemail.policy import (
    Access,
    CheckResult,
    NewHash,
    SecretCodeService,
    ServiceUnavailable,
)

if TYPE_CHECKING:  # a declaration for the type checker only
    from gatewayd.eventtypes import Event

LOGGER = logging.getLogger(__name__)

#: Timer names the IVR asks for.
DIAL_TIMER = "dial"
MENU_TIMER = "menu"
#: The whole call (``timeouts.call_max``) and the code check (``timeouts.code_check_max``).
CALL_TIMER = "call"
CODE_TIMER = "code"
#: Event loops may fire a timer a hair before its deadline; earlier than this is stale.
TIMER_SLACK_S = 0.005
#: A digit buffer never grows past this: an over-long entry is just "bad length".
MAX_ENTRY_KEYS = 16
#: Back / forward in a message (DESIGN §7.3).
SEEK_S = 5.0
#: A greeting shorter than this (after trimming silence) is not kept.
GREETING_MIN_S = 1.0
#: States whose keys may be shown in clear (``status``, events): the number being dialled
#: and the menus' choices. Everywhere else (an entry, a recording, an ending or dead call,
#: no call at all, e.g. after an error or a hang-up) keys are masked.
CLEAR_KEY_STATES = (
    frozenset(
        {State.DIALING, State.MAIN_MENU, State.PERSONALISE_MENU, State.CODE_MENU}
        | {State.CODE_CONFIRM, State.GREETING, State.LISTENING, State.GREETING_MENU}
        | {State.GREETING_CONFIRM}
    )
    - SECRET_STATES
)
#: What the handset hears after an error in its call, until it goes on-hook.
ERROR_TONE = "congestion"


# --- per-flow context -------------------------------------------------------------


@dataclass
class Dialing:
    """The number being dialled after off-hook."""

    number: str = ""


@dataclass
class CodeCheck:
    """Keying the code to get in."""

    keys: str = field(default="", repr=False)
    bad_entries: int = 0


@dataclass
class NewCode:
    """Creating or modifying the code: the digits, then the code awaiting confirmation."""

    modifying: bool
    keys: str = field(default="", repr=False)
    bad_entries: int = 0
    pending: str = field(default="", repr=False)


@dataclass
class Incoming:
    """A trunk call before it is answered: its rings and caller ID."""

    caller: str | None = field(default=None, repr=False)
    rings: int = 0


@dataclass
class Message:
    """A caller leaving a message: the greeting, the beep, the recording."""

    caller: str | None = field(default=None, repr=False)
    recording: bool = False


@dataclass
class Listening:
    """The messages being listened to: the playlist, which one, where its audio is."""

    playlist: list[str]
    index: int = 0
    offset_s: float = 0.0  # where in the message its audio (re)started
    started_at: float | None = None  # the clock when it did; None while it does not play

    @property
    def current(self) -> str:
        """The message id in hand."""
        return self.playlist[self.index]


@dataclass
class GreetingRecording:
    """The subscriber recording a new greeting."""

    recording: bool = False


Flow = Dialing | CodeCheck | NewCode | Incoming | Message | Listening | GreetingRecording


class MailboxView(Protocol):
    """What the call flow needs to know of the mailbox (the daemon adapts the message store)."""

    def new_count(self) -> int:
        """New (unheard) messages."""
        ...

    def is_full(self) -> bool:
        """Whether a new message would exceed the quota (count or total time)."""
        ...

    def has_greeting(self) -> bool:
        """Whether the subscriber recorded their own greeting."""
        ...

    def counts(self) -> tuple[int, int]:
        """New and saved messages."""
        ...

    def playlist(self) -> list[str]:
        """Message ids to listen to: new ones oldest first, then saved ones."""
        ...

    def envelope(self, message_id: str) -> tuple[datetime, str | None, float]:
        """When a message was received (UTC), its caller (None: unknown), its length (s)."""
        ...

    def playable(self, message_id: str) -> bool:
        """Whether the message's audio is there and passes its checksum (else: audited)."""
        ...

    def mark_saved(self, message_id: str) -> None:
        """A new message heard or skipped becomes saved."""
        ...

    def delete(self, message_id: str) -> None:
        """Delete the message for good: its audio and its index entry."""
        ...

    def keep_greeting(self) -> bool:
        """Store the greeting just recorded as the subscriber's; False if it could not be."""
        ...

    def clear_greeting(self) -> None:
        """Back to the standard greeting."""
        ...


class NoMailbox:
    """A mailbox with nothing in it (tests and boxes without a message store)."""

    def new_count(self) -> int:
        """None."""
        return 0

    def is_full(self) -> bool:
        """Never."""
        return False

    def has_greeting(self) -> bool:
        """No own greeting."""
        return False

    def counts(self) -> tuple[int, int]:
        """None."""
        return (0, 0)

    def playlist(self) -> list[str]:
        """Nothing to hear."""
        return []

    def envelope(self, message_id: str) -> tuple[datetime, str | None, float]:
        """There is no message."""
        raise KeyError(message_id)

    def playable(self, message_id: str) -> bool:
        """Nothing is."""
        return False

    def mark_saved(self, message_id: str) -> None:
        """Nothing to mark."""

    def delete(self, message_id: str) -> None:
        """Nothing to delete."""

    def keep_greeting(self) -> bool:
        """Nowhere to keep it."""
        return False

    def clear_greeting(self) -> None:
        """Nothing to clear."""


@dataclass
class _Call:
    """The one call in progress: who, where, what plays; the flow's own context apart."""

    party: Party
    state: State = State.IDLE
    flow: Flow | None = None
    replays: int = 0  # menu timeouts in a row
    checks: int = 0  # codes checked in this call (tries per call)
    tone: bool = False  # a tone plays (dial tone is stopped by the first key)
    play_id: int | None = None  # the Play whose PlaybackDone we wait for
    then: Callable[[], None] | None = None  # what follows the current prompt
    #: The ``CheckCode`` (scrypt work off the loop) whose verdict the call waits for.
    computing: int | None = None


#: What to do with a verdict on the loop: ``ok`` (None if the work raised), and whether
#: the call that asked is still the one in progress and waiting for it.
Verdict = Callable[[bool | None, bool], None]


class Ivr:
    """The voicemail service of one line: feed it events, carry out the actions it returns."""

    def __init__(
        self,
        service: SecretCodeService,
        config: VoicemailConfig,
        clock: Callable[[], float],
        mailbox: MailboxView | None = None,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._wall_clock = wall_clock
        self._service = service
        self._config = config
        self._mailbox: MailboxView = mailbox or NoMailbox()
        self._keys = config.keys
        self._timeouts = config.timeouts
        self._clock = clock
        self._call: _Call | None = None
        self._handset_off = False
        self._next_play_id = 0
        self._next_check_id = 0
        #: Work running off the loop (code comparisons, hashes): the call and what follows.
        self._computing: dict[int, tuple[_Call, Verdict]] = {}
        self._deadlines: dict[str, float] = {}
        self._out: list[Action] = []
        self._actions: dict[Do, Callable[[_Call], None]] = {
            Do.LISTEN: self._listen,
            Do.CREATE_CODE: lambda call: self._enter_new_code(modifying=False),
            Do.MODIFY_CODE: lambda call: self._enter_new_code(modifying=True),
            Do.TOGGLE_PROTECTION: self._toggle_protection,
            Do.KEEP_CODE: self._keep_code,
            Do.RETRY_CODE: self._retry_code,
            Do.REPLAY: lambda call: self._message(call, envelope=False),
            Do.DELETE: self._delete_message,
            Do.KEEP: self._keep_message,
            Do.NEXT: self._next_message,
            Do.REWIND: lambda call: self._seek(call, -SEEK_S),
            Do.FAST_FORWARD: lambda call: self._seek(call, SEEK_S),
            Do.RECORD_GREETING: self._record_greeting,
            Do.STANDARD_GREETING: self._standard_greeting,
            Do.KEEP_GREETING: self._keep_greeting,
            Do.RETRY_GREETING: self._record_greeting,
            Do.BEEP: self._skip_to_beep,
            Do.ASK_CODE: self._ask_code,
            Do.END_RECORDING: self._end_recording,
        }

    # --- what the outside may look at ------------------------------------------

    @property
    def state(self) -> str:
        """The current menu/state name (``idle`` when no call)."""
        return str(self._call.state) if self._call else str(State.IDLE)

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
        """True unless the call is in a state whose keys may be shown (CLEAR_KEY_STATES)."""
        return self._call is None or self._call.state not in CLEAR_KEY_STATES

    def facts(self, party: Party | None = None) -> frozenset[Cond]:
        """The conditions that hold now for ``party`` (default: the caller in the call)."""
        facts = {Cond.CODE_SET if self._service.status().code_set else Cond.NO_CODE}
        if (party or self.party) == "handset":
            facts.add(Cond.LOCAL)
        if self._config.mailbox_exists:
            facts.add(Cond.MAILBOX)
        if self._mailbox.has_greeting():
            facts.add(Cond.OWN_GREETING)
        call = self._call
        if call is not None and isinstance(call.flow, Listening) and call.flow.started_at:
            facts.add(Cond.MESSAGE_PLAYING)
        return frozenset(facts)

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
            self._fail_call()
        out, self._out = self._out, []
        return out

    def _fail_call(self) -> None:
        """After an error: hang up a remote call; the handset hears the error tone until on-hook.

        Every step here must work whatever state the error left: no prompt, no store.
        """
        call = self._call
        if call is None:
            return
        for name in list(self._deadlines):
            self._cancel_timer(name)
        call.flow = None  # drops any digits keyed so far
        call.then = None
        call.play_id = None
        if call.party == "handset" and self._handset_off and call.state is not State.TAKEN:
            call.state = State.DEAD  # keys stay masked until the handset goes on-hook
            call.tone = True
            self._out.append(PlayTone(ERROR_TONE))
            return
        self._out.append(Hangup())
        self._end_call(reason="error")

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
            case Ring(caller=caller):
                self._on_ring(caller)
            case RemoteAnswered():
                self._on_remote_answered()
            case RemoteHangup():
                self._on_remote_hangup()
            case RecordingEnded():
                self._on_recording_ended(event)
            case LineFault(reason=reason):
                LOGGER.error("line fault: %s", reason)
                if self._call:
                    self._out.append(StopAudio())
                    self._end_call(reason="line_fault")
            case TimerExpired(name=name):
                self._on_timer(name)
            case PlaybackDone(play_id=play_id):
                self._on_playback_done(play_id)
            case CodeChecked(check_id=check_id, ok=ok):
                self._on_code_checked(check_id, ok)

    # --- hook and calls ---------------------------------------------------------------

    def _on_off_hook(self) -> None:
        if self._handset_off:
            return  # off-hook twice: nothing new
        self._handset_off = True
        self._notify({"type": "hook", "party": "handset", "state": "off"})
        call = self._call
        if call is not None and call.state is State.RINGING:
            # The subscriber picks up: the call is theirs, the box stays out (no recording).
            self._out.append(RingStation(on=False))
            call.state = State.TAKEN
            call.flow = None
            self._notify({"type": "call", "party": "remote", "state": "start", "by": "handset"})
            return
        if call is not None:
            LOGGER.info("handset lifted during a remote call; ignored by the service")
            return
        self._call = _Call(party="handset", state=State.DIALING, flow=Dialing())
        self._notify({"type": "call", "party": "handset", "state": "start"})
        self._start_timer(CALL_TIMER, self._timeouts.call_max)
        # Message waiting (DESIGN §7.5): a stuttered dial tone while new messages wait.
        self._tone("mwi" if self._mailbox.new_count() > 0 else "dial")
        self._start_timer(DIAL_TIMER, self._timeouts.first_digit)

    def _on_on_hook(self) -> None:
        if not self._handset_off:
            return
        self._handset_off = False
        self._notify({"type": "hook", "party": "handset", "state": "on"})
        call = self._call
        if call is not None and call.state is State.TAKEN:
            self._out.append(Hangup())  # the subscriber ends the trunk call they took
            self._end_call(reason="hangup")
        elif call is not None and call.party == "handset":
            self._out.append(StopAudio())
            self._end_call(reason="hangup")

    def _on_ring(self, caller: str | None) -> None:
        call = self._call
        if call is None:
            if self._handset_off:
                return  # off-hook with no call cannot last; the next ring finds the line free
            call = self._call = _Call(party="remote", state=State.RINGING, flow=Incoming())
            self._out.append(RingStation(on=True))
        elif call.state is not State.RINGING:
            if call.party == "handset":
                LOGGER.info("trunk call while the handset is busy: refusing it")
                self._out.append(Hangup())
            return
        incoming = call.flow
        assert isinstance(incoming, Incoming)
        incoming.rings += 1
        if caller is not None:
            incoming.caller = caller
        if incoming.rings >= self._config.mailbox.answer_after_rings:
            self._out.append(RingStation(on=False))
            self._out.append(Answer())

    def _on_remote_answered(self) -> None:
        call = self._call
        if call is not None and call.state is not State.RINGING:
            LOGGER.info("remote call while the line is busy: hanging it up")
            self._out.append(Hangup())
            return
        caller = call.flow.caller if call and isinstance(call.flow, Incoming) else None
        self._call = _Call(party="remote")
        self._notify({"type": "call", "party": "remote", "state": "start"})
        self._start_timer(CALL_TIMER, self._timeouts.call_max)
        self._greet(caller)

    def _on_remote_hangup(self) -> None:
        call = self._call
        if call is None or call.party != "remote":
            return
        if call.state is State.RINGING:
            # The caller gave up before the answer: no call ever started, none ends.
            self._out.append(RingStation(on=False))
            self._call = None
            return
        self._notify({"type": "hook", "party": "remote", "state": "on"})
        self._out.append(StopAudio())
        self._end_call(reason="hangup")

    def _end_call(self, reason: str) -> None:
        call = self._call
        if call is None:
            return
        for name in list(self._deadlines):
            self._cancel_timer(name)
        if isinstance(call.flow, Message | GreetingRecording) and call.flow.recording:
            # Hang-up, line fault or an error: what the caller said so far is kept.
            self._out.append(StopRecording("hangup"))
        self._call = None  # drops any pending, unconfirmed code with it
        self._notify({"type": "call", "party": call.party, "state": "end", "reason": reason})

    # --- keys ------------------------------------------------------------------------

    def _on_key(self, key: str, party: Party) -> None:
        call = self._call
        if call is None or call.party != party:
            return  # key while on-hook, or from a party not in the call
        self._notify({"type": "key", "party": party, "key": "masked" if self.masking else key})
        if call.state in (State.DEAD, State.ENDING, State.IDLE, State.RINGING, State.TAKEN):
            return
        if call.computing is not None:
            return  # a code is being compared or hashed: keys meanwhile are ignored
        menu = MENUS.get(call.state)
        if (
            menu is not None
            and menu.other_keys is OtherKeys.IGNORED
            and choose(menu, key, self._keys, self.facts()) is None
        ):
            return  # garbage during a greeting or a message: not even a barge-in
        if call.play_id is not None or call.tone:
            # Barge-in: the key stops the prompt (or dial tone) at once and is acted on.
            self._out.append(StopAudio())
            call.play_id = None
            call.tone = False
            call.then = None
        self._cancel_timer(MENU_TIMER)
        if isinstance(call.flow, Dialing):
            self._dial_key(call.flow, key)
        elif call.state in ENTRIES:
            self._entry_key(call, ENTRIES[call.state], key)
        elif call.state in MENUS:
            self._menu_key(call, MENUS[call.state], key)

    def _dial_key(self, dialing: Dialing, key: str) -> None:
        dialing.number += key
        number = self._config.access_number
        if dialing.number == number:
            self._cancel_timer(DIAL_TIMER)
            if self._service.status().protection:
                self._enter_code_check()
            else:
                self._enter_menu(State.MAIN_MENU)
        elif number.startswith(dialing.number):
            self._start_timer(DIAL_TIMER, self._timeouts.inter_digit)
        else:
            self._cancel_timer(DIAL_TIMER)
            self._dead("congestion")  # not ours: the rest of the dial plan is the VoIP stack's

    def _menu_key(self, call: _Call, menu: Menu, key: str) -> None:
        call.replays = 0
        facts = self.facts()
        option = choose(menu, key, self._keys, facts)
        if option is None and key == self._keys.back and menu.announced:
            self._enter_menu(menu.back or menu.state)
            return
        if option is None:
            self._announce(("invalid_key",), then=menu.state)
        elif option.when is not None and option.when not in facts:
            assert option.refused is not None  # choose() returns a failing option only then
            self._announce((option.refused,), then=menu.state)
        else:
            self._select(call, option)

    def _select(self, call: _Call, option: Option) -> None:
        if option.go is not None:
            self._enter(option.go)
        else:
            assert option.do is not None
            self._actions[option.do](call)

    def _entry_key(self, call: _Call, entry: Entry, key: str) -> None:
        flow = call.flow
        assert isinstance(flow, CodeCheck | NewCode)
        if key == self._keys.back:
            flow.keys = ""
            if entry.back is None:  # code check: nowhere to go back to, ask again
                self._prompt(call.state)
            else:
                self._enter_menu(entry.back)
            return
        if key != self._keys.end_entry:
            if len(flow.keys) < MAX_ENTRY_KEYS:
                flow.keys += key
            self._start_timer(MENU_TIMER, self._timeouts.menu)
            return
        digits, flow.keys = flow.keys, ""  # one attempt per '#': the buffer is always cleared
        call.replays = 0
        if len(digits) != CODE_LENGTH or not digits.isdigit():
            self._bad_entry(call, entry, bad_length_prompt(self._keys))
        elif entry.submit is Do.CHECK_CODE:
            self._check_code(call, digits)
        else:
            self._new_code(call, entry, digits)

    def _bad_entry(self, call: _Call, entry: Entry, prompt: PromptRef) -> None:
        flow = call.flow
        assert isinstance(flow, CodeCheck | NewCode)
        flow.bad_entries += 1
        if flow.bad_entries >= self._timeouts.entry_tries:
            flow.bad_entries = 0
            if entry.back is None:
                return self._finish((prompt, "goodbye"))
            return self._announce((prompt,), then=entry.back)
        self._play((prompt, entry_prompt(entry, self._keys)), then=self._wait_key)

    # --- code check (remote access, protected fixed line) ------------------------------

    def _enter_code_check(self) -> None:
        call = self._require_call()
        access = self._service.access()
        if access is Access.NO_CODE:
            if call.party == "remote":  # then on with the greeting: the beep, the message
                return self._beep(("code_create_first",))
            return self._enter_menu(State.MAIN_MENU)  # protection without a code cannot stand
        if access is Access.LOCKED:
            self._notify({"type": "lock"})
            return self._finish(("code_locked",))
        if access is Access.COOLDOWN:
            remaining = self._service.status().cooldown_remaining_s
            self._notify({"type": "cooldown", "seconds": round(remaining)})
            return self._finish(("code_too_many_failures",))
        if access is Access.UNAVAILABLE:
            return self._finish(("service_unavailable",))
        if CODE_TIMER not in self._deadlines:  # from the first request; a retry does not extend
            self._start_timer(CODE_TIMER, self._timeouts.code_check_max)
        self._enter(State.CODE_CHECK)

    def _check_code(self, call: _Call, code: str) -> None:
        if self._service.access() is not Access.OPEN:
            return self._enter_code_check()  # a reset or another call changed things meanwhile
        try:
            pending = self._service.begin_check(code, call.party)  # counted on disk now
        except ServiceUnavailable:
            return self._finish(("service_unavailable",))  # nothing counted, nothing compared
        except PolicyError:
            return self._enter_code_check()
        service = self._service

        def settle(ok: bool | None, ours: bool) -> None:
            if ok is None:
                # Counted on disk, cool-down armed: the error ends the call, nothing is cleared.
                if ours:
                    raise RuntimeError("the code comparison failed")
                return
            try:
                # Settled even after a hang-up: the failure is audited, the lock written.
                result = service.settle(pending, ok)
            except PolicyError:  # overtaken, or unwritable (then the code check says so)
                if ours:
                    self._enter_code_check()
                return
            if ours:
                self._checked(call, result)

        self._off_loop(call, lambda: service.verify(pending), settle)

    def _off_loop(self, call: _Call, work: Callable[[], bool], then: Verdict) -> None:
        """Ask for ``work`` (scrypt) in a worker; ``then`` gets its verdict back on the loop."""
        self._next_check_id += 1
        check_id = call.computing = self._next_check_id
        self._computing[check_id] = (call, then)
        self._out.append(CheckCode(check_id, work))

    def _on_code_checked(self, check_id: int, ok: bool | None) -> None:
        asked = self._computing.pop(check_id, None)
        if asked is None:
            return  # not ours (or already done)
        call, then = asked
        ours = call is self._call and call.computing == check_id
        if ours:
            call.computing = None
            return then(ok, ours)  # an error here ends this call, as any error in it
        try:
            then(ok, ours)  # the call that asked is gone: an error must not end another one
        except Exception:
            LOGGER.exception("error settling code work after its call ended")

    def _checked(self, call: _Call, result: CheckResult) -> None:
        call.checks += 1
        if result.ok:
            self._cancel_timer(CODE_TIMER)
            self._notify({"type": "auth", "result": "ok", "failures": 0, "party": call.party})
            return self._enter_menu(State.MAIN_MENU)
        self._notify(
            {"type": "auth", "result": "fail", "failures": result.failures, "party": call.party}
        )
        if result.locked:
            self._notify({"type": "lock"})
            return self._finish(("code_wrong", "code_locked"))
        if result.cooldown_s:
            self._notify({"type": "cooldown", "seconds": round(result.cooldown_s)})
        if result.cooldown_s or call.checks >= self._service.policy.tries_per_call:
            return self._finish(("code_too_many_failures",))
        self._play(
            ("code_wrong", entry_prompt(ENTRIES[State.CODE_CHECK], self._keys)),
            then=self._wait_key,
        )

    # --- create / modify -------------------------------------------------------------

    def _enter_new_code(self, modifying: bool) -> None:
        self._enter(State.CODE_ENTRY, NewCode(modifying=modifying))

    def _new_code(self, call: _Call, entry: Entry, code: str) -> None:
        refusal = self._service.quick_refusal(code)
        if refusal is not None:
            return self._refuse_new_code(call, entry, refusal)
        is_current = self._service.current_code_matcher(code)
        if is_current is None:  # no code yet: nothing to compare with
            return self._confirm_new_code(call, code)

        def then(same: bool | None, ours: bool) -> None:
            if not ours:
                return  # hung up meanwhile: nothing was changed
            if same is None:
                raise RuntimeError("the comparison with the current code failed")
            if same:
                return self._refuse_new_code(call, entry, Refusal.PREVIOUS)
            self._confirm_new_code(call, code)

        self._off_loop(call, is_current, then)

    def _refuse_new_code(self, call: _Call, entry: Entry, refusal: Refusal) -> None:
        LOGGER.info("new code refused: %s", refusal.value)
        said = "code_is_current" if refusal is Refusal.PREVIOUS else "code_trivial"
        self._bad_entry(call, entry, said)

    def _confirm_new_code(self, call: _Call, code: str) -> None:
        flow = call.flow
        assert isinstance(flow, NewCode)
        flow.pending = code
        call.state = State.CODE_CONFIRM
        call.replays = 0
        self._notify({"type": "menu", "state": str(State.CODE_CONFIRM)})
        readback: tuple[PromptRef, ...] = tuple(SpokenDigit(d) for d in code)
        self._play(
            ("code_you_entered", *readback, *self._menu_prompts(State.CODE_CONFIRM)),
            then=self._wait_key,
        )

    def _keep_code(self, call: _Call) -> None:
        flow = call.flow
        assert isinstance(flow, NewCode)
        code, flow.pending = flow.pending, ""
        service = self._service
        hashed: list[NewHash] = []

        def work() -> bool:
            hashed.append(service.hash_new_code(code))
            return True

        def then(ok: bool | None, ours: bool) -> None:
            if ok is None or not hashed:
                if ours:
                    raise RuntimeError("hashing the new code failed")
                return
            # Kept even if the handset went on-hook meanwhile: "keep" was pressed.
            action = service.store_code(hashed[0], "handset")  # durable before the prompt
            self._notify({"type": "code", "action": action, "origin": "handset"})
            if ours:
                self._announce(("code_saved",), then=State.CODE_MENU)

        self._off_loop(call, work, then)

    def _retry_code(self, call: _Call) -> None:
        flow = call.flow
        assert isinstance(flow, NewCode)
        self._enter_new_code(modifying=flow.modifying)

    def _toggle_protection(self, call: _Call) -> None:
        on = not self._service.status().protection
        self._service.set_protection(on, "handset")
        self._notify({"type": "protection", "state": "on" if on else "off"})
        self._announce(("protection_on" if on else "protection_off",), then=State.CODE_MENU)

    # --- listening (DESIGN §7.3) ---------------------------------------------------------

    def _listen(self, call: _Call) -> None:
        new, saved = self._mailbox.counts()
        said = spoken.summary(new, saved, self._config.language)
        playlist = self._mailbox.playlist()
        if not playlist:
            return self._announce(said, then=State.MAIN_MENU)
        call.flow = Listening(playlist)
        call.state = State.LISTENING
        call.replays = 0
        self._notify({"type": "menu", "state": str(State.LISTENING)})
        self._message(call, before=said)

    def _message(
        self,
        call: _Call,
        before: tuple[PromptRef, ...] = (),
        *,
        envelope: bool = True,
        offset_s: float = 0.0,
    ) -> None:
        """Play the message in hand (its envelope first), then its menu; skip a lost one."""
        listening = call.flow
        assert isinstance(listening, Listening)
        listening.started_at = None
        while listening.index < len(listening.playlist):
            if self._mailbox.playable(listening.current):
                break
            before = (*before, "message_unavailable")  # vanished or corrupt: audited
            listening.playlist.pop(listening.index)
        else:
            return self._announce(
                (*before, *spoken.no_more_new(self._config.language)), then=State.MAIN_MENU
            )
        said = before
        if envelope:
            said = (*said, *self._envelope(listening.current))
        listening.offset_s = offset_s
        if said:
            self._play(said, then=self._message_audio)
        else:
            self._message_audio()

    def _envelope(self, message_id: str) -> tuple[PromptRef, ...]:
        """When the message came and from whom; the caller's number is never shown."""
        received, caller, _ = self._mailbox.envelope(message_id)
        said = spoken.envelope(
            received,
            caller,
            self._config.mailbox.timezone,
            self._config.language,
            self._wall_clock(),
        )
        if "envelope_from" not in said:
            return said
        cut = said.index("envelope_from") + 1
        number = said[cut:]
        return (*said[:cut], MaskedPrompt("caller_number", number)) if number else said

    def _message_audio(self) -> None:
        call = self._require_call()
        listening = call.flow
        assert isinstance(listening, Listening)
        listening.started_at = self._clock()
        message = MessageAudio(listening.current, listening.offset_s)
        self._play((message,), then=self._message_heard)

    def _message_heard(self) -> None:
        call = self._require_call()
        listening = call.flow
        assert isinstance(listening, Listening)
        listening.started_at = None
        self._mailbox.mark_saved(listening.current)  # heard: a new message becomes saved
        self._prompt(State.LISTENING)

    def _seek(self, call: _Call, seconds: float) -> None:
        listening = call.flow
        assert isinstance(listening, Listening) and listening.started_at is not None
        position = listening.offset_s + self._clock() - listening.started_at + seconds
        _, _, length = self._mailbox.envelope(listening.current)
        if position >= length:
            return self._message_heard()
        self._message(call, envelope=False, offset_s=max(0.0, position))

    def _after_message(self, call: _Call, said: tuple[PromptRef, ...]) -> None:
        listening = call.flow
        assert isinstance(listening, Listening)
        if listening.index >= len(listening.playlist):
            no_more = spoken.no_more_new(self._config.language)
            return self._announce((*said, *no_more), then=State.MAIN_MENU)
        self._message(call, before=said)

    def _delete_message(self, call: _Call) -> None:
        listening = call.flow
        assert isinstance(listening, Listening)
        self._mailbox.delete(listening.playlist.pop(listening.index))
        self._after_message(call, ("message_deleted",))

    def _keep_message(self, call: _Call) -> None:
        self._save_and_next(call, ("message_kept",))

    def _next_message(self, call: _Call) -> None:
        self._save_and_next(call, ())  # skipped: saved too (DESIGN §7.3)

    def _save_and_next(self, call: _Call, said: tuple[PromptRef, ...]) -> None:
        listening = call.flow
        assert isinstance(listening, Listening)
        self._mailbox.mark_saved(listening.current)
        listening.index += 1
        self._after_message(call, said)

    # --- the greeting (DESIGN §7.4) -------------------------------------------------------

    def _record_greeting(self, call: _Call) -> None:
        call.flow = GreetingRecording()
        call.state = State.GREETING_RECORD
        self._notify({"type": "menu", "state": str(State.GREETING_RECORD)})
        finish = ComposedPrompt(
            "greeting_record_prompt",
            (
                ("greeting_record_after_beep",),
                ("say_end_greeting", PRESS, key_fragment(self._keys.end_recording)),
            ),
        )
        self._play((finish, "beep"), then=self._start_greeting_recording)

    def _start_greeting_recording(self) -> None:
        call = self._require_call()
        flow = call.flow
        assert isinstance(flow, GreetingRecording)
        flow.recording = True
        box = self._config.mailbox
        self._out.append(
            StartRecording(
                kind="greeting",
                max_s=box.greeting_max_s,
                silence_s=box.max_silence_s,
                min_s=GREETING_MIN_S,
                party=call.party,
            )
        )

    def _greeting_recorded(self, call: _Call, ended: RecordingEnded) -> None:
        assert isinstance(call.flow, GreetingRecording)
        call.flow.recording = False
        if not ended.kept:
            return self._announce(("greeting_not_recorded",), then=State.GREETING_MENU)
        call.state = State.GREETING_CONFIRM
        call.replays = 0
        self._notify({"type": "menu", "state": str(State.GREETING_CONFIRM)})
        menu = MENUS[State.GREETING_CONFIRM]
        facts = self.facts()
        self._play(
            (*variant(menu, facts).intro, PendingGreeting(), menu_prompt(menu, self._keys, facts)),
            then=self._wait_key,
        )

    def _keep_greeting(self, call: _Call) -> None:
        said = "greeting_saved" if self._mailbox.keep_greeting() else "greeting_not_recorded"
        self._announce((said,), then=State.GREETING_MENU)

    def _standard_greeting(self, call: _Call) -> None:
        self._mailbox.clear_greeting()
        self._announce(("greeting_standard_restored",), then=State.GREETING_MENU)

    # --- leaving a message (DESIGN §7.1) ------------------------------------------------

    def _greeting(self) -> tuple[PromptRef, ...]:
        if Cond.OWN_GREETING in self.facts():
            return (OwnGreeting(),)
        number = self._config.line_number
        if number:
            spoken = tuple(f"digit_{d}" for d in number if d.isdigit())
            return ("greeting_number", *spoken, "greeting_leave")
        return ("greeting_standard",)

    def _greet(self, caller: str | None) -> None:
        call = self._require_call()
        call.state = State.GREETING
        call.flow = Message(caller=caller)
        self._notify({"type": "menu", "state": str(State.GREETING)})
        if self._mailbox.is_full():
            # Full: the greeting, "la messagerie ... est pleine", and the call ends, no beep.
            self._play((*self._greeting(), "mailbox_full"), then=self._after_finish)
        else:
            self._play(self._greeting(), then=self._beep)

    def _skip_to_beep(self, call: _Call) -> None:
        if self._mailbox.is_full():
            return self._finish(("mailbox_full",))
        self._beep()

    def _ask_code(self, call: _Call) -> None:
        self._enter_code_check()

    def _beep(self, before: tuple[PromptRef, ...] = ()) -> None:
        call = self._require_call()
        if not isinstance(call.flow, Message):
            call.flow = Message()
        if self._mailbox.is_full():
            return self._finish((*before, "mailbox_full"))
        call.state = State.RECORDING
        self._notify({"type": "menu", "state": str(State.RECORDING)})
        self._play((*before, "beep"), then=self._record)

    def _record(self) -> None:
        call = self._require_call()
        message = call.flow
        assert isinstance(message, Message)
        message.recording = True
        box = self._config.mailbox
        self._out.append(
            StartRecording(
                kind="message",
                max_s=box.max_message_s,
                silence_s=box.max_silence_s,
                min_s=box.min_message_s,
                caller=message.caller,
            )
        )

    def _end_recording(self, call: _Call) -> None:
        message = call.flow
        assert isinstance(message, Message | GreetingRecording)
        if message.recording:
            self._out.append(StopRecording("key"))  # RecordingEnded follows
        elif isinstance(message, GreetingRecording):
            self._announce(("greeting_not_recorded",), then=State.GREETING_MENU)
        else:
            self._finish(("goodbye",))  # '#' during the beep: nothing was said

    def _on_recording_ended(self, ended: RecordingEnded) -> None:
        call = self._call
        if call is not None and call.state is State.GREETING_RECORD:
            return self._greeting_recorded(call, ended)
        if call is None or call.state is not State.RECORDING:
            return  # the caller hung up: the message is kept (or not) all the same
        assert isinstance(call.flow, Message)
        call.flow.recording = False
        if ended.reason == "max_length":
            last: tuple[PromptRef, ...] = ("message_max_length", "goodbye")
        elif ended.kept:
            last = ("message_recorded", "goodbye")
        else:
            last = ("goodbye",)
        self._finish(last)

    # --- menus, prompts and timers ---------------------------------------------------

    def _menu_prompts(self, state: State) -> tuple[PromptRef, ...]:
        """What a menu or an entry says (its informative intro, then its composed prompt)."""
        if state in ENTRIES:
            return (entry_prompt(ENTRIES[state], self._keys),)
        menu = MENUS[state]
        facts = self.facts()
        intro: tuple[PromptRef, ...] = variant(menu, facts).intro
        if state is State.GREETING_MENU:  # "Votre annonce": the greeting a caller hears
            intro = (*intro, *self._greeting())
        return (*intro, menu_prompt(menu, self._keys, facts))

    def _enter(self, state: State, flow: Flow | None = None) -> None:
        """Enter a menu or an entry (an entry gets a fresh context unless one is given)."""
        if state in ENTRIES:
            call = self._require_call()
            call.flow = flow or (CodeCheck() if state is State.CODE_CHECK else NewCode(False))
        self._enter_menu(state)

    def _enter_menu(self, state: State) -> None:
        call = self._require_call()
        if state in MENUS:
            call.flow = None  # leaving an entry or the read-back drops its digits
        call.state = state
        call.replays = 0
        self._notify({"type": "menu", "state": str(state)})
        self._prompt(state)

    def _prompt(self, state: State) -> None:
        self._play(self._menu_prompts(state), then=self._wait_key)

    def _wait_key(self) -> None:
        self._start_timer(MENU_TIMER, self._timeouts.menu)

    def _announce(self, prompts: tuple[PromptRef, ...], then: State) -> None:
        """Play an informative prompt followed by the menu ``then``; a key acts on that menu."""
        call = self._require_call()
        if then is not call.state:
            call.flow = None  # e.g. the code was stored: the read-back context is done
        call.state = then
        call.replays = 0
        self._notify({"type": "menu", "state": str(then)})
        self._play((*prompts, *self._menu_prompts(then)), then=self._wait_key)

    def _finish(self, prompts: tuple[PromptRef, ...]) -> None:
        """Play the last prompts, then end the call (hang up remote, busy tone on the handset)."""
        call = self._require_call()
        call.state = State.ENDING
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
        call.state = State.DEAD
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
        if name in (CALL_TIMER, CODE_TIMER):
            self._call_limit(call, name)
        elif name == DIAL_TIMER and call.state is State.DIALING:
            self._out.append(StopAudio())
            self._dead("congestion")
        elif name == MENU_TIMER and (call.state in MENUS or call.state in ENTRIES):
            call.replays += 1
            if isinstance(call.flow, CodeCheck | NewCode):
                call.flow.keys = ""
            if call.replays > self._timeouts.menu_replays:
                self._finish(("goodbye",))
            else:
                self._prompt(call.state)

    def _call_limit(self, call: _Call, name: str) -> None:
        """The call (or its code check) lasted too long: goodbye, then hang up or busy tone."""
        if call.state in (State.ENDING, State.DEAD, State.TAKEN, State.RINGING):
            return  # already ending, or not the service's call
        LOGGER.info("%s call ended by the %s time limit", call.party, name)
        self._out.append(StopAudio())
        if isinstance(call.flow, Message) and call.flow.recording:
            call.flow.recording = False
            self._out.append(StopRecording("hangup"))  # what was said is kept
        call.flow = None
        self._finish(("goodbye",))

    def _start_timer(self, name: str, seconds: float) -> None:
        self._deadlines[name] = self._clock() + seconds
        self._out.append(StartTimer(name, seconds))

    def _cancel_timer(self, name: str) -> None:
        if self._deadlines.pop(name, None) is not None:
            self._out.append(CancelTimer(name))

    def _notify(self, event: Event) -> None:
        self._out.append(Notify(event))

    def _require_call(self) -> _Call:
        if self._call is None:
            raise RuntimeError("no call in progress")
        return self._call
