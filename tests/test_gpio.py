"""GPIO backends: one suite for every backend that loads here, plus the registry's errors.

The shared suite runs each backend on a loopback: an output wired to an input.
The fake wires it with ``connect()``; on a board, wire two pins together and set
``GATEWAYD_TEST_GPIO_PINS=OUT,IN`` (BCM numbers for ``rpi``, line offsets on
``GATEWAYD_TEST_GPIO_CHIP`` for ``gpiod``). A backend that cannot run here is
skipped with its own "unavailable" message as the reason.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gatewayd.errors import DeviceError, GatewaydError, ProfileError
from gatewayd.gpio import (
    BACKENDS,
    BackendUnavailableError,
    GpioBackend,
    GpioError,
    UnknownBackendError,
    open_backend,
)
from gatewayd.gpio.fake import FakeGpio, HistoryEntry
from gatewayd.gpio.rpi import explain_failure

CHIP = os.environ.get("GATEWAYD_TEST_GPIO_CHIP", "/dev/gpiochip0")
LOOPBACK = os.environ.get("GATEWAYD_TEST_GPIO_PINS", "")
DEBOUNCE_MS = 20.0
MS = 1_000_000


def on_a_raspberry_pi() -> bool:
    model = Path("/proc/device-tree/model")
    return model.exists() and "Raspberry Pi" in model.read_text(errors="replace")


@dataclass
class Rig:
    """A backend with ``out_pin`` wired to ``in_pin``, and a way to let time pass."""

    backend: GpioBackend
    out_pin: int
    in_pin: int
    let_pass: Callable[[float], None]  # ms of (virtual or real) time
    now_ns: Callable[[], int]
    virtual_time: bool


def _fake_rig() -> Rig:
    gpio = FakeGpio(clock_ns=1_000 * MS)
    gpio.connect(5, 6)
    return Rig(gpio, 5, 6, gpio.advance, lambda: gpio.now_ns, virtual_time=True)


def _hardware_rig(name: str) -> tuple[Rig, asyncio.AbstractEventLoop | None]:
    loop = asyncio.new_event_loop() if name == "gpiod" else None
    options: dict[str, Any] = {"chip": CHIP, "loop": loop} if name == "gpiod" else {}
    try:
        gpio = open_backend(name, **options)
    except BackendUnavailableError as exc:
        if loop is not None:
            loop.close()
        pytest.skip(str(exc))
    if not LOOPBACK:
        gpio.close()
        if loop is not None:
            loop.close()
        pytest.skip(f"wire two pins together and set GATEWAYD_TEST_GPIO_PINS=OUT,IN to test {name}")
    out_pin, in_pin = (int(p) for p in LOOPBACK.split(","))

    def let_pass(ms: float) -> None:
        if loop is not None:  # gpiod delivers edges on the loop: run it
            loop.run_until_complete(asyncio.sleep(ms / 1000))
        else:
            time.sleep(ms / 1000)

    return Rig(gpio, out_pin, in_pin, let_pass, time.monotonic_ns, virtual_time=False), loop


@pytest.fixture(params=sorted(BACKENDS))
def rig(request: pytest.FixtureRequest) -> Iterator[Rig]:
    loop = None
    if request.param == "fake":
        made = _fake_rig()
    else:
        made, loop = _hardware_rig(request.param)
    yield made
    made.backend.close()
    if loop is not None:
        loop.close()


# --- the shared suite -----------------------------------------------------------


def test_an_output_drives_the_wire_and_reads_back(rig: Rig) -> None:
    gpio = rig.backend
    gpio.setup_output(rig.out_pin, False)
    gpio.setup_input(rig.in_pin, pull="down")
    assert (gpio.read(rig.out_pin), gpio.read(rig.in_pin)) == (False, False)
    gpio.write(rig.out_pin, True)
    rig.let_pass(1)
    assert (gpio.read(rig.out_pin), gpio.read(rig.in_pin)) == (True, True)
    gpio.write(rig.out_pin, False)
    rig.let_pass(1)
    assert (gpio.read(rig.out_pin), gpio.read(rig.in_pin)) == (False, False)


def test_a_level_change_is_reported_once_after_the_debounce(rig: Rig) -> None:
    gpio = rig.backend
    edges: list[tuple[int, bool, int]] = []
    gpio.setup_output(rig.out_pin, False)
    gpio.setup_input(rig.in_pin, pull="down", debounce_ms=DEBOUNCE_MS, callback=_append(edges))
    rise_at = rig.now_ns()
    gpio.write(rig.out_pin, True)
    if rig.virtual_time:  # only a virtual clock can say "not yet" without a race
        rig.let_pass(DEBOUNCE_MS - 1)
        assert edges == []
    rig.let_pass(DEBOUNCE_MS + 40)
    assert [(pin, level) for pin, level, _ in edges] == [(rig.in_pin, True)]
    assert rise_at + DEBOUNCE_MS * MS <= edges[0][2] <= rig.now_ns()

    fall_at = rig.now_ns()
    gpio.write(rig.out_pin, False)
    rig.let_pass(DEBOUNCE_MS + 40)
    assert [(pin, level) for pin, level, _ in edges] == [(rig.in_pin, True), (rig.in_pin, False)]
    assert fall_at + DEBOUNCE_MS * MS <= edges[1][2] <= rig.now_ns()


def test_a_glitch_shorter_than_the_debounce_is_not_reported(rig: Rig) -> None:
    gpio = rig.backend
    edges: list[tuple[int, bool, int]] = []
    gpio.setup_output(rig.out_pin, False)
    gpio.setup_input(rig.in_pin, pull="down", debounce_ms=DEBOUNCE_MS, callback=_append(edges))
    gpio.write(rig.out_pin, True)
    rig.let_pass(DEBOUNCE_MS / 2 if rig.virtual_time else 0)
    gpio.write(rig.out_pin, False)
    rig.let_pass(DEBOUNCE_MS + 40)
    assert edges == []


def test_close_restores_idle_outputs_releases_lines_and_can_run_twice(rig: Rig) -> None:
    gpio = rig.backend
    gpio.setup_output(rig.out_pin, False)
    gpio.setup_input(rig.in_pin, pull="down")
    gpio.write(rig.out_pin, True)
    gpio.close()
    gpio.close()
    assert gpio.closed
    with pytest.raises(GpioError, match="closed"):
        gpio.read(rig.in_pin)
    with pytest.raises(GpioError, match="closed"):
        gpio.setup_output(rig.out_pin, True)
    if isinstance(gpio, FakeGpio):
        assert gpio.level(rig.out_pin) is False


def test_misuse_is_refused_with_the_pin_named(rig: Rig) -> None:
    gpio = rig.backend
    gpio.setup_input(rig.in_pin, pull="down")
    with pytest.raises(GpioError, match=f"GPIO {rig.out_pin} was not set up"):
        gpio.read(rig.out_pin)
    with pytest.raises(GpioError, match=f"GPIO {rig.in_pin} is an input"):
        gpio.write(rig.in_pin, True)
    with pytest.raises(GpioError, match=f"GPIO {rig.in_pin} is already set up"):
        gpio.setup_output(rig.in_pin, False)
    with pytest.raises(GpioError, match="pull must be one of up, down, off"):
        gpio.setup_input(rig.out_pin, pull="sideways")  # type: ignore[arg-type]
    with pytest.raises(GpioError, match="debounce_ms must be >= 0"):
        gpio.setup_input(rig.out_pin, debounce_ms=-1)


def _append(edges: list[tuple[int, bool, int]]) -> Callable[[int, bool, int], None]:
    return lambda pin, level, t_ns: edges.append((pin, level, t_ns))


# --- the fake's outside world -------------------------------------------------------


def test_fake_bounce_storm_reports_one_edge_once_the_wire_is_stable() -> None:
    gpio = FakeGpio()
    edges: list[tuple[int, bool, int]] = []
    gpio.setup_input(17, pull="down", debounce_ms=10, callback=_append(edges))
    gpio.chatter(17, hz=1000, duration_ms=200, final_level=True)
    assert gpio.now_ns == 200 * MS
    assert edges == []
    gpio.advance(9.9)
    assert edges == []
    gpio.advance(0.2)
    assert edges == [(17, True, 210 * MS)]
    flips = [entry for entry in gpio.history if entry.pin == 17]
    assert len(flips) == 399  # every 0.5 ms for 200 ms, the last one at the end
    assert all(b.t_ns - a.t_ns <= MS for a, b in itertools.pairwise(flips))
    assert flips[-1] == HistoryEntry(200 * MS, 17, True, "in")


def test_fake_drive_at_a_time_reports_pending_edges_in_time_order() -> None:
    gpio = FakeGpio()
    edges: list[tuple[int, bool, int]] = []
    gpio.setup_input(1, debounce_ms=5, callback=_append(edges))
    gpio.setup_input(2, debounce_ms=1, callback=_append(edges))
    gpio.drive(1, True, at_ns=10 * MS)
    gpio.drive(2, True, at_ns=12 * MS)
    gpio.drive(1, False, at_ns=30 * MS)  # first moves the clock past both debounces
    assert edges == [(2, True, 13 * MS), (1, True, 15 * MS)]
    assert gpio.read(1) is False  # read() is the raw wire, not the debounced level
    with pytest.raises(GpioError, match="cannot go back"):
        gpio.drive(1, True, at_ns=29 * MS)


def test_fake_outputs_are_logged_and_cannot_be_driven_by_the_world() -> None:
    gpio = FakeGpio()
    gpio.setup_output(4, True)
    gpio.advance(3)
    gpio.write(4, True)  # no change, no entry
    gpio.write(4, False)
    assert gpio.history == [HistoryEntry(0, 4, True, "out"), HistoryEntry(3 * MS, 4, False, "out")]
    assert gpio.level(4) is False
    with pytest.raises(GpioError, match="output of gatewayd"):
        gpio.drive(4, True)


def test_fake_pull_up_input_reads_high_until_driven_low() -> None:
    gpio = FakeGpio()
    gpio.setup_input(3, pull="up")
    assert gpio.read(3) is True
    gpio.drive(3, False)
    assert gpio.read(3) is False


# --- the registry -------------------------------------------------------------------


def test_an_unknown_backend_name_lists_the_known_ones() -> None:
    with pytest.raises(UnknownBackendError) as caught:
        open_backend("nope")
    assert isinstance(caught.value, ProfileError)
    assert isinstance(caught.value, GatewaydError)
    assert "'nope'" in str(caught.value)
    assert "fake, gpiod, rpi" in str(caught.value)


def test_an_option_the_backend_does_not_take_is_a_profile_error() -> None:
    with pytest.raises(ProfileError, match=r"'fake' does not take option.*chip.*clock_ns"):
        open_backend("fake", chip="/dev/gpiochip0")


def test_open_fake_by_name() -> None:
    with open_backend("fake") as gpio:
        assert isinstance(gpio, FakeGpio)
        assert "caller's thread" in gpio.edge_thread


def test_importing_the_backends_loads_no_gpio_library() -> None:
    code = (
        "import sys, gatewayd.gpio, gatewayd.gpio.rpi, gatewayd.gpio.gpiod_backend;"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('RPi', 'gpiod')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


@pytest.mark.skipif(on_a_raspberry_pi(), reason="RPi.GPIO can run on this board")
def test_rpi_off_a_pi_is_unavailable_and_says_what_to_use() -> None:
    with pytest.raises(BackendUnavailableError) as caught:
        open_backend("rpi")
    assert isinstance(caught.value, DeviceError)
    message = str(caught.value)
    assert "'rpi'" in message
    assert 'gpio_backend = "gpiod"' in message


def test_rpi_without_the_library_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "RPi", None)  # what `import RPi.GPIO` sees when absent
    monkeypatch.setitem(sys.modules, "RPi.GPIO", None)
    # gatewayd is on no index: the hint installs the library itself, with this venv's pip
    with pytest.raises(BackendUnavailableError, match=r"bin/pip install 'RPi.GPIO>=0.7'") as err:
        open_backend("rpi")
    assert "gatewayd[" not in str(err.value)


def test_rpi_on_a_pi_5_says_to_use_gpiod() -> None:
    message = explain_failure(RuntimeError("Cannot determine SOC peripheral base address"))
    assert 'gpio_backend = "gpiod"' in message
    assert "Pi 5" in message
    assert "Cannot determine SOC peripheral base address" in message  # the original cause
    kernel = explain_failure(RuntimeError("Failed to add edge detection"))
    assert 'gpio_backend = "gpiod"' in kernel
    assert "rpi-lgpio" in kernel


def test_gpiod_without_the_library_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "gpiod", None)
    with pytest.raises(BackendUnavailableError, match=r"bin/pip install 'gpiod>=2.1'") as err:
        open_backend("gpiod", chip="/dev/gpiochip0")
    assert "gatewayd[" not in str(err.value)


def _require_gpiod() -> None:
    try:
        import gpiod  # noqa: F401
    except ImportError:
        with pytest.raises(BackendUnavailableError) as caught:
            open_backend("gpiod")
        pytest.skip(str(caught.value))


def test_gpiod_names_a_missing_chip() -> None:
    _require_gpiod()
    with pytest.raises(BackendUnavailableError) as caught:
        open_backend("gpiod", chip="/dev/gpiochip99")
    assert "/dev/gpiochip99" in str(caught.value)
    assert "does not exist" in str(caught.value)
    assert "gpiodetect" in str(caught.value)


def test_gpiod_refuses_a_device_that_is_not_a_gpio_chip() -> None:
    _require_gpiod()
    with pytest.raises(BackendUnavailableError, match="/dev/null is not a usable GPIO chip"):
        open_backend("gpiod", chip="/dev/null")
