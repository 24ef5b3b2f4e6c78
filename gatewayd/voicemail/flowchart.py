"""Draw the declared call flow (``gatewayd menu``): text, Graphviz dot or Mermaid.

Everything drawn comes from :mod:`gatewayd.voicemail.flow`, the tables the
engine runs, with the profile's keys: what the drawing shows is what the box does.
"""

from __future__ import annotations

from gatewayd.voicemail.config import Keys
from gatewayd.voicemail.flow import (
    ENTRIES,
    LEADS_TO,
    MENUS,
    Entry,
    Menu,
    Option,
    State,
)

FORMATS = ("text", "dot", "mermaid")

#: How a call gets into the menus (the engine's own states): (from, what, to, when).
ENTRY_POINTS = (
    ("call", "handset off-hook", State.DIALING, "dial tone"),
    (State.DIALING, "dial the access number", State.MAIN_MENU, "fixed-line code off"),
    (State.DIALING, "dial the access number", State.CODE_CHECK, "fixed-line code on"),
    ("call", "trunk call rings", State.RINGING, "the handset rings"),
    (State.RINGING, "handset lifted", State.TAKEN, "the subscriber has the call"),
    (State.RINGING, "answer_after_rings rings", State.GREETING, "the box answers"),
    (State.GREETING, "greeting ends", State.RECORDING, "beep; mailbox full: goodbye"),
)


def _targets(option: Option) -> tuple[State, ...]:
    if option.go is not None:
        return (option.go,)
    assert option.do is not None
    return LEADS_TO[option.do]


def _option_label(option: Option, key: str) -> str:
    what = str(option.do) if option.do is not None else f"go to {option.go}"
    label = f"{key}: {what}"
    if option.when is not None:
        label += f" [{option.when}"
        label += f"; else «{option.refused}»]" if option.refused else "]"
    return label


def edges(keys: Keys) -> list[tuple[State, str, State, str]]:
    """Every transition: (from, key, to, label), from the tables and the keys."""
    found: list[tuple[State, str, State, str]] = []
    for menu in MENUS.values():
        for option in menu.options:
            key = getattr(keys, option.key)
            for target in _targets(option):
                found.append((menu.state, key, target, _option_label(option, key)))
        if menu.announced:
            found.append((menu.state, keys.back, menu.back or menu.state, f"{keys.back}: back"))
    for entry in ENTRIES.values():
        for target in LEADS_TO[entry.submit]:
            found.append(
                (entry.state, keys.end_entry, target, f"digits {keys.end_entry}: {entry.submit}")
            )
        found.append((entry.state, keys.back, entry.back or entry.state, f"{keys.back}: back"))
    return found


def _menu_says(menu: Menu) -> str:
    said = []
    for variant in menu.variants:
        words = " ".join(f"«{p}»" for p in (*variant.intro, variant.prompt_id))
        said.append(f"{words} [{variant.when}]" if variant.when else words)
    return " | ".join(said)


def _text_menu(menu: Menu, keys: Keys) -> list[str]:
    lines = [f"{menu.state}: says {_menu_says(menu)}; silence: {menu.on_timeout}"]
    for option in menu.options:
        key = getattr(keys, option.key)
        target = " / ".join(str(t) for t in _targets(option))
        what = str(option.do) if option.do is not None else "go"
        cond = ""
        if option.when is not None:
            cond = f"  [{option.when}" + (f"; else «{option.refused}»]" if option.refused else "]")
        lines.append(f"  {key}  {what} -> {target}{cond}")
    if menu.announced:
        lines.append(f"  {keys.back}  back -> {menu.back or menu.state}")
    else:
        lines.append(f"  other keys: {menu.other_keys}")
    return lines


def _text_entry(entry: Entry, keys: Keys) -> list[str]:
    targets = " / ".join(str(t) for t in LEADS_TO[entry.submit])
    back = entry.back or f"{entry.state} (asked again)"
    return [
        f"{entry.state}: says «{entry.prompt_id}»; 4 digits then {keys.end_entry}; silence: "
        f"{entry.on_timeout}",
        f"  digits {keys.end_entry}  {entry.submit} -> {targets}",
        f"  {keys.back}  back -> {back}",
    ]


def render_text(keys: Keys, title: str = "") -> str:
    """The call flow as indented text, one block per menu."""
    lines = [f"call flow of 3103{f' ({title})' if title else ''}", ""]
    for source, what, target, when in ENTRY_POINTS:
        lines.append(f"{source} -> {target}: {what} ({when})")
    lines.append("")
    for menu in MENUS.values():
        lines.extend(_text_menu(menu, keys))
    for entry in ENTRIES.values():
        lines.extend(_text_entry(entry, keys))
    return "\n".join(lines) + "\n"


def _quote(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def render_dot(keys: Keys, title: str = "") -> str:
    """The call flow as a Graphviz digraph (``dot -Tsvg``)."""
    lines = ["digraph call_flow {", f'  label="{_quote(title or "call flow of 3103")}";']
    lines.append("  node [shape=box];")
    lines.append("  call [shape=circle];")
    for source, what, target, when in ENTRY_POINTS:
        lines.append(f'  {source} -> {target} [label="{_quote(f"{what} ({when})")}"];')
    for source, _key, target, label in edges(keys):
        lines.append(f'  {source} -> {target} [label="{_quote(label)}"];')
    lines.append("}")
    return "\n".join(lines) + "\n"


def _mermaid_label(text: str) -> str:
    return text.replace('"', "#quot;").replace("|", "#124;")


def render_mermaid(keys: Keys, title: str = "") -> str:
    """The call flow as a Mermaid flowchart (renders in GitHub markdown)."""
    lines = ["flowchart TD"]
    if title:
        lines.insert(0, f"%% {title}")
    lines.append("  call((call))")
    for source, what, target, when in ENTRY_POINTS:
        lines.append(f'  {source} -->|"{_mermaid_label(f"{what} ({when})")}"| {target}')
    for source, _key, target, label in edges(keys):
        lines.append(f'  {source} -->|"{_mermaid_label(label)}"| {target}')
    return "\n".join(lines) + "\n"


def render(keys: Keys, fmt: str = "text", title: str = "") -> str:
    """The call flow in ``fmt`` (one of :data:`FORMATS`)."""
    renderers = {"text": render_text, "dot": render_dot, "mermaid": render_mermaid}
    if fmt not in renderers:
        raise ValueError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    return renderers[fmt](keys, title)
