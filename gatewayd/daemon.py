"""The daemon: one asyncio loop wiring profile -> line driver -> IVR -> audio, store and sockets.

No polling loop and no busy wait: line events arrive from sockets or file
descriptors, IVR timers are ``loop.call_later`` handles, audio runs on the
player's own thread and reports back with ``call_soon_threadsafe``. SIGTERM,
SIGINT and a fatal error all run :meth:`Daemon.close`. SIGHUP reloads nothing
(the profile is read at start): it is logged and log files are reopened.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import logging
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gatewayd import __version__
from gatewayd.audio import AlsaPlayer, AudioClip, AudioOutput, Clip, ToneClip
from gatewayd.control import ControlServer
from gatewayd.errors import GatewaydError, PepperError
from gatewayd.eventbus import EventBus
from gatewayd.events import (
    Action,
    Answer,
    CancelTimer,
    CheckCode,
    CodeChecked,
    ComposedPrompt,
    Digit,
    Hangup,
    LineEvent,
    LineFault,
    MessageAudio,
    Notify,
    OwnGreeting,
    PendingGreeting,
    Play,
    PlaybackDone,
    PlayTone,
    PromptRef,
    Ring,
    RingStation,
    StartRecording,
    StartTimer,
    StopAudio,
    StopRecording,
    TimerExpired,
)
from gatewayd.line import open_line
from gatewayd.line.base import LineDriver
from gatewayd.logsetup import current_level, set_level
from gatewayd.mailbox import MailboxService
from gatewayd.paths import (
    CTL_SOCKET,
    STATE_FILE,
    resolve_pepper_path,
    resolve_runtime_dir,
    resolve_state_dir,
)
from gatewayd.profile import Profile, load_profile
from gatewayd.prompts import PromptCatalogue, default_audio_dir
from gatewayd.sdnotify import notify, watchdog_interval
from gatewayd.statelock import StateLock
from gatewayd.tones import PERIOD_FRAMES, RATE, TonePlan, tone_periods
from gatewayd.unixsock import RepeatedLog, set_client_limit
from gatewayd.voicemail.hashing import (
    CodeHasher,
    create_pepper,
    load_pepper,
    pepper_fingerprint,
)
from gatewayd.voicemail.ivr import Ivr
from gatewayd.voicemail.policy import SecretCodeService
from gatewayd.voicemail.store import Store
from gatewayd.worker import compare_off_loop

if TYPE_CHECKING:  # imported when used: a `run` that never needs them does not load them
    from gatewayd.eventtypes import PromptEvent
    from gatewayd.selftest import Check
    from gatewayd.serial_console import SerialConsole
    from gatewayd.usp.agent import UspAgent

LOGGER = logging.getLogger(__name__)


class Daemon:
    """One box: the profile's line, audio, store and sockets around the voicemail IVR."""

    def __init__(self, profile: Profile, state_dir: Path, runtime_dir: Path) -> None:
        self.profile = profile
        self.state_dir = state_dir
        self.runtime_dir = runtime_dir
        self.bus = EventBus()
        self._clock = time.monotonic
        self._state_lock: StateLock | None = None
        self._store: Store | None = None
        self._mailbox: MailboxService | None = None
        self._service: SecretCodeService | None = None
        self._ivr: Ivr | None = None
        self._player: AudioOutput | None = None
        self._prompts: PromptCatalogue | None = None
        self._tones = TonePlan.france()
        self._line: LineDriver | None = None
        self._control: ControlServer | None = None
        self._serial_console: SerialConsole | None = None
        self._console_tasks: set[asyncio.Task[None]] = set()
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._watchdog: asyncio.TimerHandle | None = None
        self._closed = False
        self._line_closing = False
        self._last_keys: list[str] = []
        self._usp: UspAgent | None = None

    # --- life cycle ------------------------------------------------------------

    async def start(self) -> None:
        """Open everything in dependency order; raises GatewaydError with the fix on failure."""
        self._loop = asyncio.get_running_loop()
        self._loop.set_exception_handler(_quiet_exception_handler(RepeatedLog(self._clock)))
        self._stopping = asyncio.Event()
        self._handle_signals()
        profile = self.profile
        set_client_limit(profile.sockets.max_clients)
        voicemail = profile.voicemail
        self._state_lock = StateLock.acquire(self.state_dir)  # one daemon per state
        self._store = Store(self.state_dir / STATE_FILE)
        self._store.check_writable()  # a state that cannot count a try must not serve calls
        pepper = self._pepper()
        self._store.check_pepper(
            pepper_fingerprint(pepper), resolve_pepper_path(self.profile, self.state_dir)
        )
        hasher = CodeHasher(
            pepper,
            n=voicemail.policy.scrypt_n,
            r=voicemail.policy.scrypt_r,
            p=voicemail.policy.scrypt_p,
        )
        self._service = SecretCodeService(
            self._store, hasher, voicemail.policy, self._clock, line_number=voicemail.line_number
        )
        self._mailbox = MailboxService(
            self.state_dir, voicemail.mailbox, self._store, self.bus.publish, self.feed
        )
        self._ivr = Ivr(self._service, voicemail, self._clock, self._mailbox)
        self._tones = TonePlan.from_mapping(
            profile.tones, str(profile.source), base=TonePlan.france()
        )
        self._prompts = PromptCatalogue.load(
            default_audio_dir(), voicemail.language, voicemail.keys
        )
        self._line = open_line(profile, self.feed, self.runtime_dir)
        await self._line.start()
        self._player = self._line.audio_output() or AlsaPlayer.open_with_fallback(
            profile.audio.playback, allow_null_fallback=profile.line.driver == "sim"
        )
        self._control = ControlServer(self.runtime_dir / CTL_SOCKET, self, self.bus)
        await self._control.start()
        if profile.console is not None:
            self._serial_console = self._make_serial_console(hasher)
            await self._serial_console.start()
        if profile.usp is not None:
            self._usp = self._start_usp(profile.usp)
        LOGGER.info(
            "gatewayd %s ready: profile %s (%s), state %s, sockets in %s",
            __version__,
            profile.name,
            profile.line.driver,
            self._store.path,
            self.runtime_dir,
        )
        notify(f"READY=1\nSTATUS=serving {profile.name}")
        # What start-up made lives as long as the daemon: keep it out of every GC pass.
        gc.collect()
        gc.freeze()
        interval = watchdog_interval()
        if interval:
            self._watchdog = self._loop.call_later(interval, self._ping_watchdog, interval)

    def _handle_signals(self) -> None:
        """SIGTERM/SIGINT stop, SIGHUP is logged: at once, not in serve(), so that a
        SIGTERM right after READY=1 runs close() instead of killing the process."""
        assert self._loop is not None
        try:
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._loop.add_signal_handler(sig, self.stop, sig.name)
            self._loop.add_signal_handler(signal.SIGHUP, _on_sighup)
        except (ValueError, RuntimeError):  # not the main thread (tests embedding the daemon)
            LOGGER.debug("signals not handled: the loop is not in the main thread")

    def _make_serial_console(self, hasher: CodeHasher) -> SerialConsole:
        """The technician's console on ``[console]``; its login checks the technician code."""
        from gatewayd.console import Console, TechnicianAuth
        from gatewayd.serial_console import SerialConsole

        assert self._store is not None and self.profile.console is not None
        auth = TechnicianAuth(self._store, hasher, self._clock)
        console = Console(self, "console", interactive=True, auth=auth, clock=self._clock)
        return SerialConsole(
            self.profile.console.port,
            self.profile.console.baudrate,
            console,
            self.bus,
            banner=f"gatewayd {__version__} technician console, board {self.profile.board.name}",
        )

    def _start_usp(self, table: dict[str, object]) -> UspAgent | None:
        """The TR-369 agent of ``[usp]``: one more client of the service, like the console.

        A bad ``[usp]`` table stops the start (ProfileError); unusable TLS files only
        disable management, so the subscriber keeps the service.
        """
        from gatewayd.usp import require_usp

        ssl_entry: object = sys.modules.get("ssl", sys)
        if ssl_entry is None:
            del sys.modules["ssl"]  # `run` kept TLS out; the agent speaks MQTT over TLS
        require_usp()
        from gatewayd.usp.agent import UspError, start_agent

        try:
            return start_agent(
                table,
                self.profile.source,
                self,
                self.bus,
                self.state_dir,
                model=self.profile.board.name,
            )
        except UspError as exc:
            LOGGER.error("%s; the box runs without operator management", exc)
            return None

    def _pepper(self) -> bytes:
        path = resolve_pepper_path(self.profile, self.state_dir)
        try:
            return load_pepper(path)
        except PepperError:
            if not (self.profile.storage.create_pepper and not path.exists()):
                raise
        create_pepper(path)
        LOGGER.warning(
            "sim profile: created a pepper for this box at %s (hardware profiles never do: "
            "they are provisioned with `gatewayd provision`)",
            path,
        )
        return load_pepper(path)

    async def serve(self) -> None:
        """Run until SIGTERM/SIGINT or :meth:`stop`."""
        assert self._loop is not None and self._stopping is not None
        await self._stopping.wait()

    def stop(self, why: str = "stop") -> None:
        """Ask the daemon to shut down (from the loop thread)."""
        LOGGER.info("shutting down (%s)", why)
        if self._stopping is not None:
            self._stopping.set()

    async def close(self) -> None:
        """The one shutdown path: stop audio, remove sockets, close line and store. Idempotent."""
        if self._closed:
            return
        self._closed = True
        notify("STOPPING=1")
        if self._watchdog is not None:
            self._watchdog.cancel()
        # The line first: no ring, key or answer may reach the call flow once we stop.
        line, self._line_closing = self._line, True
        if line is not None:
            await line.close()
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        if self._player is not None:
            self._player.close()
        for task in self._console_tasks:
            task.cancel()
        if self._usp is not None:
            await self._usp.close()
        if self._serial_console is not None:
            await self._serial_console.close()
        if self._control is not None:
            await self._control.close()
        if self._mailbox is not None:
            self._mailbox.close()  # a recording in progress is kept, as on a hang-up
        if self._store is not None:
            self._store.close()
        if self._state_lock is not None:
            self._state_lock.release()
        LOGGER.info("stopped")

    def _ping_watchdog(self, interval: float) -> None:
        # Runs on the loop: if the loop stalls, the pings stop and systemd restarts us.
        if self._health_ok():
            notify("WATCHDOG=1")
        else:
            LOGGER.error("health check failed; withholding the watchdog ping")
        assert self._loop is not None
        self._watchdog = self._loop.call_later(interval, self._ping_watchdog, interval)

    def _health_ok(self) -> bool:
        """The state file can be read (on disk, not a cache) and written; a write did not fail."""
        assert self._store is not None and self._service is not None
        try:
            self._store.check_readable()
        except Exception:
            LOGGER.exception("state file unreadable")
            return False
        try:
            self._store.check_writable()
        except GatewaydError as exc:
            LOGGER.error("state not writable: %s", exc)
            return False
        if not self._service.writable:
            LOGGER.error("a write of the state failed; code checks are stopped")
            return False
        return True

    # --- events in, actions out ---------------------------------------------------

    def feed(self, event: LineEvent) -> None:
        """A line event (from a driver, a timer or the player): run the IVR, carry out actions."""
        assert self._ivr is not None
        if self._line_closing:
            return  # shutting down: the service takes no more events
        if isinstance(event, Ring):
            self.bus.publish({"type": "ring"})
        elif isinstance(event, LineFault):
            self.bus.publish({"type": "line", "state": "fault", "reason": event.reason})
        if isinstance(event, Digit):
            shown = "*" if self._ivr.masking else event.key
            self._last_keys = [*self._last_keys, shown][-16:]
        try:
            actions = self._ivr.handle(event)
        except Exception:  # the IVR catches its own errors; this is the last line of defence
            LOGGER.exception("call flow failed on %r; the service goes on", event)
            return
        for action in actions:
            try:
                self._carry_out(action)
            except Exception:
                LOGGER.exception("could not carry out %r; the service goes on", action)

    def _carry_out(self, action: Action) -> None:
        assert self._loop is not None and self._player is not None and self._prompts is not None
        match action:
            case Play(prompts=prompts, play_id=play_id):
                clips: list[AudioClip] = [Clip(str(p), self._pcm_of(p)) for p in prompts]
                loop = self._loop

                # Player callbacks run on the audio thread: hop back onto the loop.
                def started(index: int) -> None:
                    loop.call_soon_threadsafe(self._prompt_started, prompts[index])

                def done() -> None:
                    loop.call_soon_threadsafe(self._playback_done, play_id)

                self._player.play(clips, on_clip_start=started, on_done=done)
            case PlayTone(name=name):
                tone = self._tones.get(name)
                if tone is None:
                    LOGGER.error("tone %r is not in the tone plan; playing nothing", name)
                    return
                self._player.play([ToneClip(name, tone)])
                self.bus.publish({"type": "tone", "name": name})
            case StopAudio():
                self._player.stop()
                self.bus.publish({"type": "stop"})
            case Hangup():
                assert self._line is not None
                self._line.hang_up()
            case Answer():
                assert self._line is not None
                trunk = self._line.trunk()
                if trunk is None:
                    LOGGER.error("the %s line has no trunk to answer", self.profile.line.driver)
                else:
                    trunk.answer()
            case RingStation(on=on):
                assert self._line is not None
                station = self._line.station()
                if station is not None:
                    station.ring(on)
            case StartRecording():
                assert self._mailbox is not None and self._line is not None
                self._mailbox.start_recording(action, self._line.trunk(), self._line.station())
            case StopRecording(reason=reason):
                assert self._mailbox is not None
                self._mailbox.stop_recording(reason)
            case StartTimer(name=name, seconds=seconds):
                old = self._timers.pop(name, None)
                if old is not None:
                    old.cancel()
                self._timers[name] = self._loop.call_later(seconds, self._timer_fired, name)
            case CancelTimer(name=name):
                handle = self._timers.pop(name, None)
                if handle is not None:
                    handle.cancel()
            case Notify(event=event):
                self.bus.publish(event)
            case CheckCode(check_id=check_id, compare=compare):
                self._compare_off_loop(check_id, compare)

    def _compare_off_loop(self, check_id: int, compare: Callable[[], bool]) -> None:
        """Run a code comparison (scrypt) in a worker; its verdict comes back as an event.

        The try is already durable (the service counted it on the loop); keys, audio
        pacing, the sockets and the watchdog go on meanwhile.
        """
        assert self._loop is not None

        async def compare_then_feed() -> None:
            self.feed(CodeChecked(check_id, await compare_off_loop(compare)))

        task = self._loop.create_task(compare_then_feed())
        self._console_tasks.add(task)  # a reference, so the task is not collected mid-way
        task.add_done_callback(self._console_tasks.discard)

    def _pcm_of(self, prompt: PromptRef) -> bytes:
        assert self._prompts is not None and self._mailbox is not None
        audio: bytes | None = None
        if isinstance(prompt, OwnGreeting):
            audio = self._mailbox.greeting_pcm()
        elif isinstance(prompt, PendingGreeting):
            audio = self._mailbox.pending_greeting()
        elif isinstance(prompt, MessageAudio):
            audio = self._mailbox.message_pcm(prompt.message_id, prompt.start_s)
        return audio if audio is not None else self._prompts.pcm_of(prompt)

    def _timer_fired(self, name: str) -> None:
        self._timers.pop(name, None)
        self.feed(TimerExpired(name))

    def _playback_done(self, play_id: int) -> None:
        self.bus.publish({"type": "prompt_end"})
        self.feed(PlaybackDone(play_id))

    def _prompt_started(self, prompt: PromptRef) -> None:
        # str() of a SpokenDigit is "digit_masked"; a composed menu shows its fragments.
        event: PromptEvent = {"type": "prompt", "id": str(prompt)}
        if isinstance(prompt, ComposedPrompt):
            event["parts"] = [list(sentence) for sentence in prompt.sentences]
        self.bus.publish(event)

    # --- what the console may see and do (console.ServiceView) ----------------------

    def status(self) -> dict[str, Any]:
        """Line, menu and code state for ``status``; never digits."""
        assert self._service is not None and self._ivr is not None and self._line is not None
        code = self._service.status().as_dict()
        return {
            "profile": self.profile.name,
            "line": {
                "driver": self.profile.line.driver,
                **self._line.status(),
                "call": self._ivr.party or "none",
                "last_keys": "".join(self._last_keys),
            },
            "menu": self._ivr.state,
            **code,
            **(self._mailbox.status() if self._mailbox is not None else {}),
        }

    def messages(self) -> list[dict[str, Any]]:
        """The messages for ``messages``: id, time, length, folder; no caller, no audio."""
        assert self._mailbox is not None
        return self._mailbox.listing()

    def reset_code(self, origin: str) -> None:
        """Advisor/technician reset, announced on the events stream."""
        assert self._service is not None
        self._service.reset(origin)
        self.bus.publish({"type": "code", "action": "reset", "origin": origin})

    def audit(self, last: int) -> list[dict[str, Any]]:
        """The last audit records."""
        assert self._service is not None
        return self._service.audit_log(last)

    def profile_summary(self) -> dict[str, Any]:
        """The profile in use, for the console's ``profile``."""
        profile = self.profile
        line: dict[str, Any] = {"driver": profile.line.driver}
        if profile.line.modem is not None:
            line.update(port=profile.line.modem.port, family=profile.line.modem.family)
        if profile.line.slic is not None:
            slic = profile.line.slic
            line.update(gpio=slic.gpio_backend, dtmf=slic.dtmf)
        console = profile.console
        return {
            "profile": profile.name,
            "file": str(profile.source),
            "board": profile.board.name,
            "line": line,
            "audio": {"playback": profile.audio.playback, "capture": profile.audio.capture or "-"},
            "console": f"{console.port} {console.baudrate} 8N1" if console else "none",
            "language": profile.voicemail.language,
            "access_number": profile.voicemail.access_number,
            "state_dir": str(self.state_dir),
            "runtime_dir": str(self.runtime_dir),
            "log_level": current_level(),
        }

    def _refuse_during_remote_call(self) -> None:
        from gatewayd.console import CommandError

        assert self._ivr is not None
        if self._ivr.party == "remote":
            raise CommandError("a remote call is in progress; try again when it has ended")

    def ring(self, seconds: float) -> None:
        """Ring the handset (a SLIC line); CommandError on lines that cannot."""
        from gatewayd.console import CommandError, HandsetRinger

        assert self._ivr is not None
        line: object = self._line
        if not isinstance(line, HandsetRinger):
            raise CommandError(
                f"the {self.profile.line.driver} line cannot ring the handset (a SLIC line can)"
            )
        if self._ivr.handset_off_hook or self._ivr.party is not None:
            raise CommandError("the line is busy (handset off-hook or a call in progress)")
        line.ring(seconds)
        self.bus.publish({"type": "ring", "origin": "console", "seconds": seconds})

    def play_prompt(self, prompt_id: str) -> None:
        """Play one prompt for the technician (replaces what plays now)."""
        from gatewayd.console import CommandError

        assert self._prompts is not None and self._player is not None
        if not self._prompts.knows(prompt_id):
            known = ", ".join(sorted(self._prompts.ids | self._prompts.composed_ids))
            raise CommandError(f"unknown prompt id {prompt_id[:40]!r}; known ids: {known}")
        self._refuse_during_remote_call()
        self._player.play([Clip(prompt_id, self._prompts.pcm(prompt_id))])
        self.bus.publish({"type": "prompt", "id": prompt_id, "origin": "console"})

    def play_tone(self, name: str, seconds: float) -> None:
        """Play a tone of the tone plan for ``seconds`` (built off the loop, then played)."""
        from gatewayd.console import CommandError

        assert self._loop is not None and self._player is not None
        tone = self._tones.get(name)
        if tone is None:
            raise CommandError(f"unknown tone {name[:40]!r}; tones: {', '.join(self._tones)}")
        self._refuse_during_remote_call()
        periods = max(1, round(seconds * RATE / PERIOD_FRAMES))
        player = self._player

        def build() -> bytes:
            return b"".join(itertools.islice(tone_periods(tone), periods))

        async def play() -> None:
            assert self._loop is not None
            try:
                pcm = await self._loop.run_in_executor(None, build)
                player.play([Clip(f"tone_{name}", pcm)])
            except Exception:
                LOGGER.exception("console: could not play tone %s", name)
                return
            self.bus.publish({"type": "tone", "name": name, "origin": "console"})

        task = self._loop.create_task(play())
        self._console_tasks.add(task)  # a reference, so the task is not collected mid-way
        task.add_done_callback(self._console_tasks.discard)

    def self_check(self) -> list[Check]:
        """The console's ``selftest`` of the running box."""
        from gatewayd.selftest import live_checks

        assert self._store is not None and self._line is not None
        return live_checks(
            self.profile,
            self._store,
            resolve_pepper_path(self.profile, self.state_dir),
            self._line.status(),
            lambda: self._player is not None,
        )

    def log_level(self) -> str:
        """The current log level."""
        return current_level()

    def set_log_level(self, level: str) -> None:
        """Change the log level (the console's ``loglevel LEVEL``)."""
        set_level(level)


