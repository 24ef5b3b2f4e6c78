"""The ``gatewayd`` command line: run, demo, phone, sim and ctl (DESIGN.md §6).

Exit codes: 0 ok, 1 the daemon answered an error (or failed), 2 usage error or
the daemon cannot be reached. Only argparse is imported here: each subcommand
imports what it needs when it runs, so ``gatewayd sim`` and ``gatewayd ctl``
start fast on a small board.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from gatewayd import __version__
from gatewayd.errors import GatewaydError

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

#: `run --log-level` accepts what `ctl loglevel` does (trace: raw serial bytes, keys masked).
LOG_LEVELS = ("trace", "debug", "info", "warning", "error")

#: sim actions each party accepts (the sim socket's commands, DESIGN.md §6).
SIM_ACTIONS = {
    "handset": ("offhook", "onhook", "flash", "press"),
    "remote": ("call", "press", "say", "hangup"),
}

DESCRIPTION = """\
gatewayd: the telephony daemon of a home gateway box, and the tools to drive it.
It runs the voicemail secret-code service of number 3103 on the box's own line."""

EPILOG = """\
New here? Run `gatewayd demo` first: the daemon on a simulated line, with a
keyboard handset in this terminal (SPACE lifts the handset, then dial 3103).
`gatewayd COMMAND --help` tells more about each command."""

RUNTIME_HELP = (
    "the daemon's socket directory (default: $RUNTIME_DIRECTORY, else "
    "$XDG_RUNTIME_DIR/gatewayd, else /run/gatewayd; ctl, phone and sim also find "
    "a running `gatewayd demo`)"
)


def _runtime_dir(option: str | None) -> Path:
    """A client's socket dir: the option, the usual places, else a running `gatewayd demo`."""
    from gatewayd.paths import find_runtime_dir

    return find_runtime_dir(option)


def _fail(command: str, message: object, code: int) -> int:
    print(f"gatewayd {command}: {message}", file=sys.stderr)
    return code


def cmd_run(args: argparse.Namespace) -> int:
    """``gatewayd run``: the daemon in the foreground."""
    # The daemon speaks no TLS (but the USP agent, which lets ssl in when [usp] starts it):
    # without this asyncio loads ssl (and libssl), about 4 MB of memory and 10 ms of start
    # here, five times that on the box's SoC (issue 13).
    sys.modules.setdefault("ssl", None)  # type: ignore[arg-type]
    from gatewayd.daemon import run_daemon

    return run_daemon(args.profile, args.state_dir, args.runtime_dir, args.log_level)


def cmd_demo(args: argparse.Namespace) -> int:
    """``gatewayd demo``: a sim daemon plus the keyboard handset."""
    from gatewayd.phone import run_demo

    return run_demo(args.state_dir, sys.stdin, sys.stdout, fresh=args.fresh)


def cmd_phone(args: argparse.Namespace) -> int:
    """``gatewayd phone``: the keyboard handset against a running daemon."""
    from gatewayd.phone import run_phone

    return run_phone(_runtime_dir(args.runtime_dir), sys.stdin, sys.stdout)


def cmd_sim(args: argparse.Namespace) -> int:
    """``gatewayd sim PARTY ACTION [KEYS]``: one sim-socket command."""
    parser: argparse.ArgumentParser = args.parser
    if args.action not in SIM_ACTIONS[args.party]:
        parser.error(
            f"{args.party} actions are {', '.join(SIM_ACTIONS[args.party])}, not {args.action!r}"
        )
    takes = {"press": "KEYS, e.g. 3103", "say": "a WAV PATH", "call": None}
    if args.keys is not None and args.action not in takes:
        parser.error(f"{args.action} takes no argument")
    if args.keys is None and takes.get(args.action):
        parser.error(f"{args.action} needs {takes[args.action]}")
    from gatewayd.client import CommandFailedError, DaemonUnreachableError, SimClient

    argument = args.keys
    if args.action == "say":  # the daemon reads the file: give it an absolute path
        argument = str(Path(argument).resolve())
    words = [args.party, args.action, *([argument] if argument is not None else [])]
    try:
        with SimClient(_runtime_dir(args.runtime_dir)) as sim:
            answer = sim.send(" ".join(words))
    except DaemonUnreachableError as exc:
        return _fail("sim", exc, EXIT_USAGE)
    except CommandFailedError as exc:
        return _fail("sim", exc.reason, EXIT_FAILED)
    print(answer)
    return EXIT_OK


