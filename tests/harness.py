"""A pure test line for the IVR: lift, dial, press keys, hear prompts, wait — on a fake clock.

Playback finishes "instantly" unless a test asks to hear it partly (barge-in);
timers fire when the fake clock passes them, as the daemon's loop would.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gatewayd.events import (
    Action,
    CancelTimer,
    CheckCode,
    CodeChecked,
    ComposedPrompt,
    Digit,
    Hangup,
    LineEvent,
    Notify,
    OffHook,
    OnHook,
    Party,
    Play,
    PlaybackDone,
    PlayTone,
    RemoteAnswered,
    RemoteHangup,
    Ring,
    SpokenDigit,
    StartTimer,
    StopAudio,
    TimerExpired,
)
from gatewayd.eventtypes import problems
from gatewayd.voicemail.config import VoicemailConfig
from gatewayd.voicemail.ivr import Ivr
from gatewayd.voicemail.policy import SecretCodeService


def run_checks(ivr: Ivr, out: list[Action]) -> list[Action]:
    """``out`` with every ``CheckCode`` carried out inline, its ``CodeChecked`` fed back at once.

    The daemon compares in a worker thread; here the comparison runs at once, so a
    batch reads as before the split: the keys, the check, the verdict's actions.
    """
    done: list[Action] = []
    todo = list(out)
    while todo:
        action = todo.pop(0)
        done.append(action)
        if isinstance(action, CheckCode):
            ok: bool | None
            try:
                ok = action.compare()
            except Exception:  # as the daemon does: the verdict of a failed comparison is None
                ok = None
            todo[:0] = ivr.handle(CodeChecked(action.check_id, ok))
    return done


class FakeClock:
    """A monotonic clock moved by the test."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Phone:
    """Drives an Ivr like a subscriber (handset) or a remote caller would."""

    service: SecretCodeService
    config: VoicemailConfig
    clock: FakeClock
    ivr: Ivr = field(init=False)
    actions: list[Action] = field(default_factory=list)
    heard: list[str] = field(default_factory=list)  # prompt ids and "tone:NAME", in order
    spoken: list[str] = field(default_factory=list)  # the same, composed menus as fragments
    events: list[dict[str, object]] = field(default_factory=list)
    hung_up: bool = False
    timers: dict[str, float] = field(default_factory=dict)
    playing: Play | None = None
    auto_finish: bool = True  # prompts play to their end unless a test keys over them
    #: Keep the scrypt work the daemon would run in a worker until ``release_checks``.
    hold_checks: bool = False
    held: list[CheckCode] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.ivr = Ivr(self.service, self.config, self.clock)

    # --- what the subscriber does -----------------------------------------------
    def send(self, event: LineEvent) -> list[Action]:
        out = self.ivr.handle(event)
        if self.hold_checks:
            self.held.extend(a for a in out if isinstance(a, CheckCode))
        else:
            out = run_checks(self.ivr, out)
        self.actions.extend(out)
        for action in out:
            self._carry_out(action)
        # Like a real player: the whole batch is carried out before the prompt can end.
        if self.auto_finish and self.playing is not None:
            self.finish_prompt()
        return out

    def release_checks(self) -> None:
        """The held worker jobs finish now, in order: their verdicts reach the IVR."""
        held, self.held = self.held, []
        for action in held:
            hold, self.hold_checks = self.hold_checks, False
            try:
                self.send(CodeChecked(action.check_id, action.compare()))
            finally:
                self.hold_checks = hold

    def lift(self) -> None:
        self.send(OffHook())

    def hang_up(self) -> None:
        self.send(OnHook())

    def call_in(self) -> None:
        """A trunk call is answered by the box: the greeting plays (to its end, by default)."""
        self.send(RemoteAnswered())

    def ring(self, times: int = 1, caller: str | None = None) -> None:
        for _ in range(times):
            self.send(Ring(caller))

    def call_for_code(self) -> None:
        """A caller is answered and keys ``*`` during the greeting; what they heard is forgotten.

        Then ``hear()`` starts at the code request, as it did before the mailbox answered calls.
        """
        auto, self.auto_finish = self.auto_finish, False
        self.send(RemoteAnswered())
        self.send(Digit("*", "remote"))
        self.auto_finish = auto
        greetings = [i for i, p in enumerate(self.heard) if p.startswith("greeting_")]
        assert greetings, self.heard
        del self.heard[greetings[-1]]
        if self.auto_finish and self.playing is not None:
            self.finish_prompt()

    def remote_hang_up(self) -> None:
        self.send(RemoteHangup())

    def press(self, keys: str, party: Party | None = None) -> None:
        who: Party = party or self.ivr.party or "handset"
        for key in keys:
            self.send(Digit(key, who))

    def dial(self, number: str) -> None:
        self.press(number, "handset")

    def wait(self, seconds: float) -> None:
        """Let time pass; due timers fire in deadline order."""
        end = self.clock.now + seconds
        while True:
            due = [(t, n) for n, t in self.timers.items() if t <= end]
            if not due:
                break
            deadline, name = min(due)
            self.clock.now = max(self.clock.now, deadline)
            del self.timers[name]
            self.send(TimerExpired(name))
        self.clock.now = end

    def finish_prompt(self) -> None:
        """The prompt now playing plays to its end."""
        play, self.playing = self.playing, None
        if play is not None:
            self.send(PlaybackDone(play.play_id))

    # --- what the subscriber hears ----------------------------------------------
    def _carry_out(self, action: Action) -> None:
        match action:
            case Play(prompts=prompts):
                self.playing = action
                self.heard.extend(
                    p.prompt_id() if isinstance(p, SpokenDigit) else str(p) for p in prompts
                )
                self.spoken.extend(
                    fragment
                    for p in prompts
                    for fragment in (
                        p.fragments
                        if isinstance(p, ComposedPrompt)
                        else (p.prompt_id() if isinstance(p, SpokenDigit) else str(p),)
                    )
                )
            case PlayTone(name=name):
                self.heard.append(f"tone:{name}")
            case StopAudio():
                self.playing = None
            case Hangup():
                self.hung_up = True
            case StartTimer(name=name, seconds=seconds):
                self.timers[name] = self.clock.now + seconds
            case CancelTimer(name=name):
                self.timers.pop(name, None)
            case Notify(event=event):
                assert problems(event) == [], problems(event)  # as eventtypes declares it
                self.events.append(dict(event))

    def hear(self) -> list[str]:
        """What was heard since the last call to hear()."""
        heard, self.heard = self.heard, []
        return heard

    def events_of(self, kind: str) -> list[dict[str, object]]:
        return [e for e in self.events if e.get("type") == kind]
