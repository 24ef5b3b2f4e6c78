"""The call flow is data: what `gatewayd menu` prints is what the engine accepts, and menus
say the profile's keys (change every key of a profile: every menu says the new ones)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gatewayd.cli import main
from gatewayd.events import Notify
from gatewayd.profile import load_profile
from gatewayd.prompts import PromptCatalogue, default_audio_dir
from gatewayd.voicemail.config import Keys, VoicemailConfig
from gatewayd.voicemail.flow import ENTRIES, MENUS, State
from gatewayd.voicemail.flowchart import render
from gatewayd.voicemail.policy import SecretCodeService
from gatewayd.voicemail.store import Store
from tests.conftest import FAST_POLICY, make_service
from tests.harness import FakeClock, Phone

PAD = "0123456789*#"
CODE = "4931"

#: Every key changed: none of the defaults is where it was.
CHANGED = Keys(
    main_listen="7",
    main_personalise="8",
    personalise_code="9",
    code_create="4",
    code_modify="5",
    code_protection="6",
    confirm_yes="0",
    confirm_retry="3",
    back="#",
    end_entry="*",
    personalise_greeting="0",
    listen_replay="7",
    listen_delete="8",
    listen_keep="9",
    listen_next="0",
    listen_back="1",
    listen_forward="2",
    greeting_record="5",
    greeting_default="6",
    greeting_keep="7",
    greeting_retry="4",
)


def _phone(store: Store, clock: FakeClock, keys: Keys, mailbox: bool = True) -> Phone:
    config = VoicemailConfig(policy=FAST_POLICY, keys=keys, mailbox_exists=mailbox)
    return Phone(make_service(store, clock), config, clock)


def _go(phone: Phone, keys: Keys, state: State, remote: bool) -> None:
    """Take a call to ``state`` with these keys (remote: answered, then the right code)."""
    if state in (State.GREETING, State.RECORDING):
        # In the greeting, it goes on playing while keys come; to record, it ends: the beep.
        phone.auto_finish = state is State.RECORDING
        phone.call_in()
        assert phone.ivr.state == state
        phone.hear()
        return
    if remote:
        phone.call_for_code()
        phone.press(CODE + keys.end_entry)
    else:
        phone.lift()
        phone.dial("3103")
    path = {
        State.MAIN_MENU: "",
        State.PERSONALISE_MENU: keys.main_personalise,
        State.CODE_MENU: keys.main_personalise + keys.personalise_code,
    }
    if state in path:
        phone.press(path[state])
    elif state is State.CODE_CONFIRM:
        phone.press(keys.main_personalise + keys.personalise_code + keys.code_create)
        phone.press("2846" + keys.end_entry)
    assert phone.ivr.state == state
    phone.hear()


def _listed(text: str, state: State) -> dict[str, list[tuple[str, str]]]:
    """From `gatewayd menu` text: key -> [(target states, condition)] of one menu."""
    block = text.split(f"\n{state}: ", 1)[1].split("\n")
    listed: dict[str, list[tuple[str, str]]] = {}
    for line in block[1:]:
        found = re.match(r"  (\S+)  .* -> (\S+(?: / \S+)*)(?:  \[(.*)\])?$", line)
        if not found:
            break
        listed.setdefault(found[1], []).append((found[2], found[3] or ""))
    return listed


SITUATIONS = [
    # (state, remote, code set, mailbox)
    (State.MAIN_MENU, False, False, True),
    (State.MAIN_MENU, False, False, False),
    (State.MAIN_MENU, True, True, True),
    (State.PERSONALISE_MENU, False, False, True),
    (State.PERSONALISE_MENU, True, True, True),
    (State.CODE_MENU, False, False, True),
    (State.CODE_MENU, False, True, True),
    (State.CODE_CONFIRM, False, False, True),
    (State.GREETING, True, True, True),
    (State.GREETING, True, False, True),
    (State.RECORDING, True, True, True),
]


@pytest.mark.parametrize("keys", [Keys(), CHANGED], ids=["default-keys", "changed-keys"])
@pytest.mark.parametrize(("state", "remote", "code_set", "mailbox"), SITUATIONS)
def test_every_key_the_engine_accepts_is_in_the_printed_flow(
    tmp_path: Path, keys: Keys, state: State, remote: bool, code_set: bool, mailbox: bool
) -> None:
    text = render(keys)
    listed = _listed(text, state)
    for key in PAD:
        with Store(tmp_path / f"{key!r}.json") as store:
            clock = FakeClock()
            if code_set:
                make_service(store, clock).set_code(CODE, "handset")
            phone = _phone(store, clock, keys, mailbox)
            _go(phone, keys, state, remote)
            done = len(phone.actions)
            phone.press(key)
            heard = phone.hear()
            acted = any(not isinstance(a, Notify) for a in phone.actions[done:])
            if "invalid_key" in heard or not acted:
                continue  # refused with the invalid-key prompt, or ignored
            assert key in listed, f"{state}: key {key} accepted but not printed:\n{text}"
            refused = [c for _, c in listed[key] if any(f"else «{p}»" in c for p in heard)]
            if refused:  # announced, but refused to this caller: the menu is said again
                assert phone.ivr.state == state
                continue
            targets = {t for entry in listed[key] for t in entry[0].split(" / ")}
            assert phone.ivr.state in targets, (state, key, phone.ivr.state, listed[key])


@pytest.mark.parametrize("state", [*MENUS, *ENTRIES])
def test_every_menu_and_entry_is_printed_in_every_format(state: State) -> None:
    for fmt in ("text", "dot", "mermaid"):
        assert str(state) in render(Keys(), fmt)


def test_gatewayd_menu_prints_the_profiles_keys(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    profile = tmp_path / "keys.toml"
    sim = load_profile("sim").source.read_text()
    profile.write_text(
        sim.replace('main_listen = "1"', 'main_listen = "7"').replace(
            'main_personalise = "3"', 'main_personalise = "8"'
        )
    )
    assert main(["menu", "--profile", str(profile)]) == 0
    out = capsys.readouterr().out
    block = _listed(out, State.MAIN_MENU)
    assert set(block) == {"7", "8", "*"}
    assert main(["menu", "--profile", str(profile), "--format", "mermaid"]) == 0
    assert '|"8: go to personalise_menu"| personalise_menu' in capsys.readouterr().out
    assert main(["menu", "--profile", str(tmp_path / "missing.toml")]) == 2


# --- menus say their keys ----------------------------------------------------------------


def _say(*sentences: tuple[str, str]) -> list[str]:
    """What a menu says: each option's phrase, "tapez", then its key spoken."""
    spoken = []
    for phrase, key_prompt in sentences:
        spoken += [phrase, "press", key_prompt]
    return spoken