def cmd_ctl(args: argparse.Namespace) -> int:
    """``gatewayd ctl COMMAND...``: one console command; ``events`` streams until Ctrl-C."""
    if not args.command:
        args.parser.error("give a console command, e.g. `status` or `help`")
    from gatewayd.client import DaemonUnreachableError, ctl_request

    failed = False
    answered = False
    try:
        with ctl_request(_runtime_dir(args.runtime_dir), shlex.join(args.command)) as answer:
            for line in answer:
                answered = True
                if line.startswith("error"):
                    failed = True
                    print(f"gatewayd ctl: {line}", file=sys.stderr, flush=True)
                else:
                    print(line, flush=True)
    except DaemonUnreachableError as exc:
        return _fail("ctl", exc, EXIT_USAGE)
    except KeyboardInterrupt:
        return EXIT_OK  # the way to leave `ctl events`
    except BrokenPipeError:
        # `gatewayd ctl events | head`: the reader left. Point stdout at /dev/null so that
        # the interpreter's final flush does not complain about the closed pipe.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK
    if not answered:  # the daemon closed without a word: never report that as success
        print("gatewayd ctl: error no answer from the daemon; see its log", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_FAILED if failed else EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(
        prog="gatewayd",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"gatewayd {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", dest="name")

    def add(
        name: str, summary: str, description: str, epilog: str, handler: Callable[..., int]
    ) -> argparse.ArgumentParser:
        sub = commands.add_parser(
            name,
            help=summary,
            description=description,
            epilog=epilog,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        sub.set_defaults(handler=handler, parser=sub)
        return sub

    run = add(
        "run",
        "run the daemon in the foreground (default profile: sim)",
        "Run the daemon in the foreground until SIGTERM or Ctrl-C (what the systemd unit runs).",
        "State dir: --state-dir, else $STATE_DIRECTORY, else the profile's [storage].\n"
        "example: gatewayd run --profile sim --runtime-dir /tmp/gw",
        cmd_run,
    )
    run.add_argument(
        "--profile",
        default="sim",
        metavar="NAME|PATH",
        help="a shipped profile name (hw_profiles/NAME.toml) or a profile file (default: sim)",
    )
    run.add_argument("--state-dir", metavar="DIR", help="where the box's state file lives")
    run.add_argument("--runtime-dir", metavar="DIR", help=RUNTIME_HELP)
    run.add_argument(
        "--log-level", choices=LOG_LEVELS, help="log level (default: the profile's [logging])"
    )

    demo = add(
        "demo",
        "start here: a daemon on the sim line and a keyboard handset",
        "Start a daemon on the sim profile (sockets in a fresh temporary dir) and a keyboard\n"
        "handset in this terminal; what the box says is shown as text.",
        "The box's state (your code) is kept in --state-dir between demos; --fresh empties it.\n"
        "`gatewayd ctl`, `phone` and `sim` in another terminal find the running demo.\n"
        "In the demo: SPACE lifts the handset, then dial 3103; ? shows the keys.",
        cmd_demo,
    )
    demo.add_argument(
        "--state-dir",
        metavar="DIR",
        help="the demo box's state (default: ~/.local/state/gatewayd-demo)",
    )
    demo.add_argument(
        "--fresh",
        action="store_true",
        help="start from an empty box: no code, no cool-down, no messages "
        "(empties the default state dir)",
    )

    phone = add(
        "phone",
        "the keyboard handset alone, against a running daemon (sim profile)",
        "A keyboard handset on a running daemon's sim line, showing the box's events as text.\n"
        "Without a terminal on stdin it reads one command per line (`help` lists them).",
        "example: printf 'lift\\npress 3103\\nwait prompt:main_menu\\nhangup\\n' | gatewayd phone",
        cmd_phone,
    )
    phone.add_argument("--runtime-dir", metavar="DIR", help=RUNTIME_HELP)

    sim = add(
        "sim",
        "send one command to the sim line (lift, keys, remote call...)",
        "Send one command to the sim socket of a daemon running the sim profile; prints `ok`.\n"
        "press returns once every key was sent (80 ms tone + 80 ms gap each).",
        "handset actions: offhook, onhook, flash, press KEYS\n"
        "remote actions:  call [NUMBER] (rings the box until it answers; NUMBER: the caller\n"
        "                 ID, or withheld), press KEYS, say WAV (the caller speaks: 8 kHz\n"
        "                 16-bit mono, sent in real time), hangup\n"
        "KEYS: 0-9 * # (quote them for the shell).\n"
        "a simulated V.253 modem instead: gatewayd sim modem [--family F] [--link PATH]\n"
        "examples: gatewayd sim handset offhook; gatewayd sim handset press '4931#';\n"
        "          gatewayd sim remote call 0612345678; gatewayd sim remote say hello.wav",
        cmd_sim,
    )
    sim.add_argument("--runtime-dir", metavar="DIR", help=RUNTIME_HELP)
    sim.add_argument(
        "party", choices=tuple(SIM_ACTIONS), metavar="PARTY", help="handset, remote (or modem)"
    )
    sim.add_argument(
        "action", metavar="ACTION", help="offhook, onhook, flash, press, call, say or hangup"
    )
    sim.add_argument(
        "keys", nargs="?", metavar="ARG", help="KEYS of press, NUMBER of call, WAV of say"
    )

    ctl = add(
        "ctl",
        "send one console command to the control socket (status, events, audit, reset)",
        "Send one console command to the daemon's control socket and print the answer.\n"
        "`events` streams until Ctrl-C.",
        "commands: help, status [--json], events [--json], audit [N], reset --yes, version,\n"
        "          line, profile, loglevel [LEVEL], ring [S], play ID, tone NAME, selftest\n"
        "examples: gatewayd ctl status; gatewayd ctl events --json",
        cmd_ctl,
    )
    ctl.usage = "%(prog)s [-h] [--runtime-dir DIR] COMMAND..."
    ctl.add_argument("--runtime-dir", metavar="DIR", help=RUNTIME_HELP)
    ctl.add_argument(
        "command", nargs=argparse.REMAINDER, metavar="COMMAND...", help="the console command"
    )
    selftest = add(
        "selftest",
        "check every part a profile names (serial port, GPIO, ALSA, prompts, state, pepper)",
        "Check every part the profile names: the modem answers AT, each GPIO line can be\n"
        "requested, the ALSA devices open at 8 kHz S16 mono, every prompt has a valid WAV, the\n"
        "state file parses and the pepper is present. One line per check; exit 1 on a failure.\n"
        "Run it with the daemon stopped.",
        "Default profile: /etc/gatewayd/profile.toml (written by `gatewayd provision`), else sim.\n"
        "example: gatewayd selftest --profile usr5637-modem",
        cmd_selftest,
    )
    selftest.add_argument("--profile", metavar="NAME|PATH", help="the profile to check")
    selftest.add_argument("--state-dir", metavar="DIR", help="where the box's state file lives")
    selftest.add_argument("--runtime-dir", metavar="DIR", help=RUNTIME_HELP)
    selftest.add_argument(
        "--etc-dir",
        metavar="DIR",
        help="where `gatewayd provision` wrote the profile and pepper (default: /etc/gatewayd)",
    )

    provision = add(
        "provision",
        "provision a box: its pepper, the technician code, the profile the unit runs",
        "Create the box's pepper (mode 0600; never overwritten without --force), write the\n"
        "chosen profile to /etc/gatewayd/profile.toml, and with --tech-code ask for the\n"
        "technician code (4-8 digits, read from the terminal, never from the command line).",
        "example: gatewayd provision --profile usr5637-modem --tech-code",
        cmd_provision,
    )
    provision.add_argument(
        "--profile", required=True, metavar="NAME|PATH", help="the board's profile"
    )
    provision.add_argument(
        "--etc-dir", metavar="DIR", default=None, help="where to write (default: /etc/gatewayd)"
    )
    provision.add_argument("--state-dir", metavar="DIR", help="where the box's state file lives")
    provision.add_argument("--runtime-dir", metavar="DIR", help=RUNTIME_HELP)
    provision.add_argument(
        "--tech-code", action="store_true", help="set the technician code (asked for, not echoed)"
    )
    provision.add_argument(
        "--usp-cert", metavar="FILE", help="the box's USP (TR-369) TLS certificate, PEM"
    )
    provision.add_argument("--usp-key", metavar="FILE", help="the private key of --usp-cert")
    provision.add_argument(
        "--force",
        action="store_true",
        help="replace an existing pepper (stored codes stop working)",
    )
    provision.add_argument(
        "--fit-scrypt",
        action="store_true",
        help="time a code check here and write the scrypt_n that keeps it under 300 ms",
    )

    menu = add(
        "menu",
        "print the call flow of 3103 (menus, keys, conditions) with a profile's keys",
        "Print the whole call-flow tree from the tables the service runs, with the keys of the\n"
        "profile ([voicemail.keys]): every menu, what it says, each key and where it leads.",
        "example: gatewayd menu --format mermaid > flow.mmd; gatewayd menu --format dot | "
        "dot -Tsvg > flow.svg",
        cmd_menu,
    )
    menu.add_argument("--profile", metavar="NAME|PATH", default="sim", help="default: sim")
    menu.add_argument(
        "--format", choices=("text", "dot", "mermaid"), default="text", help="default: text"
    )

    advisor = add(
        "advisor",
        "a minimal USP controller: status, reset and watch boxes (needs the [usp] extra)",
        "Talk to boxes as an operator's USP controller over MQTT 5 with mutual TLS.\n"
        "`gatewayd advisor --help` lists its options and commands.",
        "usage: gatewayd advisor --broker URL --endpoint-id ID --topic T [TLS options]\n"
        "       status BOX | reset BOX --ticket T | watch [BOX...]",
        cmd_advisor,
    )
    advisor.usage = "%(prog)s [--help] OPTIONS... status|reset|watch ..."
    advisor.add_argument("args", nargs=argparse.REMAINDER, metavar="ARGS", help="see above")

    dtmf = add(
        "dtmf",
        "decode DTMF keys in a recording of the line (field tool)",
        "Decode the DTMF keys in a recording: a WAV (8 kHz, 16-bit, mono), or raw 8 kHz S16_LE\n"
        "mono with --raw. Prints each key with its start time and duration. Needs the\n"
        "[inband] extra (numpy).",
        "usage: gatewayd dtmf decode FILE [--raw] [--mask]\n"
        "example: arecord -D hw:1,0 -f S16_LE -r 8000 -c 1 line.wav; gatewayd dtmf decode line.wav",
        cmd_dtmf,
    )
    dtmf.usage = "%(prog)s [-h] decode FILE [--raw] [--mask]"
    dtmf.add_argument("args", nargs=argparse.REMAINDER, metavar="decode FILE", help="what to do")
    return parser


def cmd_selftest(args: argparse.Namespace) -> int:
    """``gatewayd selftest``: check the parts of a profile."""
    from gatewayd.selftest import main as selftest_main

    return selftest_main(args.profile, args.state_dir, args.runtime_dir, etc_dir=args.etc_dir)


def cmd_provision(args: argparse.Namespace) -> int:
    """``gatewayd provision``: pepper, technician code, profile."""
    from gatewayd.provision import main as provision_main

    if (args.usp_cert is None) != (args.usp_key is None):
        args.parser.error("--usp-cert and --usp-key go together")
    code = provision_main(
        args.profile,
        etc_dir=args.etc_dir,
        state_dir=args.state_dir,
        runtime_dir=args.runtime_dir,
        tech_code=args.tech_code,
        force=args.force,
        fit_scrypt=args.fit_scrypt,
    )
    if code != EXIT_OK or args.usp_cert is None:
        return code
    from gatewayd.usp.provision import provision_usp_identity

    etc_dir = Path(args.etc_dir) if args.etc_dir else Path("/etc/gatewayd")
    try:
        cert, key = provision_usp_identity(Path(args.usp_cert), Path(args.usp_key), etc_dir)
    except GatewaydError as exc:
        return _fail("provision", exc, EXIT_FAILED)
    print(f"USP identity installed: [usp] cert_file = {str(cert)!r}, key_file = {str(key)!r}")
    return EXIT_OK


def cmd_advisor(args: argparse.Namespace) -> int:
    """``gatewayd advisor ...``: the minimal USP controller."""
    from gatewayd.usp.advisor import main as advisor_main

    return advisor_main(list(args.args))


def cmd_menu(args: argparse.Namespace) -> int:
    """``gatewayd menu``: the declared call flow with the profile's keys."""
    from gatewayd.profile import load_profile
    from gatewayd.voicemail.flowchart import render

    try:
        profile = load_profile(args.profile)
    except GatewaydError as exc:
        return _fail("menu", exc, EXIT_USAGE)
    print(render(profile.voicemail.keys, args.format, f"profile {profile.name}"), end="")
    return EXIT_OK


def cmd_dtmf(args: argparse.Namespace) -> int:
    """``gatewayd dtmf ...``: the in-band detector as a field tool (numpy checked when decoding,
    so ``--help`` works without it)."""
    from gatewayd.dtmf.cli import main as dtmf_main

    return dtmf_main(list(args.args))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``gatewayd`` command line; returns the exit code."""
    parser = build_parser()
    words = list(sys.argv[1:] if argv is None else argv)
    try:
        if words[:2] == ["sim", "modem"]:  # its own options (--family, --link): its own parser
            from gatewayd.line.modem_sim import main as modem_main

            return modem_main(words[2:])
        if words[:1] == ["advisor"]:
            # Its options come first and start with '-', which argparse.REMAINDER will not take.
            return cmd_advisor(argparse.Namespace(args=words[1:]))
        args = parser.parse_args(words)
        handler: Callable[[argparse.Namespace], int] | None = getattr(args, "handler", None)
        if handler is None:
            parser.print_help(sys.stderr)
            return EXIT_USAGE
        return handler(args)
    except SystemExit as exc:  # argparse: --help, --version and usage errors
        if exc.code is None or isinstance(exc.code, int):
            return exc.code or EXIT_OK
        print(exc.code, file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130
