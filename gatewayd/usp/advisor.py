"""``gatewayd advisor``: a minimal USP controller for technicians and tests.

``status BOX`` shows the box's device info and code state, ``reset BOX --ticket T``
runs ``X_<VENDOR>_ResetCode()`` with the ticket as ``command_key``, ``watch [BOX...]``
subscribes and prints notifications as JSON lines until Ctrl-C. The TLS material
is the same kind as the box's: the operator CA, this controller's certificate and key.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, TextIO
from urllib.parse import urlsplit

from gatewayd.usp.datamodel import MAILBOX

if TYPE_CHECKING:  # protobuf comes with the usp extra, checked in main()
    from gatewayd.usp.records import Msg

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    """The options and subcommands of ``gatewayd advisor``."""
    parser = argparse.ArgumentParser(
        prog="gatewayd advisor",
        description="A minimal USP controller: status, reset and watch boxes over MQTT 5.",
        epilog="example: gatewayd advisor --broker mqtts://broker:8883 --ca ca.pem --cert me.pem "
        "--key me.key --endpoint-id self::desk-7 --topic usp/controller/desk-7 "
        "reset os::00D09E-42 --ticket INC-1234",
    )
    parser.add_argument("--broker", required=True, metavar="URL", help="mqtts://HOST[:PORT]")
    parser.add_argument("--ca", metavar="FILE", help="the operator CA (PEM) that pins the broker")
    parser.add_argument("--cert", metavar="FILE", help="this controller's certificate (PEM)")
    parser.add_argument("--key", metavar="FILE", help="this controller's private key (PEM)")
    parser.add_argument("--endpoint-id", required=True, help="this controller's Endpoint ID")
    parser.add_argument("--topic", required=True, help="this controller's MQTT topic")
    parser.add_argument(
        "--agent-topic",
        default="usp/agent/{box}",
        metavar="TEMPLATE",
        help="the boxes' topic, {box} standing for the Endpoint ID (default: usp/agent/{box})",
    )
    parser.add_argument("--vendor-prefix", default="GWD", help="the boxes' X_<VENDOR>_ prefix")
    parser.add_argument("--timeout", type=float, default=10.0, metavar="S", help="answer wait")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    status = commands.add_parser("status", help="device info and code state of a box")
    status.add_argument("box", metavar="BOX", help="the box's Endpoint ID")
    reset = commands.add_parser("reset", help="reset the box's forgotten or locked code")
    reset.add_argument("box", metavar="BOX")
    reset.add_argument("--ticket", required=True, help="the advisor's ticket (the command_key)")
    watch = commands.add_parser("watch", help="subscribe and print notifications (JSON lines)")
    watch.add_argument("boxes", nargs="*", metavar="BOX")
    return parser


def _tls(args: argparse.Namespace) -> ssl.SSLContext | None:
    if urlsplit(args.broker).scheme != "mqtts":
        return None
    context = ssl.create_default_context(cafile=args.ca)
    if args.cert:
        context.load_cert_chain(args.cert, args.key)
    return context


def _describe(msg: Msg) -> dict[str, object]:
    notify = msg.body.request.notify
    kind = notify.WhichOneof("notification")
    line: dict[str, object] = {"type": kind, "subscription": notify.subscription_id}
    if kind == "value_change":
        line.update(path=notify.value_change.param_path, value=notify.value_change.param_value)
    elif kind == "event":
        line.update(
            path=notify.event.obj_path + notify.event.event_name, params=dict(notify.event.params)
        )
    elif kind == "oper_complete":
        oc = notify.oper_complete
        line.update(
            path=oc.obj_path + oc.command_name,
            command_key=oc.command_key,
            output=dict(oc.req_output_args.output_args),
        )
    return line


async def _main(args: argparse.Namespace, out: TextIO) -> int:
    from gatewayd.usp.controller import ControllerError, UspController

    url = urlsplit(args.broker)
    port = url.port or (8883 if url.scheme == "mqtts" else 1883)
    prefix = f"X_{args.vendor_prefix}_"
    controller = UspController(
        url.hostname or "localhost",
        port,
        args.endpoint_id,
        args.topic,
        _tls(args),
        timeout_s=args.timeout,
    )
    try:
        async with controller:
            if args.command == "status":
                box = args.box
                values = await controller.get(
                    box, args.agent_topic.format(box=box), ["Device.DeviceInfo.", MAILBOX]
                )
                for path, value in values.items():
                    print(f"{path} = {value}", file=out)
            elif args.command == "reset":
                box = args.box
                output = await controller.operate(
                    box,
                    args.agent_topic.format(box=box),
                    f"{MAILBOX}{prefix}ResetCode()",
                    args.ticket,
                )
                if output.get("Status") == "AlreadyDone":
                    print(
                        f"{box}: ticket {args.ticket} was already carried out; the code was "
                        "not reset again",
                        file=out,
                    )
                else:
                    print(f"{box}: code reset (ticket {args.ticket})", file=out)
            else:
                for box in args.boxes:
                    topic = args.agent_topic.format(box=box)
                    await controller.subscribe(box, topic, "ValueChange", [MAILBOX])
                    await controller.subscribe(
                        box, topic, "Event", [f"{MAILBOX}{prefix}Locked!", "Device.Boot!"]
                    )
                    await controller.subscribe(
                        box, topic, "OperationComplete", [f"{MAILBOX}{prefix}ResetCode()"]
                    )
                print(json.dumps({"type": "watching", "boxes": args.boxes}), file=out, flush=True)
                while True:
                    item = await controller.received.get()
                    line: dict[str, object] = {"box": item.from_id, "type": item.kind}
                    if item.msg is not None:
                        line.update(_describe(item.msg))
                    print(json.dumps(line), file=out, flush=True)
    except ControllerError as exc:
        print(f"gatewayd advisor: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except Exception as exc:  # the broker's TLS or connection errors, said plainly
        print(f"gatewayd advisor: {args.broker}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def main(argv: Sequence[str], out: TextIO = sys.stdout) -> int:
    """Run ``gatewayd advisor ARGS``; the exit code."""
    args = build_parser().parse_args(list(argv))
    from gatewayd.usp import UspUnavailableError, require_usp

    try:
        require_usp()
    except UspUnavailableError as exc:
        print(f"gatewayd advisor: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        return asyncio.run(_main(args, out))
    except KeyboardInterrupt:
        return EXIT_OK
