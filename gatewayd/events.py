"""Line events (drivers -> IVR) and actions (IVR -> audio and line control).

Events and actions are plain frozen dataclasses so the IVR engine stays pure:
it is fed events and a clock and returns actions, with no I/O of its own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from gatewayd.eventtypes import Event

Party = Literal["handset", "remote"]

#: Keys a DTMF pad can send (A-D come from MT8870-class decoders and modems).
DTMF_KEYS = frozenset("0123456789*#ABCD")


# --- line events -----------------------------------------------------------


@dataclass(frozen=True)
class OffHook:
    """The box's own handset was lifted."""


@dataclass(frozen=True)
class OnHook:
    """The box's own handset was hung up (a break longer than the hang-up threshold)."""


@dataclass(frozen=True)
class Flash:
    """A register-recall break on the handset line."""


@dataclass(frozen=True)
class Digit:
    """One DTMF (or dial-pulse) key from a party."""

    key: str
    party: Party = "handset"

    def __repr__(self) -> str:  # keys may be code digits: never show them in logs
        return f"Digit(key='?', party={self.party!r})"


#: ``Ring.caller`` when the network says the caller's number is private or withheld.
WITHHELD = "withheld"


@dataclass(frozen=True)
class Ring:
    """One ring of an incoming trunk call, before it is answered (emitted once per ring).

    ``caller`` is the caller ID once the trunk knows it (a modem learns it between the
    first and the second ring), :data:`WITHHELD` when the network withholds it, None when
    unknown. Never shown above debug level.
    """

    caller: str | None = None

    def __repr__(self) -> str:  # the caller's number stays out of logs
        return f"Ring(caller={'?' if self.caller else None!r})"


@dataclass(frozen=True)
class RemoteAnswered:
    """The trunk answered the call (after ``Answer``): a remote session starts."""


@dataclass(frozen=True)
class RemoteHangup:
    """The remote party hung up (also while it was still ringing, before the answer)."""


@dataclass(frozen=True)
class LineFault:
    """The line hardware failed (device unplugged, serial error)."""

    reason: str


@dataclass(frozen=True)
class TimerExpired:
    """A timer the IVR asked for has expired."""

    name: str


@dataclass(frozen=True)
class RecordingEnded:
    """A recording started by ``StartRecording`` ended (by ``StopRecording`` or by itself).

    ``reason``: ``key``, ``hangup``, ``silence``, ``max_length``, ``error``; ``kept`` says
    whether it was long enough to be stored; ``seconds`` is its length after trimming.
    """

    reason: str
    kept: bool
    seconds: float = 0.0


@dataclass(frozen=True)
class PlaybackDone:
    """The prompt sequence started by ``Play(play_id=...)`` finished playing (not stopped)."""

    play_id: int


@dataclass(frozen=True)
class CodeChecked:
    """The comparison asked for by ``CheckCode(check_id=...)`` is done: right code or not.

    ``ok`` is None when the comparison itself failed (an error): the try is counted
    already and its cool-down armed, and the call ends as after any error.
    """

    check_id: int
    ok: bool | None


LineEvent = (
    OffHook
    | OnHook
    | Flash
    | Digit
    | Ring
    | RemoteAnswered
    | RemoteHangup
    | LineFault
    | TimerExpired
    | PlaybackDone
    | RecordingEnded
    | CodeChecked
)


# --- actions ---------------------------------------------------------------


@dataclass(frozen=True)
class SpokenDigit:
    """A prompt that speaks one digit of a code (read-back).

    Its repr and its event form never show the digit; only the audio player
    resolves it to ``digit_N``.
    """

    digit: str = field(repr=False)

    def __str__(self) -> str:
        return "digit_masked"

    def prompt_id(self) -> str:
        """The real prompt id, for the audio player only."""
        return f"digit_{self.digit}"


@dataclass(frozen=True)
class ComposedPrompt:
    """A prompt built from fragments: menus say their options with the profile's keys.

    ``sentences`` are tuples of fragment prompt ids (``("say_listen", "press",
    "digit_1")``), played back to back; ``id`` names the whole (``main_menu``) in
    events and tests. Menu keys are not secret: events show the fragments.
    """

    id: str
    sentences: tuple[tuple[str, ...], ...]

    def __str__(self) -> str:
        return self.id

    @property
    def fragments(self) -> tuple[str, ...]:
        """Every fragment id, in playing order."""
        return tuple(part for sentence in self.sentences for part in sentence)


