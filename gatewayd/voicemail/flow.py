"""The 3103 call flow as data (DESIGN.md §1): states, menus, their options and prompts.

This module declares *what* the service does; :mod:`gatewayd.voicemail.ivr` is
the small engine that runs it and :mod:`gatewayd.voicemail.flowchart` draws it
(``gatewayd menu``). Both read the same tables, so the drawing is the flow.

A menu declares what it says (:class:`Variant`, chosen by a :class:`Cond`), its
options (a key field of :class:`~gatewayd.voicemail.config.Keys` leading to a
state or an engine action, optionally only when a condition holds), where
``*`` leads, and what a silence does. An entry (:class:`Entry`) collects digits
ended by the end key and hands them to an engine action.

Menu prompts are composed: the option's phrase ("Pour écouter vos messages"),
"tapez", then the key the profile gives it, spoken. A profile that changes
``[voicemail.keys]`` changes what the box says, with no WAV to re-record.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from gatewayd.events import ComposedPrompt

if TYPE_CHECKING:  # config.py reads MENUS to check a profile's keys: no import back at run time
    from gatewayd.voicemail.config import Keys


class State(StrEnum):
    """Where a call is. Menus and entries are declared below; the engine owns the rest."""

    IDLE = "idle"
    DIALING = "dialing"
    #: Congestion or busy tone until the handset goes on-hook.
    DEAD = "dead"
    #: Entering the code to get in (remote, or a protected fixed line).
    CODE_CHECK = "code_check"
    MAIN_MENU = "main_menu"
    PERSONALISE_MENU = "personalise_menu"
    CODE_MENU = "code_menu"
    #: Keying a new code.
    CODE_ENTRY = "code_entry"
    #: Read-back, then keep it or key another.
    CODE_CONFIRM = "code_confirm"
    #: A last prompt plays, then the call ends.
    ENDING = "ending"
    #: A trunk call rings the handset; the box answers after ``answer_after_rings``.
    RINGING = "ringing"
    #: The subscriber lifted the handset during the rings: the call is theirs, the box is out.
    TAKEN = "taken"
    #: The box answered: the greeting plays (``#`` to the beep, ``*`` for the code).
    GREETING = "greeting"
    #: The beep, then the caller's message is recorded.
    RECORDING = "recording"
    #: A message plays (its envelope, its audio), then what to do with it.
    LISTENING = "listening"
    #: "Votre annonce": the current greeting, record a new one, back to the standard one.
    GREETING_MENU = "greeting_menu"
    #: The beep, then the subscriber's new greeting is recorded.
    GREETING_RECORD = "greeting_record"
    #: The new greeting is played back: keep it, or record it again.
    GREETING_CONFIRM = "greeting_confirm"


class Cond(StrEnum):
    """Conditions an option or a variant may depend on (the value is how it reads)."""

    MAILBOX = "mailbox exists"
    LOCAL = "own handset only"
    CODE_SET = "a code is set"
    NO_CODE = "no code yet"
    OWN_GREETING = "own greeting recorded"
    #: Only a message that is playing can be moved in (back/forward 5 s).
    MESSAGE_PLAYING = "the message is playing"


class Do(StrEnum):
    """Engine actions an option or an entry may run (the value is how it reads)."""

    LISTEN = "listen to messages"
    CREATE_CODE = "create the code"
    MODIFY_CODE = "modify the code"
    TOGGLE_PROTECTION = "turn the fixed-line code request on/off"
    KEEP_CODE = "store the code"
    RETRY_CODE = "key another code"
    CHECK_CODE = "check the code"
    NEW_CODE = "read the new code back"
    REPLAY = "hear the message again"
    DELETE = "delete the message"
    KEEP = "keep the message, next"
    NEXT = "next message"
    REWIND = "back 5 s"
    FAST_FORWARD = "forward 5 s"
    RECORD_GREETING = "record a greeting"
    STANDARD_GREETING = "back to the standard greeting"
    KEEP_GREETING = "keep the new greeting"
    RETRY_GREETING = "record the greeting again"
    BEEP = "skip to the beep"
    ASK_CODE = "ask for the code"
    END_RECORDING = "end the message"


class Timeout(StrEnum):
    """What a menu does when no key comes in ``timeouts.menu`` seconds."""

    REPLAY = "replayed, then goodbye"
    #: No menu timer: what plays (greeting) or records leads on by itself.
    NONE = "goes on when the prompt or the recording ends"


class OtherKeys(StrEnum):
    """What a key that selects no option does."""

    INVALID = "invalid-key prompt, menu again"
    #: Ignored without a sound and without cutting the prompt (garbage during a greeting).
    IGNORED = "ignored"


@dataclass(frozen=True)
class Option:
    """One key of a menu: the phrase announcing it, and where it leads or what it does.

    ``when`` limits the option to a condition; when it does not hold, ``refused``
    is played (the option is still announced), or, without ``refused``, the option
    is neither announced nor accepted.
    """

    key: str
    say: str | None
    go: State | None = None
    do: Do | None = None
    when: Cond | None = None
    refused: str | None = None

    def __post_init__(self) -> None:
        if (self.go is None) == (self.do is None):
            raise ValueError(f"option {self.key}: give exactly one of go= or do=")


@dataclass(frozen=True)
class Variant:
    """What a menu says when ``when`` holds: informative prompts, then its composed prompt."""

    prompt_id: str
    intro: tuple[str, ...] = ()
    when: Cond | None = None


@dataclass(frozen=True)
class Menu:
    """A menu: what it says, its options, where ``*`` leads, and what a silence does."""

    state: State
    variants: tuple[Variant, ...]
    options: tuple[Option, ...]
    back: State | None
    #: The phrase announcing the back key, when the menu announces it.
    back_say: str | None = None
    on_timeout: Timeout = Timeout.REPLAY
    #: False for key tables that say nothing of their own (greeting, recording): no back key.
    announced: bool = True
    other_keys: OtherKeys = OtherKeys.INVALID


@dataclass(frozen=True)
class Entry:
    """Digits ended by the end key: ``lead`` + "followed by" + the end key, then ``submit``.

    ``back`` is where ``*`` leads (None: the entry is asked again).
    """

    state: State
    prompt_id: str
    lead: str
    followed_by: str
    submit: Do
    back: State | None
    on_timeout: Timeout = Timeout.REPLAY


#: Fragments that join an option's phrase to its key, and the spoken keys.
PRESS = "press"
FOLLOWED_BY_ONE = "followed_by"  # "suivi de la touche" (one code)
FOLLOWED_BY_MANY = "followed_by_many"  # "suivis de la touche" (the digits)
KEY_FRAGMENTS = {
    **{str(d): f"digit_{d}" for d in range(10)},
    "*": "key_star",
    "#": "key_hash",
    **{k: f"key_{k.lower()}" for k in "ABCD"},
}


def _recording(state: State) -> Menu:
    """A recording after the beep (a message, a greeting): only the end key acts."""
    return Menu(
        state,
        variants=(Variant("beep"),),
        options=(Option("end_recording", None, do=Do.END_RECORDING),),
        back=None,
        on_timeout=Timeout.NONE,
        announced=False,
        other_keys=OtherKeys.IGNORED,
    )


MENUS: dict[State, Menu] = {
    State.MAIN_MENU: Menu(
        State.MAIN_MENU,
        variants=(Variant("main_menu"),),
        options=(
            Option("main_listen", "say_listen", do=Do.LISTEN, when=Cond.MAILBOX),
            Option("main_personalise", "say_personalise", go=State.PERSONALISE_MENU),
        ),
        back=None,
    ),
    State.PERSONALISE_MENU: Menu(
        State.PERSONALISE_MENU,
        variants=(Variant("personalise_menu"),),
        options=(
            Option("personalise_greeting", "say_greeting", go=State.GREETING_MENU),
            Option(
                "personalise_code",
                "say_code",
                go=State.CODE_MENU,
                when=Cond.LOCAL,
                refused="code_only_fixed_line",
            ),
        ),
        back=State.MAIN_MENU,
        back_say="say_back",
    ),
    State.CODE_MENU: Menu(
        State.CODE_MENU,
        variants=(
            Variant("code_menu_new", intro=("code_none_yet",), when=Cond.NO_CODE),
            Variant("code_menu_set", intro=("code_active",), when=Cond.CODE_SET),
        ),
        options=(
            Option("code_create", "say_code_create", do=Do.CREATE_CODE, when=Cond.NO_CODE),
            Option("code_modify", "say_code_modify", do=Do.MODIFY_CODE, when=Cond.CODE_SET),
            Option(
                "code_protection", "say_protection", do=Do.TOGGLE_PROTECTION, when=Cond.CODE_SET
            ),
        ),
        back=State.PERSONALISE_MENU,
    ),
    State.CODE_CONFIRM: Menu(
        State.CODE_CONFIRM,
        variants=(Variant("code_confirm_menu"),),
        options=(
            Option("confirm_yes", "say_confirm_yes", do=Do.KEEP_CODE),
            Option("confirm_retry", "say_confirm_retry", do=Do.RETRY_CODE),
        ),
        back=State.CODE_MENU,
    ),
    State.LISTENING: Menu(
        State.LISTENING,
        variants=(Variant("listen_menu"),),
        options=(
            Option("listen_replay", "say_replay", do=Do.REPLAY),
            Option("listen_delete", "say_delete", do=Do.DELETE),
            Option("listen_keep", "say_keep", do=Do.KEEP),
            Option("listen_next", "say_next", do=Do.NEXT),
            Option("listen_back", None, do=Do.REWIND, when=Cond.MESSAGE_PLAYING),
            Option("listen_forward", None, do=Do.FAST_FORWARD, when=Cond.MESSAGE_PLAYING),
        ),
        back=State.MAIN_MENU,
        back_say="say_main_menu",
    ),
    State.GREETING_MENU: Menu(
        State.GREETING_MENU,
        variants=(
            Variant("greeting_menu_own", intro=("greeting_yours",), when=Cond.OWN_GREETING),
            Variant("greeting_menu_standard", intro=("greeting_is_standard",)),
        ),
        options=(
            Option("greeting_record", "say_greeting_record", do=Do.RECORD_GREETING),
            Option(
                "greeting_default",
                "say_greeting_default",
                do=Do.STANDARD_GREETING,
                when=Cond.OWN_GREETING,
            ),
        ),
        back=State.PERSONALISE_MENU,
        back_say="say_back",
    ),
    State.GREETING_RECORD: _recording(State.GREETING_RECORD),
    State.GREETING_CONFIRM: Menu(
        State.GREETING_CONFIRM,
        variants=(Variant("greeting_confirm_menu", intro=("greeting_new",)),),
        options=(
            Option("greeting_keep", "say_greeting_keep", do=Do.KEEP_GREETING),
            Option("greeting_retry", "say_greeting_retry", do=Do.RETRY_GREETING),
        ),
        back=State.GREETING_MENU,
    ),
    State.GREETING: Menu(
        State.GREETING,
        variants=(
            Variant("greeting_own", when=Cond.OWN_GREETING),
            Variant("greeting_standard"),
        ),
        options=(
            Option("greeting_skip", None, do=Do.BEEP),
            Option("greeting_code", None, do=Do.ASK_CODE),
        ),
        back=None,
        on_timeout=Timeout.NONE,
        announced=False,
        other_keys=OtherKeys.IGNORED,
    ),
    State.RECORDING: _recording(State.RECORDING),
}

ENTRIES: dict[State, Entry] = {
    State.CODE_CHECK: Entry(
        State.CODE_CHECK,
        "code_enter",
        lead="ask_code",
        followed_by=FOLLOWED_BY_ONE,
        submit=Do.CHECK_CODE,
        back=None,
    ),
    State.CODE_ENTRY: Entry(
        State.CODE_ENTRY,
        "code_enter_new",
        lead="ask_new_code",
        followed_by=FOLLOWED_BY_MANY,
        submit=Do.NEW_CODE,
        back=State.CODE_MENU,
    ),
}

#: Where each engine action leads (what ``gatewayd menu`` draws; a test runs each one and
#: checks the engine lands there).
LEADS_TO: dict[Do, tuple[State, ...]] = {
    Do.LISTEN: (State.LISTENING, State.MAIN_MENU),
    Do.CREATE_CODE: (State.CODE_ENTRY,),
    Do.MODIFY_CODE: (State.CODE_ENTRY,),
    Do.TOGGLE_PROTECTION: (State.CODE_MENU,),
    Do.KEEP_CODE: (State.CODE_MENU,),
    Do.RETRY_CODE: (State.CODE_ENTRY,),
    Do.CHECK_CODE: (State.MAIN_MENU, State.CODE_CHECK, State.ENDING),
    Do.NEW_CODE: (State.CODE_CONFIRM, State.CODE_ENTRY, State.CODE_MENU),
    Do.REPLAY: (State.LISTENING,),
    Do.DELETE: (State.LISTENING, State.MAIN_MENU),
    Do.KEEP: (State.LISTENING, State.MAIN_MENU),
    Do.NEXT: (State.LISTENING, State.MAIN_MENU),
    Do.REWIND: (State.LISTENING,),
    Do.FAST_FORWARD: (State.LISTENING,),
    Do.RECORD_GREETING: (State.GREETING_RECORD,),
    Do.STANDARD_GREETING: (State.GREETING_MENU,),
    Do.KEEP_GREETING: (State.GREETING_MENU,),
    Do.RETRY_GREETING: (State.GREETING_RECORD,),
    Do.BEEP: (State.RECORDING, State.ENDING),
    Do.ASK_CODE: (State.CODE_CHECK, State.RECORDING, State.ENDING),
    Do.END_RECORDING: (
        State.RECORDING,
        State.GREETING_RECORD,
        State.GREETING_CONFIRM,
        State.GREETING_MENU,
        State.ENDING,
    ),
}

#: States in which keys may be code digits: events show them as "masked". The ending
#: and dead states count too, since a caller may go on keying a guess after the last try.
SECRET_STATES = frozenset({State.CODE_CHECK, State.CODE_ENTRY, State.ENDING, State.DEAD})


def key_fragment(key: str) -> str:
    """The prompt id that speaks ``key`` (``digit_1``, ``key_star``, ...)."""
    return KEY_FRAGMENTS[key]


#: Conditions that never hold together: options under them may share a key.
EXCLUSIVE_CONDS = frozenset({frozenset({Cond.CODE_SET, Cond.NO_CODE})})


def exclusive(one: Cond | None, other: Cond | None) -> bool:
    """Whether two options' conditions never hold at once (then they may share a key)."""
    return one is not None and other is not None and frozenset({one, other}) in EXCLUSIVE_CONDS


