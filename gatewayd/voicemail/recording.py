"""The recorder: the caller's PCM in, a stored message (or greeting) out (DESIGN.md §7.1).

Fed 8 kHz S16_LE mono chunks of any size on the event-loop thread, it writes them
to the store's :class:`~gatewayd.voicemail.messages.MessageWriter` and classifies
each 20 ms frame as *speech*, *quiet* or *tone*:

- **quiet**: RMS below ``max(SILENCE_FLOOR_DBFS, noise floor + NOISE_MARGIN_DB)``.
  ``SILENCE_FLOOR_DBFS`` (-45 dBFS) sits about 20 dB under the active level of
  speech on a telephone line (ITU-T P.56 active speech about -26 dBm0, i.e. near
  -23 dBFS on a 16-bit PCM path) and well above an idle line (-60 dBFS and
  below). The noise floor is the quietest frame of the last ``FLOOR_WINDOW_S``
  (minimum statistics): running speech always has a dip in that time, and on a
  noisy line (hum, hiss up to about -30 dBFS) the threshold follows the noise
  within that time, so noise alone still counts as silence.
- **tone**: most of the frame's energy (``TONE_SHARE``) at one call-progress
  frequency (the busy and dial tones a network sends after a hang-up; 350-480
  Hz families): a steady single-frequency sound, never a voice.
- **speech**: everything else.

``max_silence_s`` of continuous quiet or tone frames ends the recording
("silence"); ``max_message_s`` ends it ("max_length"). At the end the tail
after the last speech frame is cut, keeping up to ``TAIL_KEEP_S`` of quiet (not
tone) so the message does not stop on a clipped syllable; then a message
shorter than ``min_message_s`` is discarded.
"""

from __future__ import annotations

import array
import collections
import logging
import math
import sys
from dataclasses import dataclass
from typing import Literal

from gatewayd.voicemail.messages import (
    RATE,
    SAMPLE_BYTES,
    Message,
    MessageStore,
    MessageWriter,
    RecordingWriteError,
)

LOGGER = logging.getLogger(__name__)

EndReason = Literal["key", "hangup", "silence", "max_length", "error"]
Kind = Literal["message", "greeting"]
FrameClass = Literal["speech", "quiet", "tone"]

FRAME_SAMPLES = RATE // 50  # 20 ms
FRAME_BYTES = FRAME_SAMPLES * SAMPLE_BYTES
#: Quiet below this RMS, whatever the noise floor (see the module docstring).
SILENCE_FLOOR_DBFS = -45.0
#: Quiet up to this much above the tracked noise floor.
NOISE_MARGIN_DB = 9.0
#: The noise floor is the quietest frame level over this window.
FLOOR_WINDOW_S = 1.5
#: Frame levels are clamped here (digital silence is -inf dBFS).
_LEVEL_MIN_DBFS = -120.0
#: Frequencies of call-progress tones heard after a hang-up (France 440; Europe 425;
#: 350/440 and 480/620 North American dial/busy; 400, 450 elsewhere).
TONE_FREQUENCIES = (350.0, 400.0, 425.0, 440.0, 450.0, 480.0, 620.0)
#: Share of a frame's energy in one tone bin that marks it as a tone. A tone burst
#: that fills only half a frame (a cadence edge) scores about 0.5.
TONE_SHARE = 0.45
#: Tonal frames in a row before they count as a tone (60 ms; the shortest French
#: cadence, mwi's stutter, is 100 ms on).
MIN_TONE_FRAMES = 3
#: Quiet kept after the last speech frame, so the end of a word is not clipped.
TAIL_KEEP_S = 0.3

_FULL_SCALE_SINE_RMS = 32767 / math.sqrt(2)
_GOERTZEL_COEFFS = tuple(2 * math.cos(2 * math.pi * f / RATE) for f in TONE_FREQUENCIES)


@dataclass(frozen=True)
class RecorderSettings:
    """The ``[voicemail.mailbox]`` numbers the recorder applies (DESIGN.md §7.1 defaults)."""

    max_silence_s: float = 10.0
    max_message_s: float = 180.0
    min_message_s: float = 2.0
    greeting_max_s: float = 60.0


