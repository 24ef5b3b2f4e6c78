"""Where the sim daemon's memory goes, and what a stored message or a control client adds.

    python3 bench/memory.py [--clients 200] [--messages 30]

- the daemon after start: VmRSS and ``/proc/PID/smaps_rollup`` (shared clean: libpython,
  libcrypto... mapped from files; private dirty: the Python heap);
- the interpreter floor: ``python -c pass``, ``import asyncio``, asyncio + alsaaudio + tinydb;
- per connected control client: RSS with N ``events`` streams open, minus RSS with none;
- per stored message: the Python heap (tracemalloc) of a ``MessageStore`` holding N
  messages, divided by N (the index is in memory; the audio stays on disk).
"""

from __future__ import annotations

import argparse
import re
import socket
import subprocess
import sys
import tempfile
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gatewayd.pcm import FRAME_BYTES, RATE
from gatewayd.voicemail.messages import MessageStore, StoreLimits
from tests.daemon_process import DaemonProcess, make_profile


def status_kb(pid: int | str, field: str = "VmRSS") -> int:
    text = Path(f"/proc/{pid}/status").read_text()
    match = re.search(rf"^{field}:\s+(\d+)", text, re.MULTILINE)
    assert match is not None
    return int(match.group(1))


def rollup(pid: int) -> dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, value = line.split(":", 1)
        fields[name] = int(value.split()[0])
    return fields


def floor(code: str) -> int:
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport re;print(open('/proc/self/status').read())"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    match = re.search(r"^VmRSS:\s+(\d+)", out, re.MULTILINE)
    assert match is not None
    return int(match.group(1))


def per_client(clients: int) -> tuple[int, float]:
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        profile = make_profile(tmp)
        # Room for the clients (the default is 32 per socket): the growth shows above noise.
        profile.write_text(profile.read_text() + f"\n[sockets]\nmax_clients = {clients + 8}\n")
        daemon = DaemonProcess(tmp, profile).start()
        assert daemon.proc is not None
        pid = daemon.proc.pid
        try:
            daemon.ctl("status")  # the console module loads at the first client
            first = rollup(pid)
            alone = status_kb(pid)
            streams = []
            for _ in range(clients):
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.connect(str(daemon.runtime_dir / "ctl.sock"))
                sock.sendall(b"events --json\n")
                sock.recv(4096)  # "subscribed": the stream is live
                streams.append(sock)
            daemon.ctl("status")
            crowded = status_kb(pid)
            for sock in streams:
                sock.close()
        finally:
            daemon.stop()
    return first["Rss"], (crowded - alone) / clients


def per_message(messages: int) -> float:
    second = b"\x10\x00" * RATE  # one second of a quiet tone-less signal
    with tempfile.TemporaryDirectory() as tmp_name:
        tracemalloc.start()
        with MessageStore(Path(tmp_name), StoreLimits(max_messages=messages + 1)) as store:
            before = tracemalloc.get_traced_memory()[0]
            for _ in range(messages):
                writer = store.writer("0612345678")
                writer.write(second * 3)
                writer.finish()
            after = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
    assert len(second) == RATE * FRAME_BYTES
    return (after - before) / messages


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--messages", type=int, default=29)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        daemon = DaemonProcess(tmp, make_profile(tmp)).start()
        assert daemon.proc is not None
        start = rollup(daemon.proc.pid)
        daemon.stop()
    rss, client_kb = per_client(args.clients)
    print("| memory of the sim daemon | kB |")
    print("|---|---:|")
    print(f"| RSS after start | {start['Rss']} |")
    print(f"| of which shared clean (libraries mapped from files) | {start['Shared_Clean']} |")
    print(f"| of which private dirty (Python heap, stacks) | {start['Private_Dirty']} |")
    print(f"| PSS after start | {start['Pss']} |")
    print(f"| floor: `python -c pass` | {floor('pass')} |")
    print(f"| floor: `import asyncio` | {floor('import asyncio')} |")
    no_ssl = "import sys; sys.modules['ssl'] = None; import asyncio"
    print(f"| floor: `import asyncio` without ssl (as `gatewayd run`) | {floor(no_ssl)} |")
    with_crypto = no_ssl + ", hashlib"
    print(f"| floor: that + hashlib (OpenSSL's libcrypto: scrypt) | {floor(with_crypto)} |")
    everything = with_crypto + ", alsaaudio, tinydb"
    print(f"| floor: that + alsaaudio + tinydb (no gatewayd code yet) | {floor(everything)} |")
    print(f"| RSS after the first control client (console loaded) | {rss} |")
    print(f"| per connected `events` client ({args.clients} open) | {client_kb:.0f} |")
    message_kb = per_message(args.messages) / 1024
    print(f"| per stored message (index, {args.messages} messages) | {message_kb:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
