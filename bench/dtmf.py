"""In-band DTMF receivers side by side: ours, spandsp (ctypes) and multimon-ng, one run.

    python3 bench/dtmf.py [--quick] [--cache DIR] [--json FILE]

On the same signals for every receiver:
- the Q.24 conformance suite of ``gatewayd.dtmf.signals`` (points passed, cases passed);
- limit sweeps: frequency band (accepted, rejected), twist (normal, reverse), lowest
  level, shortest tone, longest interruption bridged, lowest SNR, loudest dial tone;
- talk-off: false keys per hour on the corpus ``bench/dtmf_corpus.py`` builds (speech,
  synthetic music);
- CPU seconds per audio hour, fed 20 ms periods (multimon-ng reads its file whole).

Needs Debian's ``libspandsp2`` and ``multimon-ng`` (and sox, espeak-ng for the corpus);
a receiver that is missing is left out with a note. ``--quick`` uses coarser sweeps and
a 10-minute corpus. Prints a Markdown table; CI never runs this.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import json
import os
import resource
import shutil
import subprocess
import sys
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
# As gatewayd.dtmf.detector does, before numpy loads: one BLAS thread for tiny products.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np

from bench.dtmf_corpus import default_cache, ensure_corpus
from gatewayd.dtmf import signals as sg
from gatewayd.dtmf.detector import PERIOD_BYTES, DtmfDetector, KeyStart

AUDIO_RATE = 8000


# --- receivers ---------------------------------------------------------------------------


class Receiver:
    """A DTMF receiver under test: PCM (8 kHz S16) in, key string out."""

    name = "receiver"

    def decode(self, pcm: bytes) -> str:
        """The keys heard in ``pcm``, in order."""
        raise NotImplementedError

    def cpu_seconds(self, pcm: bytes) -> float:
        """CPU seconds spent hearing ``pcm`` (fed 20 ms periods where that applies)."""
        started = time.process_time()
        self.decode(pcm)
        return time.process_time() - started


class Ours(Receiver):
    name = "gatewayd"

    def decode(self, pcm: bytes) -> str:
        detector = DtmfDetector()
        keys = []
        for offset in range(0, len(pcm) - PERIOD_BYTES + 1, PERIOD_BYTES):
            for event in detector.feed(pcm[offset : offset + PERIOD_BYTES]):
                if isinstance(event, KeyStart):
                    keys.append(event.key)
        keys += [e.key for e in detector.flush() if isinstance(e, KeyStart)]
        return "".join(keys)


class Spandsp(Receiver):
    """spandsp 0.0.6 ``dtmf_rx`` through ctypes, digits read with ``dtmf_rx_get``."""

    def __init__(self, lib: ctypes.CDLL, filter_dialtone: bool) -> None:
        self._lib = lib
        self._filter = filter_dialtone
        self.name = "spandsp" + (" +dialtone filter" if filter_dialtone else "")

    @staticmethod
    def load() -> ctypes.CDLL | None:
        path = ctypes.util.find_library("spandsp") or "libspandsp.so.2"
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            return None
        lib.dtmf_rx_init.restype = ctypes.c_void_p
        lib.dtmf_rx_init.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
        lib.dtmf_rx.restype = ctypes.c_int
        lib.dtmf_rx.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
        lib.dtmf_rx_get.restype = ctypes.c_size_t
        lib.dtmf_rx_get.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
        lib.dtmf_rx_parms.restype = None
        lib.dtmf_rx_parms.argtypes = [ctypes.c_void_p] + [ctypes.c_int] * 4
        lib.dtmf_rx_free.argtypes = [ctypes.c_void_p]
        return lib

    def decode(self, pcm: bytes) -> str:
        lib = self._lib
        state = lib.dtmf_rx_init(None, None, None)
        if self._filter:
            # filter_dialtone on; twist, reverse twist and threshold left at their defaults.
            lib.dtmf_rx_parms(state, 1, -1, -1, -99)
        buf = ctypes.create_string_buffer(256)
        keys = []
        samples = PERIOD_BYTES // 2
        # Trailing silence so a key at the very end is reported, as flush() does for ours.
        pcm = pcm + bytes(PERIOD_BYTES * 10)
        for offset in range(0, len(pcm) - PERIOD_BYTES + 1, PERIOD_BYTES):
            lib.dtmf_rx(state, pcm[offset : offset + PERIOD_BYTES], samples)
            got = lib.dtmf_rx_get(state, buf, 128)
            if got:
                keys.append(buf.value[:got].decode())
        lib.dtmf_rx_free(state)
        return "".join(keys)


class Multimon(Receiver):
    """multimon-ng's DTMF demodulator, fed 22050 Hz raw resampled by sox."""

    name = "multimon-ng"

    def decode(self, pcm: bytes) -> str:
        wide = _resample_22050(pcm + bytes(PERIOD_BYTES * 10))
        return self._run(wide)[0]

    @staticmethod
    def _run(wide: bytes) -> tuple[str, float]:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        done = subprocess.run(
            ["multimon-ng", "-q", "-c", "-a", "DTMF", "-t", "raw", "-"],
            input=wide,
            capture_output=True,
            check=True,
        )
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        keys = [
            line.split(":", 1)[1].strip()
            for line in done.stdout.decode().splitlines()
            if line.startswith("DTMF:")
        ]
        return "".join(keys), cpu

    def cpu_seconds(self, pcm: bytes) -> float:
        return self._run(_resample_22050(pcm))[1]