@dataclass(frozen=True)
class RecordingResult:
    """How a recording ended: the stored message (None if discarded) and its kept length.

    For a greeting, ``pcm`` holds the trimmed audio for the caller to hear back and
    store with :meth:`MessageStore.set_greeting`; ``message`` is None.
    """

    reason: EndReason
    seconds: float
    message: Message | None = None
    pcm: bytes | None = None
    error: OSError | None = None


def frame_dbfs(samples: array.array[int]) -> float:
    """RMS level of a frame relative to a full-scale sine (0 dBFS); -inf for digital silence."""
    energy = sum(x * x for x in samples)
    if energy == 0:
        return -math.inf
    return 20 * math.log10(math.sqrt(energy / len(samples)) / _FULL_SCALE_SINE_RMS)


def tone_share(samples: array.array[int]) -> float:
    """Largest share of the frame's energy in one call-progress tone bin (Goertzel)."""
    energy = sum(x * x for x in samples)
    if energy == 0:
        return 0.0
    best = 0.0
    n = len(samples)
    for coeff in _GOERTZEL_COEFFS:
        s1 = s2 = 0.0
        for x in samples:
            s1, s2 = x + coeff * s1 - s2, s1
        power = s1 * s1 + s2 * s2 - coeff * s1 * s2
        best = max(best, 2 * power / (n * energy))
    return best


class FrameClassifier:
    """Speech / quiet / tone for successive 20 ms frames, with a tracked noise floor."""

    def __init__(self) -> None:
        self.noise_floor = math.inf
        self._window = round(FLOOR_WINDOW_S * RATE / FRAME_SAMPLES)
        self._index = 0
        # (frame index, level), levels increasing: a sliding-window minimum in O(1).
        self._minima: collections.deque[tuple[int, float]] = collections.deque()

    def classify(self, samples: array.array[int]) -> FrameClass:
        """Classify one frame (160 samples)."""
        level = frame_dbfs(samples)
        self._track_floor(max(level, _LEVEL_MIN_DBFS))
        if level < SILENCE_FLOOR_DBFS:
            return "quiet"
        # Before the noise floor: a steady tone would otherwise become the floor.
        if tone_share(samples) >= TONE_SHARE:
            return "tone"
        if level < self.noise_floor + NOISE_MARGIN_DB:
            return "quiet"
        return "speech"

    def _track_floor(self, level: float) -> None:
        minima = self._minima
        while minima and minima[-1][1] >= level:
            minima.pop()
        minima.append((self._index, level))
        if minima[0][0] <= self._index - self._window:
            minima.popleft()
        self._index += 1
        self.noise_floor = minima[0][1]