@pytest.mark.parametrize("keys", [Keys(), CHANGED], ids=["default-keys", "changed-keys"])
def test_each_menu_says_the_keys_of_the_profile(tmp_path: Path, keys: Keys) -> None:
    def spoken_key(key: str) -> str:
        return {"*": "key_star", "#": "key_hash"}.get(key, f"digit_{key}")

    with Store(tmp_path / "state.json") as store:
        clock = FakeClock()
        phone = _phone(store, clock, keys)
        phone.lift()
        phone.dial("3103")
        phone.spoken.clear()
        phone.finish_prompt()
        main_menu = _say(
            ("say_listen", spoken_key(keys.main_listen)),
            ("say_personalise", spoken_key(keys.main_personalise)),
        )
        phone.hear()
        phone.spoken.clear()
        phone.press(keys.main_personalise)
        assert phone.spoken == _say(
            ("say_greeting", spoken_key(keys.personalise_greeting)),
            ("say_code", spoken_key(keys.personalise_code)),
            ("say_back", spoken_key(keys.back)),
        )
        phone.spoken.clear()
        phone.press(keys.back)
        assert phone.spoken == main_menu
        phone.spoken.clear()
        phone.press(keys.main_personalise + keys.personalise_code)
        assert (
            phone.spoken[-4:]
            == ["code_none_yet", *_say(("say_code_create", spoken_key(keys.code_create)))][-4:]
        )
        phone.spoken.clear()
        phone.press(keys.code_create)
        assert phone.spoken == ["ask_new_code", "followed_by_many", spoken_key(keys.end_entry)]
        phone.spoken.clear()
        phone.press("12" + keys.end_entry)  # too short
        assert phone.spoken == [
            "bad_length",
            "followed_by_many",
            spoken_key(keys.end_entry),
            "ask_new_code",
            "followed_by_many",
            spoken_key(keys.end_entry),
        ]
        phone.spoken.clear()
        phone.press(CODE + keys.end_entry)
        assert phone.spoken[-6:] == _say(
            ("say_confirm_yes", spoken_key(keys.confirm_yes)),
            ("say_confirm_retry", spoken_key(keys.confirm_retry)),
        )
        phone.spoken.clear()
        phone.press(keys.confirm_yes)
        assert phone.spoken == [
            "code_saved",
            "code_active",
            *_say(
                ("say_code_modify", spoken_key(keys.code_modify)),
                ("say_protection", spoken_key(keys.code_protection)),
            ),
        ]
        service: SecretCodeService = phone.service
        assert service.status().code_set
        phone.hang_up()
        # A remote caller keys * in the greeting: the code, "followed by the" end key.
        phone.spoken.clear()
        phone.call_for_code()
        assert phone.spoken == [
            "greeting_standard",
            "ask_code",
            "followed_by",
            spoken_key(keys.end_entry),
        ]


def test_a_changed_key_is_written_and_spoken_in_the_menu_text() -> None:
    catalogue = PromptCatalogue.load(default_audio_dir(), "fr", CHANGED)
    assert catalogue.text("main_menu") == (
        "Pour écouter vos messages, tapez 7. Pour personnaliser votre messagerie, tapez 8."
    )
    assert catalogue.text("code_enter_new") == (
        "Veuillez composer les 4 chiffres du code secret que vous avez choisi, "
        "suivis de la touche étoile."
    )
    default = PromptCatalogue.load(default_audio_dir(), "fr")
    assert catalogue.pcm("main_menu") != default.pcm("main_menu")
    # The composed audio is the fragments back to back: "... tapez" + "sept".
    assert catalogue.pcm("main_menu").endswith(default.pcm("digit_8"))


def test_readme_shows_the_current_tree() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    shown = readme.split("<!-- menu:begin -->\n```\n", 1)[1].split("```\n<!-- menu:end -->")[0]
    assert shown == render(Keys(), "text", "default keys"), "run: gatewayd menu; update README"


def test_every_option_names_a_key_of_the_profile() -> None:
    fields = set(Keys.__dataclass_fields__)
    for menu in MENUS.values():
        assert {option.key for option in menu.options} <= fields, menu.state