def _resample_22050(pcm: bytes) -> bytes:
    done = subprocess.run(
        [
            "sox",
            "-t",
            "raw",
            "-r",
            "8000",
            "-e",
            "signed",
            "-b",
            "16",
            "-c",
            "1",
            "-",
            "-t",
            "raw",
            "-r",
            "22050",
            "-e",
            "signed",
            "-b",
            "16",
            "-c",
            "1",
            "-",
        ],
        input=pcm,
        capture_output=True,
        check=True,
    )
    return done.stdout


def receivers() -> tuple[list[Receiver], list[str]]:
    """Every receiver available here, and notes on the missing ones."""
    found: list[Receiver] = [Ours()]
    notes = []
    lib = Spandsp.load()
    if lib is None:
        notes.append("spandsp left out: apt-get install libspandsp2")
    else:
        found += [Spandsp(lib, False), Spandsp(lib, True)]
    if shutil.which("multimon-ng") and shutil.which("sox"):
        found.append(Multimon())
    else:
        notes.append("multimon-ng left out: apt-get install multimon-ng sox")
    return found, notes


# --- sweeps --------------------------------------------------------------------------------


@dataclass
class Sweep:
    """A limit: the signals along one axis and how to read the limit off the results."""

    label: str
    unit: str
    values: Sequence[float]
    #: value -> (pcm, expected keys)
    make: Callable[[float], tuple[bytes, str]]
    #: "max": the largest value up to which every value passes (values ascending);
    #: "min": the smallest value from which every larger value passes.
    reading: str
    results: dict[str, float | None] = field(default_factory=dict)


def _rng(label: str, value: float) -> np.random.Generator:
    # crc32, not hash(): str hashes change from one process to the next.
    return np.random.default_rng([zlib.crc32(label.encode()), round(value * 1000) % 2**32])


def _band_accept(error: float) -> tuple[bytes, str]:
    rng = _rng("band-accept", error)
    parts, keys = [], ""
    for key in sg.ALL_KEYS:
        for low, high in ((1, 1), (1, -1), (-1, 1), (-1, -1)):
            shape = sg.ToneShape(low_error=error * low / 100, high_error=error * high / 100)
            parts.append(sg.key_sequence(key, rng, shape=shape, tail_s=0.1))
            keys += key
    return sg.to_pcm(np.concatenate(parts)), keys


def _band_reject(error: float) -> tuple[bytes, str]:
    rng = _rng("band-reject", error)
    parts = []
    for key in sg.ALL_KEYS:
        for shape in (
            sg.ToneShape(low_error=error / 100),
            sg.ToneShape(low_error=-error / 100),
            sg.ToneShape(high_error=error / 100),
            sg.ToneShape(high_error=-error / 100),
        ):
            parts.append(sg.key_sequence(key, rng, shape=shape, tail_s=0.1))
    return sg.to_pcm(np.concatenate(parts)), ""


def _twist(sign: float, twist_db: float) -> tuple[bytes, str]:
    rng = _rng("twist", sign * twist_db)
    shape = sg.ToneShape.twisted(sign * twist_db)
    return sg.to_pcm(sg.key_sequence(sg.ALL_KEYS, rng, shape=shape)), sg.ALL_KEYS


def _level(level: float) -> tuple[bytes, str]:
    rng = _rng("level", level)
    shape = sg.ToneShape(low_dbm0=level, high_dbm0=level)
    return sg.to_pcm(sg.key_sequence(sg.ALL_KEYS, rng, shape=shape)), sg.ALL_KEYS