class Recording:
    """One recording in progress; make it with :func:`start`.

    :meth:`feed` returns None while recording, or the :class:`RecordingResult` once it
    ended by itself (silence, maximum length, disk error); :meth:`stop` ends it for
    another reason (``key``, ``hangup``). Both return the same result after the end.
    """

    def __init__(
        self,
        kind: Kind,
        settings: RecorderSettings,
        writer: MessageWriter | None,
        max_s: float,
    ) -> None:
        self.kind = kind
        self.settings = settings
        self._writer = writer
        self._greeting = bytearray()
        self._max_frames = round(max_s * RATE)
        self._silence_frames = round(settings.max_silence_s * RATE / FRAME_SAMPLES)
        self._classifier = FrameClassifier()
        self._pending = b""
        self._bytes = 0  # PCM bytes accepted
        self._frames = 0  # samples accepted
        self._analysed = 0  # samples classified (whole frames)
        self._last_speech_end = 0  # sample index just after the last speech frame
        self._quiet_run_end = 0  # end of the quiet run that follows it (before any tone)
        self._nonspeech_run = 0  # consecutive non-speech frames
        self._tone_seen = False
        self._tone_run = 0  # consecutive tone frames
        self._speech_pending = False  # the last frame was a lone speech frame
        self.result: RecordingResult | None = None

    @property
    def seconds(self) -> float:
        """Audio received so far."""
        return self._frames / RATE

    def feed(self, pcm: bytes) -> RecordingResult | None:
        """Record a chunk; returns the result if this chunk ended the recording."""
        if self.result is not None:
            return self.result
        room = self._max_frames * SAMPLE_BYTES - self._bytes
        chunk = pcm[:room]
        try:
            if self._writer is not None:
                self._writer.write(chunk)
            else:
                self._greeting += chunk
        except RecordingWriteError as exc:
            LOGGER.error("mailbox: %s", exc)
            return self._end("error", exc)
        self._analyse(chunk)
        if self._nonspeech_run >= self._silence_frames:
            return self._end("silence")
        if len(pcm) > len(chunk) or self._frames >= self._max_frames:
            return self._end("max_length")
        return None

    def _analyse(self, chunk: bytes) -> None:
        data = self._pending + chunk
        usable = len(data) - len(data) % FRAME_BYTES
        self._pending = data[usable:]
        self._bytes += len(chunk)
        self._frames = self._bytes // SAMPLE_BYTES
        for start in range(0, usable, FRAME_BYTES):
            samples = array.array("h", data[start : start + FRAME_BYTES])
            if sys.byteorder == "big":
                samples.byteswap()
            label = self._classifier.classify(samples)
            self._analysed += FRAME_SAMPLES
            frame_end = self._analysed
            if label == "tone":
                self._speech_pending = False
                self._tone_run += 1
                self._nonspeech_run += 1
                if self._tone_run >= MIN_TONE_FRAMES:
                    self._tone_seen = True
                continue
            if 0 < self._tone_run < MIN_TONE_FRAMES:
                # A voice now and then puts most of a frame's energy near 440 Hz: a short
                # "tone" run between other frames was speech.
                self._speech_until(frame_end - FRAME_SAMPLES)
            self._tone_run = 0
            if label == "speech":
                if self._speech_pending:
                    self._speech_until(frame_end)
                    self._speech_pending = False
                    continue
                # One loud frame alone (a click, the onset of a tone burst) is not speech
                # yet: only two in a row are.
                self._speech_pending = True
            else:
                self._speech_pending = False
            self._nonspeech_run += 1
            if not self._tone_seen:
                self._quiet_run_end = frame_end

    def _speech_until(self, end: int) -> None:
        self._last_speech_end = self._quiet_run_end = end
        self._nonspeech_run = 0
        self._tone_seen = False

    def stop(self, reason: EndReason) -> RecordingResult:
        """End the recording now (``key``, ``hangup``...); idempotent."""
        if self.result is not None:
            return self.result
        return self._end(reason)

    def _keep_frames(self) -> int:
        tail = min(self._quiet_run_end, self._last_speech_end + round(TAIL_KEEP_S * RATE))
        return min(max(self._last_speech_end, tail), self._frames)

    def _end(self, reason: EndReason, error: OSError | None = None) -> RecordingResult:
        keep = self._keep_frames()
        seconds = keep / RATE
        if self._writer is not None:
            message = self._writer.finish(keep)
            kept = message.seconds if message is not None else 0.0
            self.result = RecordingResult(reason, kept, message=message, error=error)
        elif seconds < self.settings.min_message_s:
            self.result = RecordingResult(reason, 0.0, error=error)
        else:
            pcm = bytes(self._greeting[: keep * SAMPLE_BYTES])
            self.result = RecordingResult(reason, seconds, pcm=pcm, error=error)
        LOGGER.info(
            "mailbox: %s recording ended (%s), %.1f s kept of %.1f s",
            self.kind,
            reason,
            self.result.seconds,
            self.seconds,
        )
        return self.result


def start(
    kind: Kind,
    store: MessageStore,
    settings: RecorderSettings,
    caller: str | None = None,
) -> Recording:
    """Start recording a message (into ``store``) or a greeting (in memory).

    A message is capped at ``max_message_s`` and at what ``max_total_s`` leaves;
    the store's injected clocks pace its fsyncs.
    """
    if kind == "greeting":
        return Recording(kind, settings, None, settings.greeting_max_s)
    max_s = min(settings.max_message_s, store.seconds_left)
    return Recording(kind, settings, store.writer(caller), max_s)