@dataclass(frozen=True)
class OwnGreeting:
    """The subscriber's own recorded greeting (played from the mailbox, not the catalogue)."""

    def __str__(self) -> str:
        return "greeting_own"


@dataclass(frozen=True)
class PendingGreeting:
    """The greeting just recorded, played back before the subscriber keeps it."""

    def __str__(self) -> str:
        return "greeting_new_audio"


@dataclass(frozen=True)
class MessageAudio:
    """A stored message's audio from ``start_s`` seconds (played from the mailbox)."""

    message_id: str
    start_s: float = 0.0

    def __str__(self) -> str:
        return "message_audio"


@dataclass(frozen=True)
class MaskedPrompt:
    """Fragments played back to back whose ids must not be shown (a caller's number).

    Events, logs and the demo show only ``label``; the player resolves the fragments.
    """

    label: str
    fragments: tuple[str, ...] = field(repr=False)

    def __str__(self) -> str:
        return self.label


PromptRef = (
    str | SpokenDigit | ComposedPrompt | OwnGreeting | PendingGreeting | MessageAudio | MaskedPrompt
)


@dataclass(frozen=True)
class Play:
    """Play prompts back to back; ``PlaybackDone(play_id)`` is fed back when they end."""

    prompts: tuple[PromptRef, ...]
    play_id: int


@dataclass(frozen=True)
class PlayTone:
    """Play a tone of the profile's tone plan (``dial``, ``busy``, ``congestion``, ...)."""

    name: str


@dataclass(frozen=True)
class StopAudio:
    """Stop any prompt or tone at once (barge-in, hang-up)."""


@dataclass(frozen=True)
class Hangup:
    """End the remote call (a handset call ends by going on-hook)."""


@dataclass(frozen=True)
class Answer:
    """Answer the ringing trunk call; the trunk reports ``RemoteAnswered`` when connected."""


@dataclass(frozen=True)
class RingStation:
    """Ring the subscriber's handset (``on``) or stop it (no-op where it rings by itself)."""

    on: bool


@dataclass(frozen=True)
class StartRecording:
    """Record the trunk caller's audio (a message, or the subscriber's greeting).

    The recorder ends by itself after ``silence_s`` of silence or ``max_s``, and feeds
    ``RecordingEnded``; shorter than ``min_s`` after trimming is not kept.
    """

    kind: Literal["message", "greeting"]
    max_s: float
    silence_s: float
    min_s: float
    caller: str | None = field(default=None, repr=False)
    #: Whose audio: the trunk caller's (a message, a remote greeting) or the handset's.
    party: Party = "remote"


@dataclass(frozen=True)
class StopRecording:
    """End the recording in progress (``#``, hang-up); ``RecordingEnded`` follows."""

    reason: Literal["key", "hangup"]


@dataclass(frozen=True)
class StartTimer:
    """(Re)start the named timer; ``TimerExpired(name)`` is fed back when it fires."""

    name: str
    seconds: float


@dataclass(frozen=True)
class CancelTimer:
    """Cancel the named timer, if running."""

    name: str


@dataclass(frozen=True)
class Notify:
    """An event for the ``events`` stream (control socket, console); never holds digits."""

    event: Event


@dataclass(frozen=True)
class CheckCode:
    """Run ``compare`` (scrypt: slow on purpose) off the event loop, then feed ``CodeChecked``.

    A code check (the try is already counted on disk when this is returned, DESIGN
    §2.3), a new code compared with the current one, or a new code hashed before it is
    stored. ``compare`` holds the keyed code in its closure, so it never shows in a repr.
    """

    check_id: int
    compare: Callable[[], bool] = field(repr=False, compare=False)


Action = (
    Play
    | PlayTone
    | StopAudio
    | Hangup
    | Answer
    | RingStation
    | StartRecording
    | StopRecording
    | StartTimer
    | CancelTimer
    | Notify
    | CheckCode
)