def _duration(ms: float) -> tuple[bytes, str]:
    rng = _rng("duration", ms)
    signal = sg.key_sequence(sg.ALL_KEYS, rng, on_s=ms / 1000, off_s=0.06)
    return sg.to_pcm(signal), sg.ALL_KEYS


def _interruption(ms: float) -> tuple[bytes, str]:
    rng = _rng("interruption", ms)
    parts = [sg.interrupted_key(key, rng, ms / 1000) for key in sg.ALL_KEYS]
    return sg.to_pcm(np.concatenate(parts)), sg.ALL_KEYS


def _noise(snr_db: float) -> tuple[bytes, str]:
    rng = _rng("noise", snr_db)
    parts = [sg.noisy_keys(rng, snr_db) for _ in range(3)]
    return sg.to_pcm(np.concatenate(parts)), sg.ALL_KEYS * 3


def _dial(over_db: float) -> tuple[bytes, str]:
    rng = _rng("dial", over_db)
    return sg.to_pcm(sg.keys_over_dial_tone(rng, over_db)), sg.ALL_KEYS


def sweeps(quick: bool) -> list[Sweep]:
    """The limit sweeps (coarser steps with ``quick``)."""
    step = 2 if quick else 1

    def span(lo: float, hi: float, inc: float) -> list[float]:
        count = round((hi - lo) / (inc * step))
        return [round(lo + i * inc * step, 3) for i in range(count + 1)]

    return [
        Sweep("frequency error accepted (both tones)", "%", span(0, 5, 0.25), _band_accept, "max"),
        Sweep(
            "frequency error rejected from (one tone)", "%", span(1, 7, 0.25), _band_reject, "min"
        ),
        Sweep("twist, high group weaker", "dB", span(0, 16, 0.5), partial(_twist, 1.0), "max"),
        Sweep("twist, high group stronger", "dB", span(0, 12, 0.5), partial(_twist, -1.0), "max"),
        Sweep("lowest level per tone", "dBm0", span(-60, 0, 1), _level, "min"),
        Sweep("shortest tone accepted", "ms", span(10, 60, 1), _duration, "min"),
        Sweep("longest interruption bridged", "ms", span(0, 40, 1), _interruption, "max"),
        Sweep("lowest SNR, white noise", "dB", span(0, 30, 1), _noise, "min"),
        Sweep("loudest dial tone over the pair", "dB", span(0, 30, 1), _dial, "max"),
    ]


def read_limit(sweep: Sweep, passed: dict[float, bool]) -> float | None:
    """The limit a receiver reached along a sweep (None: not even the easiest value)."""
    values = sorted(sweep.values)
    if sweep.reading == "max":
        best = None
        for value in values:
            if not passed[value]:
                break
            best = value
        return best
    best = None
    for value in reversed(values):
        if not passed[value]:
            break
        best = value
    return best


# --- the run -------------------------------------------------------------------------------


def run(quick: bool, cache: Path) -> dict[str, object]:
    """Everything measured, as a dict (also printed as a table by main)."""
    found, notes = receivers()
    results: dict[str, dict[str, object]] = {r.name: {} for r in found}

    cases = sg.conformance_suite()
    built = [(case, case.build()) for case in cases]
    for receiver in found:
        by_point: dict[str, list[bool]] = {}
        failed = []
        for case, pcm in built:
            ok = receiver.decode(pcm) == case.expected
            by_point.setdefault(case.point, []).append(ok)
            if not ok:
                failed.append(case.name)
        results[receiver.name]["points"] = {p: all(v) for p, v in by_point.items()}
        results[receiver.name]["cases_passed"] = sum(sum(v) for v in by_point.values())
        results[receiver.name]["failed_cases"] = failed
        print(f"suite: {receiver.name}: {len(cases) - len(failed)}/{len(cases)} cases", flush=True)

    for sweep in sweeps(quick):
        signals = {value: sweep.make(value) for value in sweep.values}
        for receiver in found:
            passed = {v: receiver.decode(pcm) == keys for v, (pcm, keys) in signals.items()}
            limits = results[receiver.name].setdefault("limits", {})
            assert isinstance(limits, dict)
            limits[sweep.label] = read_limit(sweep, passed)
        print(f"sweep: {sweep.label}", flush=True)

    minutes, music_minutes = (10.0, 3.0) if quick else (64.0, 12.0)
    corpus_cache = cache / "quick" if quick else cache
    speech, music, manifest = ensure_corpus(corpus_cache, minutes, music_minutes)
    for label, path in (("speech", speech), ("music", music)):
        pcm = path.read_bytes()
        hours = len(pcm) / 2 / AUDIO_RATE / 3600
        for receiver in found:
            keys = receiver.decode(pcm)
            results[receiver.name][f"false_per_hour_{label}"] = len(keys) / hours
            results[receiver.name][f"false_keys_{label}"] = keys
        print(f"talk-off: {label} ({hours * 60:.0f} min)", flush=True)
    pcm = speech.read_bytes()
    hours = len(pcm) / 2 / AUDIO_RATE / 3600
    for receiver in found:
        results[receiver.name]["cpu_s_per_audio_hour"] = receiver.cpu_seconds(pcm) / hours
    return {
        "quick": quick,
        "notes": notes,
        "corpus": {
            "speech_minutes": manifest_minutes(manifest, "speech"),
            "music_minutes": manifest_minutes(manifest, "music"),
        },
        "suite": {"cases": len(cases), "points": list(sg.POINTS)},
        "receivers": results,
        "sweeps": [
            (s.label, s.unit, s.reading, min(s.values), max(s.values)) for s in sweeps(quick)
        ],
    }