def option_applies(option: Option, facts: frozenset[Cond]) -> bool:
    """Whether the option is offered (announced or refused) under these facts."""
    return option.when is None or option.when in facts or option.refused is not None


def choose(menu: Menu, key: str, keys: Keys, facts: frozenset[Cond]) -> Option | None:
    """The option a key selects in a menu under these facts, or None (an invalid key).

    An option whose condition holds wins over one that is refused on the same key.
    """
    matching = [o for o in menu.options if getattr(keys, o.key) == key]
    for option in matching:
        if option.when is None or option.when in facts:
            return option
    for option in matching:
        if option.refused is not None:
            return option
    return None


def variant(menu: Menu, facts: frozenset[Cond]) -> Variant:
    """What the menu says under these facts."""
    for candidate in menu.variants:
        if candidate.when is None or candidate.when in facts:
            return candidate
    return menu.variants[-1]


def menu_prompt(menu: Menu, keys: Keys, facts: frozenset[Cond]) -> ComposedPrompt:
    """The menu's composed prompt: one sentence per offered option, then the back key."""
    sentences = [
        (option.say, PRESS, key_fragment(getattr(keys, option.key)))
        for option in menu.options
        if option.say is not None and option_applies(option, facts)
    ]
    if menu.back_say is not None:
        sentences.append((menu.back_say, PRESS, key_fragment(keys.back)))
    return ComposedPrompt(variant(menu, facts).prompt_id, tuple(sentences))


