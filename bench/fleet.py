"""Fleet benchmark of the USP agent (not a test; numbers go in README).

    python3 bench/fleet.py [--agents 500] [--per-process 100] [--retry-initial 5]

One mosquitto (mutual TLS, one certificate per box, ACL by certificate CN), N
agents in worker processes (each worker runs ``--per-process`` real
:class:`~gatewayd.usp.agent.UspAgent` s over :class:`~gatewayd.usp.fake.FakeService`
on one asyncio loop: the agent-only mode), and one controller that resets every
box. Reports:

- reset round-trip (Operate ``X_GWD_ResetCode()`` sent -> OperateResp received) p50/p99,
  with up to ``--in-flight`` requests outstanding;
- broker RSS, worker RSS and RSS per agent (worker RSS / agents in it; and the cost of
  one more agent, from a worker with one agent);
- the fleet's reconnect after a broker restart: time until every agent's MQTT Connect
  Record arrived again, and the spread of the arrivals (the jittered back-off at work).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gatewayd.usp.controller import UspController
from gatewayd.usp.datamodel import MAILBOX
from tests.usp_broker import Mosquitto, Pki

CONTROLLER = "self::fleet-advisor"
CONTROLLER_TOPIC = "usp/controller/fleet"


def box_id(index: int) -> str:
    return f"os::00D09E-{index:06d}"


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


# --- worker: M agents on one loop ------------------------------------------------------


async def run_worker(first: int, count: int, settings: dict[str, object]) -> None:
    import logging

    from gatewayd.usp.agent import UspAgent
    from gatewayd.usp.config import parse_usp
    from gatewayd.usp.fake import FakeService

    logging.basicConfig(level=logging.ERROR)  # a fleet's back-off lines would drown the numbers
    agents = []
    pki = Path(str(settings["pki"]))
    for index in range(first, first + count):
        box = box_id(index)
        stem = "".join(c if c.isalnum() else "_" for c in box)
        table = {
            "broker_url": settings["broker_url"],
            "endpoint_id": box,
            "vendor_prefix": "GWD",
            "ca_file": str(pki / "ca.pem"),
            "cert_file": str(pki / f"{stem}.pem"),
            "key_file": str(pki / f"{stem}.key"),
            "retry_initial_s": settings["retry_initial_s"],
            "retry_multiplier": settings["retry_multiplier"],
            "retry_max_s": 60.0,
            "requests_per_minute": 1000,
            "controller": [
                {"endpoint_id": CONTROLLER, "topic": CONTROLLER_TOPIC, "roles": ["advisor"]}
            ],
        }
        service = FakeService()
        service.lock()
        agent = UspAgent(parse_usp(table, "bench"), service, service.bus, None)
        agent.start()
        agents.append(agent)

    async def report(agent: UspAgent) -> None:
        # One line per (re)connection, wall-clock stamped: the agent's side of the reconnect.
        reported = 0
        while True:
            if agent.connections != reported:
                reported = agent.connections
                print(f"connected {agent.config.endpoint_id} {agent.connected_at:.3f}", flush=True)
            await asyncio.sleep(0.5)

    reporters = [asyncio.create_task(report(agent)) for agent in agents]
    await asyncio.gather(*reporters)


# --- controller and measurements -----------------------------------------------------


def controller_client(pki: Pki, port: int) -> UspController:
    cert, key = pki.dir / "self__fleet_advisor.pem", pki.dir / "self__fleet_advisor.key"
    context = ssl.create_default_context(cafile=str(pki.ca))
    context.load_cert_chain(str(cert), str(key))
    return UspController("localhost", port, CONTROLLER, CONTROLLER_TOPIC, context, timeout_s=60)


async def wait_connects(controller: UspController, n: int, timeout: float) -> list[float]:
    """Arrival times of the first Connect Record of each of ``n`` agents."""
    seen: dict[str, float] = {}
    deadline = time.monotonic() + timeout
    while len(seen) < n:
        left = deadline - time.monotonic()
        if left <= 0:
            raise SystemExit(f"only {len(seen)}/{n} agents connected within {timeout:g} s")
        try:
            item = await asyncio.wait_for(controller.received.get(), left)
        except TimeoutError:
            raise SystemExit(
                f"only {len(seen)}/{n} agents connected within {timeout:g} s"
            ) from None
        if item.kind == "mqtt_connect":
            seen.setdefault(item.from_id, time.monotonic())
    return sorted(seen.values())


async def reset_all(controller: UspController, n: int, in_flight: int) -> list[float]:
    gate = asyncio.Semaphore(in_flight)
    times: list[float] = []

    async def one(index: int) -> None:
        box = box_id(index)
        async with gate:
            started = time.perf_counter()
            output = await controller.operate(
                box, f"usp/agent/{box}", f"{MAILBOX}X_GWD_ResetCode()", f"FLEET-{index}"
            )
            times.append(time.perf_counter() - started)
            assert output == {"Status": "Reset"}, output

    await asyncio.gather(*(one(i) for i in range(n)))
    return times


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def bench(args: argparse.Namespace) -> dict[str, object]:
    work = Path(tempfile.mkdtemp(prefix="gatewayd-fleet-"))
    started = time.monotonic()
    pki = Pki.reuse(args.pki) if args.pki and (args.pki / "ca.pem").exists() else None
    if pki is None:
        pki = Pki(args.pki or work / "pki")
        pki.issue(CONTROLLER)
        for index in range(args.agents):
            pki.issue(box_id(index))
    pki_s = time.monotonic() - started
    acl = [
        (CONTROLLER, "read", CONTROLLER_TOPIC),
        (CONTROLLER, "write", "usp/agent/#"),
    ]
    broker = Mosquitto(
        work, pki, acl, pattern_acl=["read usp/agent/%u", f"write {CONTROLLER_TOPIC}"]
    ).start()
    settings = {
        "pki": str(pki.dir),
        "broker_url": broker.url,
        "retry_initial_s": args.retry_initial,
        "retry_multiplier": args.retry_multiplier,
    }
    workers: list[subprocess.Popen[str]] = []
    connections: list[tuple[str, float]] = []

    def read_reports(worker: subprocess.Popen[str]) -> None:
        assert worker.stdout is not None
        for line in worker.stdout:
            _, box, stamp = line.split()
            connections.append((box, float(stamp)))

    result: dict[str, object] = {
        "agents": args.agents,
        "per_process": args.per_process,
        "pki_s": round(pki_s, 1),
    }
    try:
        controller = controller_client(pki, broker.port)
        async with controller:
            connect_started = time.monotonic()
            sizes = [1] + [args.per_process] * (args.agents // args.per_process)
            if args.agents % args.per_process:
                sizes.append(args.agents % args.per_process)
            sizes[-1] -= 1  # the 1-agent worker counts toward N
            first = 0
            for size in sizes:
                if size <= 0:
                    continue
                workers.append(
                    subprocess.Popen(
                        [
                            sys.executable,
                            __file__,
                            "worker",
                            str(first),
                            str(size),
                            json.dumps(settings),
                        ],
                        stdout=subprocess.PIPE,
                        text=True,
                    )
                )
                threading.Thread(target=read_reports, args=(workers[-1],), daemon=True).start()
                first += size
            await wait_connects(controller, args.agents, 300)
            result["connect_all_s"] = round(time.monotonic() - connect_started, 2)
            times = await reset_all(controller, args.agents, args.in_flight)
            result["reset_p50_ms"] = round(pct(times, 0.50) * 1000, 1)
            result["reset_p99_ms"] = round(pct(times, 0.99) * 1000, 1)
            result["reset_max_ms"] = round(max(times) * 1000, 1)
            await asyncio.sleep(1.0)
            assert broker.proc is not None
            result["broker_rss_mib"] = round(rss_kib(broker.proc.pid) / 1024, 1)
            one = rss_kib(workers[0].pid)
            big = [rss_kib(w.pid) for w in workers[1:]]
            result["worker_1_agent_rss_mib"] = round(one / 1024, 1)
            if big:
                per = statistics.mean(big) / args.per_process
                result["worker_rss_mib"] = round(statistics.mean(big) / 1024, 1)
                result["rss_per_agent_kib"] = round(per)
                result["extra_agent_kib"] = round(
                    (statistics.mean(big) - one) / (args.per_process - 1)
                )
        # Broker restart: every agent loses its connection at once.
        broker.stop()
        down = time.monotonic()
        broker.start()
        result["broker_down_s"] = round(time.monotonic() - down, 2)
        controller = controller_client(pki, broker.port)
        async with controller:
            arrivals = await wait_connects(controller, args.agents, 600)
        result["controller_saw_all_s"] = round(arrivals[-1] - down, 2)
        # The agents' own reconnect times (CONNACK + SUBACK), from their reports.
        wall_down = time.time() - (time.monotonic() - down)
        back: list[float] = []
        deadline = time.monotonic() + 10  # the workers report every 0.5 s
        while len(back) < args.agents and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
            latest: dict[str, float] = {}
            for box, stamp in list(connections):
                latest[box] = max(latest.get(box, 0.0), stamp)
            back = sorted(t - wall_down for t in latest.values() if t > wall_down)
        assert len(back) == args.agents, f"{len(back)} agents reported a reconnect"
        result["reconnect_all_s"] = round(back[-1], 2)
        result["reconnect_first_s"] = round(back[0], 2)
        result["reconnect_p10_s"] = round(pct(back, 0.1), 2)
        result["reconnect_p50_s"] = round(pct(back, 0.5), 2)
        result["reconnect_p90_s"] = round(pct(back, 0.9), 2)
        result["reconnect_spread_s"] = round(back[-1] - back[0], 2)
        per_second: dict[int, int] = {}
        for t in back:
            per_second[int(t)] = per_second.get(int(t), 0) + 1
        result["reconnects_per_second_max"] = max(per_second.values())
        result["reconnects_by_second"] = dict(sorted(per_second.items()))
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.wait(10)
        broker.stop()
    return result


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "worker":
        first, count, settings = int(sys.argv[2]), int(sys.argv[3]), json.loads(sys.argv[4])
        os.environ.setdefault("PYTHONUNBUFFERED", "1")
        asyncio.run(run_worker(first, count, settings))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=500)
    parser.add_argument("--per-process", type=int, default=100)
    parser.add_argument("--in-flight", type=int, default=50)
    parser.add_argument(
        "--retry-multiplier",
        type=float,
        default=2.0,
        help="the agents' retry_multiplier; 1 makes every agent retry at exactly retry-initial "
        "(no spread: what a reconnect storm looks like)",
    )
    parser.add_argument("--pki", type=Path, help="keep the certificates here and reuse them")
    parser.add_argument(
        "--retry-initial",
        type=float,
        default=5.0,
        help="the agents' retry_initial_s (TR-369 ConnectRetryTime)",
    )
    args = parser.parse_args()
    import logging

    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("mqtt").setLevel(logging.ERROR)  # aiomqtt warns of each queued publish
    print(json.dumps(asyncio.run(bench(args)), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