def _on_sighup() -> None:
    """SIGHUP reloads nothing (the profile is read at start): log it, reopen log files.

    Never the default action (which ends the process silently).
    """
    LOGGER.warning(
        "SIGHUP: log files reopened; the profile is not reloaded (restart gatewayd to apply "
        "a change)"
    )
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.close()  # reopened at the next record (logrotate moved the file)


def _quiet_exception_handler(
    repeats: RepeatedLog,
) -> Callable[[asyncio.AbstractEventLoop, dict[str, Any]], None]:
    """An event-loop error handler that logs a repeated error once a minute, with a count.

    E.g. ``accept`` failing for lack of file descriptors must not flood the log.
    """

    def handle(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exception = context.get("exception")
        key = f"{context.get('message')}|{type(exception).__name__}|{exception}"
        left_out = repeats.allow(key)
        if left_out is None:
            return
        if left_out:
            context = {**context, "message": f"{context.get('message')} ({left_out} more like it)"}
        loop.default_exception_handler(context)

    return handle


async def _main(daemon: Daemon) -> int:
    try:
        await daemon.start()
    except GatewaydError as exc:
        LOGGER.error("%s", exc)
        await daemon.close()
        return 1
    try:
        await daemon.serve()
    finally:
        await daemon.close()
    return 0


def run_daemon(
    profile: str, state_dir: str | None, runtime_dir: str | None, log_level: str | None = None
) -> int:
    """``gatewayd run``: load the profile, run the daemon until SIGTERM/SIGINT; the exit code."""
    from gatewayd.logsetup import setup_logging

    setup_logging(log_level or "info")
    try:
        loaded = load_profile(profile)
    except GatewaydError as exc:
        print(f"gatewayd: {exc}", file=sys.stderr)
        return 2
    if not log_level:
        setup_logging(loaded.logging.level)
    daemon = Daemon(loaded, resolve_state_dir(state_dir, loaded), resolve_runtime_dir(runtime_dir))
    return asyncio.run(_main(daemon))
