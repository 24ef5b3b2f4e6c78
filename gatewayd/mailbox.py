"""The daemon's side of the mailbox: the message store, the recorder and the trunk's audio.

The call flow (:mod:`gatewayd.voicemail.ivr`) decides *when* to record; this
module does it. :class:`MailboxService` opens the message store at start (its
repairs go to the audit log and the events stream), answers the IVR's
questions (new messages, full, own greeting: :class:`~gatewayd.voicemail.ivr.MailboxView`),
carries out ``StartRecording``/``StopRecording`` by feeding the trunk's audio
to a :class:`~gatewayd.voicemail.recording.Recording`, and reports the end with
``RecordingEnded``. It publishes ``message`` and ``mwi`` events; never the
caller's number, never audio.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gatewayd.events import LineEvent, RecordingEnded, StartRecording
from gatewayd.line.base import AudioSink, Station, Trunk
from gatewayd.pcm import RATE, SAMPLE_WIDTH
from gatewayd.voicemail.config import Mailbox
from gatewayd.voicemail.messages import (
    Message,
    MessageError,
    MessageStore,
    StoreLimits,
)
from gatewayd.voicemail.recording import EndReason, RecorderSettings, Recording
from gatewayd.voicemail.recording import start as start_recording
from gatewayd.voicemail.repository import AUDIT_EVENTS, SecretsRepository

if TYPE_CHECKING:  # a declaration for the type checker only
    from gatewayd.eventtypes import Event

LOGGER = logging.getLogger(__name__)

#: Detail fields an audit record of the mailbox may carry (ids, reasons, numbers: no caller).
AUDIT_DETAILS = frozenset({"id", "reason", "seconds", "errno", "file", "moved_to"})


class MailboxService:
    """Messages, greeting and recording of one box, on the daemon's loop thread."""

    def __init__(
        self,
        state_dir: Path,
        settings: Mailbox,
        secrets: SecretsRepository,
        publish: Callable[[Event], None],
        feed: Callable[[LineEvent], None],
    ) -> None:
        self._settings = settings
        self._secrets = secrets
        self._publish = publish
        self._feed = feed
        self._recording: Recording | None = None
        self._source: Trunk | Station | None = None
        self._pending_greeting: bytes | None = None
        self._recovered: list[str] = []
        limits = StoreLimits(
            min_message_s=settings.min_message_s,
            max_messages=settings.max_messages,
            max_total_s=settings.max_total_s,
            greeting_max_s=settings.greeting_max_s,
        )
        self.store = MessageStore(state_dir, limits, audit=self._audit)
        self._mwi = self.new_count() > 0
        for message_id in self._recovered:
            message = self.store.get(message_id)
            self._publish(
                {
                    "type": "message",
                    "action": "recovered",
                    "id": message.id,
                    "seconds": round(message.seconds, 1),
                }
            )

    def close(self) -> None:
        """Stop a recording in progress (what was said is kept) and close the store."""
        if self._recording is not None:
            self.stop_recording("hangup")
        self.store.close()

    # --- what the call flow asks (MailboxView) ------------------------------------------

    def new_count(self) -> int:
        """New (unheard) messages."""
        return self.store.counts()[0]

    def is_full(self) -> bool:
        """Whether the quota leaves no room for a message of ``min_message_s``."""
        return self.store.full

    def has_greeting(self) -> bool:
        """Whether the subscriber recorded their own greeting."""
        return self.store.greeting_path.exists()

    def greeting_pcm(self) -> bytes | None:
        """The subscriber's greeting, or None (then the standard one plays)."""
        return self.store.greeting_pcm()

    def counts(self) -> tuple[int, int]:
        """New and saved messages."""
        return self.store.counts()

    def playlist(self) -> list[str]:
        """New messages oldest first, then saved ones."""
        return [m.id for m in self.store.list()]

    def envelope(self, message_id: str) -> tuple[datetime, str | None, float]:
        """Reception time (UTC), caller (None: unknown), length of a message."""
        message = self.store.get(message_id)
        return message.received_utc, message.caller, message.seconds

    def playable(self, message_id: str) -> bool:
        """Whether its audio is there and passes its checksum; a lost one is audited."""
        try:
            self.store.audio_path(message_id)
        except (MessageError, KeyError) as exc:
            LOGGER.error("mailbox: message %s cannot be played: %s", message_id, exc)
            self._secrets.audit("message_dropped", "mailbox", id=message_id, reason="unplayable")
            return False
        return True

    def message_pcm(self, message_id: str, start_s: float) -> bytes | None:
        """A message's audio from ``start_s``; None if it cannot be read (logged)."""
        try:
            pcm = self.store.pcm(message_id)
        except (MessageError, KeyError) as exc:
            LOGGER.error("mailbox: message %s cannot be played: %s", message_id, exc)
            return None
        return pcm[round(start_s * RATE) * SAMPLE_WIDTH :]

    def mark_saved(self, message_id: str) -> None:
        """A new message heard or skipped becomes saved."""
        message = self.store.get(message_id)
        if message.folder != "saved":
            self.store.mark_saved(message_id)
            self._publish(
                {
                    "type": "message",
                    "action": "saved",
                    "id": message_id,
                    "seconds": round(message.seconds, 1),
                }
            )
            self._update_mwi()

    def delete(self, message_id: str) -> None:
        """Delete a message for good: audio and index entry."""
        message = self.store.get(message_id)
        self.store.delete(message_id)
        self._publish(
            {
                "type": "message",
                "action": "deleted",
                "id": message_id,
                "seconds": round(message.seconds, 1),
            }
        )
        self._update_mwi()

    def pending_greeting(self) -> bytes | None:
        """The greeting just recorded, not yet kept."""
        return self._pending_greeting

    def keep_greeting(self) -> bool:
        """Store the greeting just recorded (crash-safe); False if there is none or it fails."""
        pcm, self._pending_greeting = self._pending_greeting, None
        if pcm is None:
            return False
        try:
            self.store.set_greeting(pcm)
        except (OSError, ValueError) as exc:
            LOGGER.error("mailbox: the greeting could not be stored: %s", exc)
            return False
        return True

    def clear_greeting(self) -> None:
        """Back to the standard greeting."""
        self.store.clear_greeting()

    # --- recording -------------------------------------------------------------------

    def start_recording(
        self, request: StartRecording, trunk: Trunk | None, station: Station | None
    ) -> None:
        """Record the party's audio until the recorder ends it or :meth:`stop_recording`."""
        if self._recording is not None:
            self.stop_recording("hangup")
        self._pending_greeting = None
        source: Trunk | Station | None = trunk if request.party == "remote" else station
        if source is None:
            LOGGER.error("mailbox: this line has no %s audio to record", request.party)
            self._feed(RecordingEnded("error", kept=False))
            return
        settings = RecorderSettings(
            max_silence_s=request.silence_s,
            max_message_s=request.max_s,
            min_message_s=request.min_s,
            greeting_max_s=self._settings.greeting_max_s,
        )
        try:
            self._recording = start_recording(request.kind, self.store, settings, request.caller)
        except OSError:
            LOGGER.exception("mailbox: cannot start a recording in %s", self.store.directory)
            self._feed(RecordingEnded("error", kept=False))
            return
        self._source = source
        if not _capture(source, self._on_audio):
            LOGGER.error(
                "mailbox: this line cannot record from the %s (no audio input)", request.party
            )
            self._recording.stop("error")
            self._recording = None
            self._source = None
            self._feed(RecordingEnded("error", kept=False))

    def stop_recording(self, reason: EndReason) -> None:
        """End the recording in progress (``key``, ``hangup``); RecordingEnded follows."""
        recording = self._recording
        if recording is None:
            return
        self._finish(recording, recording.stop(reason).reason)

    @property
    def recording(self) -> bool:
        """Whether a recording is in progress."""
        return self._recording is not None

    def _on_audio(self, pcm: bytes) -> None:
        recording = self._recording
        if recording is None:
            return
        result = recording.feed(pcm)
        if result is not None:
            self._finish(recording, result.reason)

    def _finish(self, recording: Recording, reason: EndReason) -> None:
        self._recording = None
        if self._source is not None:
            self._source.stop_capture()
            self._source = None
        result = recording.result
        assert result is not None
        if recording.kind == "greeting":
            # Kept only when the subscriber says so; a hang-up drops it (DESIGN §7.4).
            self._pending_greeting = result.pcm if reason != "hangup" else None
            kept = self._pending_greeting is not None
            self._feed(RecordingEnded(reason, kept=kept, seconds=result.seconds))
            return
        message = result.message
        if result.error is not None:
            LOGGER.error("mailbox: recording stopped by a write error: %s", result.error)
        if message is not None:
            self._publish(
                {
                    "type": "message",
                    "action": "deposited",
                    "id": message.id,
                    "seconds": round(message.seconds, 1),
                }
            )
            self._update_mwi()
        self._feed(RecordingEnded(reason, kept=message is not None, seconds=result.seconds))

    # --- what the console may see ------------------------------------------------------

    def listing(self) -> list[dict[str, Any]]:
        """Every message: id, received time (UTC ISO), seconds, folder; never the caller."""
        return [_listed(m) for m in self.store.list()]

    def status(self) -> dict[str, Any]:
        """Counts for ``status``."""
        new, saved = self.store.counts()
        return {"messages_new": new, "messages_saved": saved, "mwi": "on" if self._mwi else "off"}

    def _update_mwi(self) -> None:
        on = self.new_count() > 0
        if on != self._mwi:
            self._mwi = on
            self._publish({"type": "mwi", "state": "on" if on else "off"})

    # --- audit -------------------------------------------------------------------------

    def _audit(self, what: str, details: Mapping[str, object]) -> None:
        if what == "message_recovered" and isinstance(details.get("id"), str):
            self._recovered.append(str(details["id"]))
        kept = {
            key: value if isinstance(value, int | float | bool) else str(value)[:80]
            for key, value in details.items()
            if key in AUDIT_DETAILS
        }
        # The store's repairs and losses are audit events of their own (DESIGN §7.2).
        self._secrets.audit(what if what in AUDIT_EVENTS else "message_dropped", "mailbox", **kept)


def _capture(source: Trunk | Station, on_audio: AudioSink) -> bool:
    """Start a capture on a trunk (always can) or a station (may have no input)."""
    if isinstance(source, Station):
        return source.start_capture(on_audio)
    source.start_capture(on_audio)
    return True


def _listed(message: Message) -> dict[str, Any]:
    return {
        "id": message.id,
        "received": message.received_utc.isoformat(timespec="seconds"),
        "seconds": round(message.seconds, 1),
        "folder": message.folder,
        "recovered": message.recovered,
    }