def entry_prompt(entry: Entry, keys: Keys) -> ComposedPrompt:
    """An entry's composed prompt: its request, "followed by the" end key."""
    return ComposedPrompt(
        entry.prompt_id, ((entry.lead, entry.followed_by, key_fragment(keys.end_entry)),)
    )


def bad_length_prompt(keys: Keys) -> ComposedPrompt:
    """The bad-length prompt: exactly 4 digits, followed by the end key."""
    return ComposedPrompt(
        "code_bad_length", (("bad_length", FOLLOWED_BY_MANY, key_fragment(keys.end_entry)),)
    )


def all_facts() -> list[frozenset[Cond]]:
    """Every consistent combination of facts (a code is set or not; local or remote; ...)."""
    combos = []
    for code in (Cond.CODE_SET, Cond.NO_CODE):
        for local in (True, False):
            for mailbox in (True, False):
                facts = {code}
                if local:
                    facts.add(Cond.LOCAL)
                if mailbox:
                    facts.add(Cond.MAILBOX)
                combos.append(frozenset(facts))
    return combos


def announcements(keys: Keys) -> dict[str, ComposedPrompt]:
    """Every composed prompt the flow can say, by id, with these keys (menus at their fullest).

    For ``play main_menu`` on the console, the prompt tests and the catalogue checks.
    """
    found: dict[str, ComposedPrompt] = {}
    for facts in all_facts():
        if Cond.LOCAL not in facts or Cond.MAILBOX not in facts:
            continue  # the own handset of a box with a mailbox hears every option
        for menu in MENUS.values():
            if not menu.announced:
                continue
            prompt = menu_prompt(menu, keys, facts)
            found.setdefault(prompt.id, prompt)
    for entry in ENTRIES.values():
        prompt = entry_prompt(entry, keys)
        found[prompt.id] = prompt
    found["code_bad_length"] = bad_length_prompt(keys)
    return found