def manifest_minutes(manifest: dict[str, object], part: str) -> float:
    section = manifest.get(part)
    seconds = section.get("seconds", 0.0) if isinstance(section, dict) else 0.0
    return round(float(seconds) / 60, 1)


def _limit_cell(value: float | None, unit: str, reading: str, lo: float, hi: float) -> str:
    """A limit as read off its sweep, saying when it lies beyond the swept range."""
    if reading == "max":
        if value is None:
            return f"< {lo:g} {unit}"
        return f"≥ {hi:g} {unit}" if value == hi else f"{value:g} {unit}"
    if value is None:
        return f"> {hi:g} {unit}"
    return f"≤ {lo:g} {unit}" if value == lo else f"{value:g} {unit}"


def table(report: dict[str, object]) -> str:
    """The Markdown table of a report."""
    receivers_ = report["receivers"]
    assert isinstance(receivers_, dict)
    names = list(receivers_)
    suite = report["suite"]
    assert isinstance(suite, dict)
    lines = ["| | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]

    def row(label: str, cells: list[str]) -> None:
        lines.append(f"| {label} | " + " | ".join(cells) + " |")

    points = suite["points"]
    row(
        f"Q.24 points passed (of {len(points)})",
        [f"**{sum(receivers_[n]['points'].values())}**" for n in names],
    )
    row(
        f"cases passed (of {suite['cases']})",
        [str(receivers_[n]["cases_passed"]) for n in names],
    )
    for point in points:
        row(
            f"&nbsp;&nbsp;{sg.POINTS[point]}",
            ["pass" if receivers_[n]["points"][point] else "**FAIL**" for n in names],
        )
    sweeps_ = report["sweeps"]
    assert isinstance(sweeps_, list)
    for label, unit, reading, lo, hi in sweeps_:
        cells = []
        for n in names:
            value = receivers_[n]["limits"][label]
            cells.append(_limit_cell(value, unit, reading, lo, hi))
        row(label, cells)
    corpus = report["corpus"]
    assert isinstance(corpus, dict)
    row(
        f"false keys per hour, speech ({corpus['speech_minutes']:g} min fr+en)",
        [f"{receivers_[n]['false_per_hour_speech']:.1f}" for n in names],
    )
    row(
        f"false keys per hour, synthetic music ({corpus['music_minutes']:g} min)",
        [f"{receivers_[n]['false_per_hour_music']:.1f}" for n in names],
    )
    row(
        "CPU s per audio hour (20 ms periods)",
        [
            f"{receivers_[n]['cpu_s_per_audio_hour']:.2f}"
            + (" (whole file)" if n == "multimon-ng" else "")
            for n in names
        ],
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run everything, print the table, save the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="coarse sweeps, 10-minute corpus")
    parser.add_argument("--cache", type=Path, default=default_cache())
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    started = time.monotonic()
    report = run(args.quick, args.cache)
    report["wall_seconds"] = round(time.monotonic() - started, 1)
    out = args.json or args.cache / ("dtmf-bench-quick.json" if args.quick else "dtmf-bench.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print()
    print(table(report))
    for note in report["notes"] if isinstance(report["notes"], list) else []:
        print(f"note: {note}")
    print(f"\n(results: {out}; {report['wall_seconds']} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
