"""In-band DTMF detector: 8 kHz S16 mono in, key start/end events with stream timestamps out.

How it hears a key (the numbers are the named constants below):

1. **Spectrum.** Every 5 ms (a *step*) the row tones are measured over a 25 ms Hann
   window and the column tones over a 20 ms one centred on it (single-bin DFTs, the
   Goertzel result, all computed by one matrix product per 20 ms period), together with
   the call-progress tones of the tone plan (the French dial tone, 440 Hz), whose energy
   is not held against a key.
2. **Step test.** A step *hits* a key when its strongest row and column tones stand
   ``RELATIVE_PEAK_DB`` above the other tones of their group; when each tone's frequency,
   measured from its phase advance since the previous step, is within
   ``STEP_FREQ_TOLERANCE``; and when, corrected for the window's loss at that frequency
   error, both are loud enough, within twist, and together hold ``MIN_TONE_FRACTION`` of
   the energy (less the call-progress tones). The last two are the check against speech
   and music: voices and instruments glide in pitch and spread their energy over
   harmonics (second harmonics of the key tones included); a DTMF pair does neither.
3. **Key test.** Hits of one key form a *run*. A run becomes a key once it holds
   ``MIN_HIT_STEPS`` hits and has lasted ``MIN_TONE_S``, and only if its frequencies
   averaged over the run are within ``FREQ_TOLERANCE`` and its twist within
   ``NORMAL_TWIST_DB`` / ``REVERSE_TWIST_DB``.
4. **Timing.** A key starts and ends where the envelope of its weaker tone crosses half
   its peak: the windows' centre is then on the tone's edge, so durations and gaps are
   measured to a millisecond or so whatever the window length. A dip shorter than
   ``MAX_BRIDGED_GAP_S`` is bridged; a longer one ends the key.

Most periods (speech, silence) are refused by a one-matrix-product gate before any
per-step Python runs: the gate is a superset of the step test for every signal the
suite must accept.

numpy is imported here: import this module only when a profile asks for in-band
detection (the ``[inband]`` extra).
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field

# The detector's matrix products are tiny (320 x 80): BLAS worker threads only add
# wake-ups and spin time (measured: twice the CPU per audio hour with OpenBLAS's default
# thread pool). Honoured only if numpy is not imported yet; a user's own setting wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # after the thread-count default above
import numpy.typing as npt

LOGGER = logging.getLogger(__name__)

#: Samples per second; the detector works at the telephone rate only.
SAMPLE_RATE = 8000
#: Frames per period fed by ALSA capture: 20 ms.
PERIOD_FRAMES = 160
#: Bytes per period (S16 mono).
PERIOD_BYTES = PERIOD_FRAMES * 2
#: Samples between two analysis steps: 5 ms. Fine enough to time 40 ms tones and pauses
#: to a step; short enough that the phase advance between steps is unambiguous for
#: frequency errors up to +/-100 Hz (beyond the 57 Hz that 3.5 % of 1633 Hz is).
HOP = 40
#: Row window: 25 ms of Hann. Rows are only 73 Hz apart (697/770 Hz): this puts a tone
#: 12.5 Hz off (the accepted 1.5 % + 2 Hz) 15.7 dB down in its neighbour's bin, and the
#: 440 Hz dial tone 60 dB down in the 697 Hz bin.
ROW_WINDOW = 200
#: Column window: 20 ms of Hann. Columns are 127 Hz and more apart, so a shorter window
#: keeps them apart and loses only 1.6 dB on a tone 26.5 Hz off (1633 Hz + 1.5 % + 2 Hz),
#: where the row window would lose 2.5 dB.
COL_WINDOW = 160
#: Steps per period.
STEPS_PER_PERIOD = PERIOD_FRAMES // HOP

ROW_HZ: tuple[float, ...] = (697.0, 770.0, 852.0, 941.0)
COL_HZ: tuple[float, ...] = (1209.0, 1336.0, 1477.0, 1633.0)
#: Keys by row then column (ITU-T Q.23).
KEYPAD = "123A456B789C*0#D"
#: Call-progress tones whose energy does not count against a key (France: 440 Hz dial,
#: busy and ringback tones). The box plays them itself, so their echo is on the capture
#: whenever a subscriber keys over the dial tone.
DEFAULT_DISCOUNT_HZ: tuple[float, ...] = (440.0,)

#: A sine of amplitude 32768 * 10**((L - 3.14) / 20) is L dBm0 (G.711: full scale is +3.14).
DBM0_FULL_SCALE = 3.14
#: Quietest tone accepted, per tone. Q.24 asks for -25 dBm0 and above; 11 dB below that
#: covers twist and line loss, and stays 19 dB above the -55 dBm0 that must be rejected.
MIN_LEVEL_DBM0 = -36.0
#: Share of the energy (less call-progress tones) the two key tones must hold. White
#: noise at 15 dB SNR leaves 0.97 (0.91 at 10 dB); voiced speech and music spread their
#: energy over harmonics and rarely put this much into one row and one column tone
#: (0.75 let through 4.7 false keys per hour of speech, 0.85 and up none).
MIN_TONE_FRACTION = 0.9
#: Each key tone must stand this far above every other tone of its group: a tone 12.5 Hz
#: off leaks 15.7 dB into its neighbour, so 10 dB leaves margin while refusing two tones
#: of one group (a chord, a vowel's formants).
RELATIVE_PEAK_DB = 10.0
#: Twist accepted on the run's levels, row over column. Q.24 asks for 8 dB normal and 4 dB
#: reverse; 1.5 dB on top absorbs level measurement error.
NORMAL_TWIST_DB = 9.5
REVERSE_TWIST_DB = 5.5
#: Extra twist allowed on a single step (noise, a window only partly on the tone).
STEP_TWIST_SLACK_DB = 2.0
#: Frequency error accepted on each tone, averaged over a run: 2.1 Hz (697 Hz) to 4.9 Hz
#: (1633 Hz) above the +/-(1.5 % + 2 Hz) that must be accepted (a run's estimate is good
#: to 0.5 Hz at 15 dB SNR: 40 ms keys at that error in that noise all pass), and far
#: below the 3.5 % that must be rejected. Wider lets in music: a G#5 + G#6 interval with
#: vibrato reads as "C" (852 + 1633 Hz) 2.2 % and 2.1 % off.
FREQ_TOLERANCE = 0.018
FREQ_TOLERANCE_HZ = 2.0
#: Frequency error accepted on one step: the run's tolerance plus room for the noise of a
#: single 5 ms phase measurement (about 1 Hz at 15 dB SNR).
STEP_FREQ_TOLERANCE = 0.025
STEP_FREQ_TOLERANCE_HZ = 2.0
#: Shortest tone accepted: halfway between the 23 ms that must be rejected and the 40 ms
#: that must be accepted.
MIN_TONE_S = 0.0315
#: Hits a key needs: a 40 ms tone gives 5 and more even at 15 dB SNR; speech rarely holds
#: a clean, steady pair for 4 steps in a row.
MIN_HIT_STEPS = 4
#: Longest dip bridged inside one key: halfway between the 10 ms interruption that must be
#: bridged and the 40 ms pause that must separate two equal keys.
MAX_BRIDGED_GAP_S = 0.025
#: The envelope level (share of the key's peak) that marks a tone's edge.
EDGE_LEVEL = 0.5
#: Steps of spectrum kept to find a run's start once it is seen (the window is 5 steps).
LOOKBACK_STEPS = 6
#: The gate lets a step through when the 8 key bins hold this share of the step test's
#: fraction. The worst case the suite must accept is a column tone 4 dB over the row and
#: 26.5 Hz off, which reads 1.6 dB low: 0.78 of the corrected pair; 0.7 leaves margin.
GATE_SHARE = 0.7


@dataclass(frozen=True)
class KeyStart:
    """A key was recognised; ``start_s`` is when its tone began (seconds of stream time)."""

    key: str = field(repr=False)  # may be a digit of a secret code
    start_s: float
    #: Stream time when the detector decided (start_s plus the detection delay).
    at_s: float


@dataclass(frozen=True)
class KeyEnd:
    """A recognised key's tone ended at ``end_s``; ``start_s`` is the same as its KeyStart."""

    key: str = field(repr=False)
    start_s: float
    end_s: float
    at_s: float

    @property
    def duration_s(self) -> float:
        """How long the tone lasted, bridged interruptions included."""
        return self.end_s - self.start_s


KeyEvent = KeyStart | KeyEnd


@dataclass(frozen=True)
class DetectorSettings:
    """The detector's thresholds; the defaults are the module constants (see their reasons)."""

    discount_hz: tuple[float, ...] = DEFAULT_DISCOUNT_HZ
    min_level_dbm0: float = MIN_LEVEL_DBM0
    min_tone_fraction: float = MIN_TONE_FRACTION
    relative_peak_db: float = RELATIVE_PEAK_DB
    normal_twist_db: float = NORMAL_TWIST_DB
    reverse_twist_db: float = REVERSE_TWIST_DB
    freq_tolerance: float = FREQ_TOLERANCE
    freq_tolerance_hz: float = FREQ_TOLERANCE_HZ
    min_tone_s: float = MIN_TONE_S
    min_hit_steps: int = MIN_HIT_STEPS
    max_bridged_gap_s: float = MAX_BRIDGED_GAP_S


@dataclass
class DetectorStats:
    """Counters for benches and diagnostics (no keys in them)."""

    periods: int = 0
    #: Periods that passed the gate and ran the per-step tests.
    analysed_periods: int = 0
    keys: int = 0
    #: Runs dropped, by reason: "short", "hits", "frequency", "twist".
    rejected: dict[str, int] = field(default_factory=dict)


def _hann(n: int) -> npt.NDArray[np.float64]:
    """A symmetric Hann window of n samples with no zero end points."""
    k = np.arange(n, dtype=np.float64)
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * (k + 0.5) / n)


def _power_response(window: npt.NDArray[np.float64], max_hz: int) -> list[float]:
    """Power gain of a window's DFT bin for a tone 0, 1, ... max_hz Hz off its frequency."""
    n = np.arange(len(window), dtype=np.float64)
    offsets = np.arange(0, max_hz + 1, dtype=np.float64)
    phasors = np.exp(2j * np.pi * np.outer(offsets, n) / SAMPLE_RATE)
    gain = np.abs(phasors @ window) / window.sum()
    return [float(g) ** 2 for g in gain]


def _swap_halves(rows: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """The rows of a [previous, this] period matrix reordered for a [this, previous] buffer."""
    return np.concatenate([rows[PERIOD_FRAMES:], rows[:PERIOD_FRAMES]])


class _Run:
    """Steps of one candidate key: its envelope, hits and frequency measurements."""

    __slots__ = (
        "confirmed",
        "current_streak",
        "first_step",
        "gap_from",
        "hits",
        "key_index",
        "last_amps",
        "last_hit_step",
        "open_index",
        "pair_c",
        "pair_r",
        "peak_c",
        "peak_r",
        "rejected",
        "start_s",
        "streak",
        "sum_pc",
        "sum_pr",
        "trace",
    )

    def __init__(self, key_index: int, first_step: int, trace: list[tuple[float, float]]) -> None:
        self.key_index = key_index
        #: Step index of trace[0].
        self.first_step = first_step
        #: (row amplitude, column amplitude) at each step from first_step on, kept until the
        #: run is decided (only its start is needed from it).
        self.trace = trace
        #: Index in trace of the step that opened the run (its first hit).
        self.open_index = len(trace)
        self.last_amps = (0.0, 0.0)
        self.peak_r = 0.0
        self.peak_c = 0.0
        self.hits = 0
        #: The longest run of consecutive hits so far, and the step of the last hit.
        self.streak = 0
        self.last_hit_step = -2
        self.current_streak = 0
        #: Pulse-pair sums (re, im) of the row and column tones over the hits.
        self.pair_r = [0.0, 0.0]
        self.pair_c = [0.0, 0.0]
        #: Frequency-corrected powers of the row and column tones summed over the hits.
        self.sum_pr = 0.0
        self.sum_pc = 0.0
        self.confirmed = False
        self.rejected = False
        self.start_s = 0.0
        #: Stream time where the envelope fell below the edge level, while in a dip.
        self.gap_from: float | None = None


class _Hit:
    """What a step that hits a key measured."""

    __slots__ = ("index", "pair_c", "pair_r", "power_c", "power_r")

    def __init__(
        self,
        index: int,
        pair_r: tuple[float, float],
        pair_c: tuple[float, float],
        power_r: float,
        power_c: float,
    ) -> None:
        self.index = index
        self.pair_r = pair_r
        self.pair_c = pair_c
        self.power_r = power_r
        self.power_c = power_c


class DtmfDetector:
    """Feed 8 kHz S16_LE mono PCM (any length; 20 ms periods are the fast path); get key events.

    Not thread-safe: one feeder. ``feed`` returns the events the new audio completed,
    in stream order; ``flush`` ends a key still sounding at the end of the stream.
    """

    def __init__(self, settings: DetectorSettings | None = None) -> None:
        self.settings = settings or DetectorSettings()
        s = self.settings
        self._freqs: tuple[float, ...] = ROW_HZ + COL_HZ + tuple(s.discount_hz)
        nf = len(self._freqs)
        self._nf = nf
        width = 2 * nf  # cos and sin columns per frequency
        self._width = width
        row_window = _hann(ROW_WINDOW)
        col_window = _hann(COL_WINDOW)
        # One step's analysis, laid on the row window's span: each tone on its own window,
        # the column window centred in the row window. Scaled so that a tone's |X|^2 is
        # its mean power (A^2 / 2) and the energy column is the windowed mean power.
        local = np.zeros((ROW_WINDOW, width))
        n = np.arange(ROW_WINDOW, dtype=np.float64)
        col_window_full = np.zeros(ROW_WINDOW)
        col_lo = (ROW_WINDOW - COL_WINDOW) // 2
        col_window_full[col_lo : col_lo + COL_WINDOW] = col_window
        for i, freq in enumerate(self._freqs):
            win = col_window_full if 4 <= i < 8 else row_window
            phase = 2.0 * np.pi * freq * (n - (col_lo if 4 <= i < 8 else 0)) / SAMPLE_RATE
            scale = math.sqrt(2.0) / float(win.sum())
            local[:, 2 * i] = scale * win * np.cos(phase)
            local[:, 2 * i + 1] = scale * win * np.sin(phase)
        energy_weights = row_window * row_window / float((row_window * row_window).sum())

        # Analysed samples: the previous period then this one (320); step j's windows end
        # (j + 1) hops into this period.
        first = PERIOD_FRAMES + HOP - ROW_WINDOW
        nspec = STEPS_PER_PERIOD * width
        basis = np.zeros((2 * PERIOD_FRAMES, nspec))
        energy = np.zeros((2 * PERIOD_FRAMES, STEPS_PER_PERIOD))
        for j in range(STEPS_PER_PERIOD):
            lo = first + j * HOP
            basis[lo : lo + ROW_WINDOW, j * width : (j + 1) * width] = local
            energy[lo : lo + ROW_WINDOW, j] = energy_weights
        # float32: a third less CPU than float64 per period, and S16 input needs no more
        # (24-bit mantissa against 16-bit samples summed over 200 terms).
        # Per buffer layout (see _period_in): period p is written to half p % 2.
        self._bases = [_swap_halves(basis).astype(np.float32), basis.astype(np.float32)]
        # Gate and energy in one product over [spectrum squared, samples squared]:
        # column j:   key bins - share * (energy_j - call-progress bins)
        # column 4+j: energy_j
        share = s.min_tone_fraction * GATE_SHARE
        gate = np.zeros((nspec + 2 * PERIOD_FRAMES, 2 * STEPS_PER_PERIOD))
        for j in range(STEPS_PER_PERIOD):
            for i in range(nf):
                weight = 1.0 if i < 8 else share
                gate[j * width + 2 * i, j] = weight
                gate[j * width + 2 * i + 1, j] = weight
            gate[nspec:, j] = -share * energy[:, j]
            gate[nspec:, STEPS_PER_PERIOD + j] = energy[:, j]
        swapped_gate = gate.copy()
        swapped_gate[nspec:] = _swap_halves(gate[nspec:])
        self._gates = [swapped_gate.astype(np.float32), gate.astype(np.float32)]
        self._nspec = nspec
        # One buffer per layout, so the previous period's spectrum stays readable (look-back).
        self._gate_in = [np.zeros(nspec + 2 * PERIOD_FRAMES, dtype=np.float32) for _ in range(2)]
        self._spec_arrays: list[npt.NDArray[np.float32] | None] = [None, None]
        #: The last two periods, as floats, in the order _period_in's layout says.
        self._samples = np.zeros(2 * PERIOD_FRAMES, dtype=np.float32)
        self._halves = [self._samples[:PERIOD_FRAMES], self._samples[PERIOD_FRAMES:]]

        amp = 32768.0 * 10.0 ** ((s.min_level_dbm0 - DBM0_FULL_SCALE) / 20.0)
        self._min_power = amp * amp / 2.0
        self._relative_peak = 10.0 ** (s.relative_peak_db / 10.0)
        self._step_normal = 10.0 ** ((s.normal_twist_db + STEP_TWIST_SLACK_DB) / 10.0)
        self._step_reverse = 10.0 ** ((s.reverse_twist_db + STEP_TWIST_SLACK_DB) / 10.0)
        # Pulse pairs: rotation removing the nominal phase advance of each key tone per hop.
        self._rot = [
            (
                math.cos(2 * math.pi * f * HOP / SAMPLE_RATE),
                -math.sin(2 * math.pi * f * HOP / SAMPLE_RATE),
            )
            for f in ROW_HZ + COL_HZ
        ]
        self._to_hz = SAMPLE_RATE / (2 * math.pi * HOP)
        self._step_tol = [STEP_FREQ_TOLERANCE * f + STEP_FREQ_TOLERANCE_HZ for f in ROW_HZ + COL_HZ]
        # Window power response for frequency errors 0..100 Hz (the pulse pair's range).
        self._row_response = _power_response(row_window, 100)
        self._col_response = _power_response(col_window, 100)

        self._pending = b""
        self._period = 0  # periods analysed so far
        self._run: _Run | None = None
        self._stats = DetectorStats()
        self._layouts = [
            (
                self._halves[layout],
                self._bases[layout],
                self._gate_in[layout][:nspec],
                self._gate_in[layout][nspec:],
                self._gate_in[layout],
                self._gates[layout],
            )
            for layout in (0, 1)
        ]

    # --- public --------------------------------------------------------------------

    @property
    def stats(self) -> DetectorStats:
        """The counters (live object; ``periods`` is brought up to date on each read)."""
        self._stats.periods = self._period
        return self._stats

    @property
    def time_s(self) -> float:
        """Stream time consumed so far (whole periods), in seconds."""
        return self._period * PERIOD_FRAMES / SAMPLE_RATE

    def feed(self, pcm: bytes) -> list[KeyEvent]:
        """Analyse more audio; return the key starts and ends it completed."""
        events: list[KeyEvent] = []
        if not self._pending and len(pcm) == PERIOD_BYTES:
            self._period_in(pcm, events)
            return events
        data = self._pending + pcm
        usable = len(data) - len(data) % PERIOD_BYTES
        for offset in range(0, usable, PERIOD_BYTES):
            self._period_in(data[offset : offset + PERIOD_BYTES], events)
        self._pending = data[usable:]
        return events

    def flush(self) -> list[KeyEvent]:
        """End of stream: pad with silence until a sounding key has ended; return the events."""
        events: list[KeyEvent] = []
        if self._pending:
            pad = PERIOD_BYTES - len(self._pending)
            self._period_in(self._pending + bytes(pad), events)
            self._pending = b""
        silence = bytes(PERIOD_BYTES)
        # Enough silence for the window to clear the tone and the gap to outlast the bridge.
        needed = ROW_WINDOW + int(self.settings.max_bridged_gap_s * SAMPLE_RATE) + PERIOD_FRAMES
        for _ in range(-(-needed // PERIOD_FRAMES)):
            if self._run is None:
                break
            self._period_in(silence, events)
        return events

    # --- per period ----------------------------------------------------------------

    def _period_in(self, pcm: bytes, events: list[KeyEvent]) -> None:
        # Period p overwrites the older half of the sample buffer (p % 2); that layout's
        # basis and gate matrices read the buffer as [previous period, this period].
        layout = self._period & 1
        half, basis, spec_sq, samples_sq, gate_in, gate = self._layouts[layout]
        half[:] = np.frombuffer(pcm, dtype=np.int16)
        samples = self._samples
        spec = samples @ basis
        np.multiply(spec, spec, out=spec_sq)
        np.multiply(samples, samples, out=samples_sq)
        gated = (gate_in @ gate).tolist()
        self._spec_arrays[layout] = spec
        base_step = self._period * STEPS_PER_PERIOD
        self._period += 1
        if self._run is None and max(gated[:STEPS_PER_PERIOD]) <= 0.0:
            return
        self._stats.analysed_periods += 1
        powers = spec_sq.tolist()
        values = spec.tolist()
        width = self._width
        previous = self._spec_arrays[1 - layout]
        prev_values = None if previous is None else previous[-width:].tolist()
        for j in range(STEPS_PER_PERIOD):
            lo = j * width
            step_values = values[lo : lo + width]
            p = [powers[lo + 2 * i] + powers[lo + 2 * i + 1] for i in range(self._nf)]
            hit = self._classify(p, step_values, prev_values, gated[STEPS_PER_PERIOD + j])
            self._step(base_step + j, p, hit, events)
            prev_values = step_values

    # --- per step ------------------------------------------------------------------

    def _pair(
        self, cur: list[float], prev: list[float], i: int
    ) -> tuple[tuple[float, float], float]:
        """Pulse pair of tone i between two steps, and the frequency error it measures (Hz)."""
        # X = cos part - j * sin part; z = X_now * conj(X_before) * exp(-j * nominal advance).
        re1, im1 = cur[2 * i], -cur[2 * i + 1]
        re0, im0 = prev[2 * i], -prev[2 * i + 1]
        zr = re1 * re0 + im1 * im0
        zi = im1 * re0 - re1 * im0
        cos_r, sin_r = self._rot[i]
        pair = (zr * cos_r - zi * sin_r, zr * sin_r + zi * cos_r)
        return pair, math.atan2(pair[1], pair[0]) * self._to_hz

    def _classify(
        self, p: list[float], cur: list[float], prev: list[float] | None, energy: float
    ) -> _Hit | None:
        """What this step hits, or None. ``p`` holds the mean power of each analysed tone."""
        rows = p[0:4]
        cols = p[4:8]
        pr = max(rows)
        pc = max(cols)
        # Even the worst accepted frequency error loses less than half the power.
        floor = self._min_power * 0.5
        if pr < floor or pc < floor or prev is None:
            return None
        r = rows.index(pr)
        c = cols.index(pc)
        limit_r = pr / self._relative_peak
        limit_c = pc / self._relative_peak
        for i in range(4):
            if (i != r and rows[i] > limit_r) or (i != c and cols[i] > limit_c):
                return None
        pair_r, err_r = self._pair(cur, prev, r)
        pair_c, err_c = self._pair(cur, prev, 4 + c)
        if abs(err_r) > self._step_tol[r] or abs(err_c) > self._step_tol[4 + c]:
            return None
        pr /= self._response(self._row_response, err_r)
        pc /= self._response(self._col_response, err_c)
        min_power = self._min_power
        if pr < min_power or pc < min_power:
            return None
        if pr > pc * self._step_normal or pc > pr * self._step_reverse:
            return None
        rest = energy - sum(p[8:])
        if pr + pc < self.settings.min_tone_fraction * rest:
            return None
        return _Hit(r * 4 + c, pair_r, pair_c, pr, pc)

    @staticmethod
    def _response(table: list[float], error_hz: float) -> float:
        """A window's power response at a frequency error (linear interpolation)."""
        x = min(abs(error_hz), len(table) - 1.001)
        i = int(x)
        frac = x - i
        return table[i] * (1.0 - frac) + table[i + 1] * frac

    def _step(self, step: int, p: list[float], hit: _Hit | None, events: list[KeyEvent]) -> None:
        run = self._run
        if run is not None:
            if not self._advance(run, step, p, hit, events):
                return
            self._run = None
        if hit is not None:
            run = self._open_run(hit.index, step)
            self._run = run
            self._advance(run, step, p, hit, events)

    def _open_run(self, key_index: int, step: int) -> _Run:
        """A new run whose trace starts up to LOOKBACK_STEPS before ``step`` (kept spectra)."""
        r = key_index // 4
        c = 4 + key_index % 4
        trace: list[tuple[float, float]] = []
        width = self._width
        this_period = self._period - 1
        for k in range(max(0, step - LOOKBACK_STEPS), step):
            period, j = divmod(k, STEPS_PER_PERIOD)
            age = this_period - period
            if age > 1:
                continue
            arr = self._spec_arrays[period & 1]  # each period's spectrum is in its layout's slot
            if arr is None:
                continue
            lo = j * width
            v = (
                arr[lo + 2 * r : lo + 2 * r + 2].tolist()
                + arr[lo + 2 * c : lo + 2 * c + 2].tolist()
            )
            trace.append((math.hypot(v[0], v[1]), math.hypot(v[2], v[3])))
        return _Run(key_index, step - len(trace), trace)

    def _advance(
        self, run: _Run, step: int, p: list[float], hit: _Hit | None, events: list[KeyEvent]
    ) -> bool:
        """Feed one step to the current run; True when the run has ended."""
        r = run.key_index // 4
        c = 4 + run.key_index % 4
        amp_r = math.sqrt(p[r])
        amp_c = math.sqrt(p[c])
        if not (run.confirmed or run.rejected):
            run.trace.append((amp_r, amp_c))
        last_amps, run.last_amps = run.last_amps, (amp_r, amp_c)
        centre = self._centre_s(step)
        own = hit is not None and hit.index == run.key_index
        if hit is not None and own:
            run.hits += 1
            run.current_streak = run.current_streak + 1 if run.last_hit_step == step - 1 else 1
            run.last_hit_step = step
            run.streak = max(run.streak, run.current_streak)
            run.peak_r = max(run.peak_r, amp_r)
            run.peak_c = max(run.peak_c, amp_c)
            run.sum_pr += hit.power_r
            run.sum_pc += hit.power_c
            run.pair_r[0] += hit.pair_r[0]
            run.pair_r[1] += hit.pair_r[1]
            run.pair_c[0] += hit.pair_c[0]
            run.pair_c[1] += hit.pair_c[1]
        envelope = self._envelope(run, amp_r, amp_c)
        if envelope >= EDGE_LEVEL:
            run.gap_from = None
            if not run.confirmed and not run.rejected:
                # The tone is still there at this step's centre, hit or not (the last steps
                # of a tone see a window only partly on it).
                self._try_confirm(run, centre, events)
            return False
        # Below the edge: a dip that may be bridged, or the end of the tone.
        if run.gap_from is None:
            before = self._envelope(run, *last_amps)
            run.gap_from = self._crossing(centre - HOP / SAMPLE_RATE, before, centre, envelope)
        if hit is not None and not own:
            self._close_run(run, run.gap_from, events)
            return True
        if centre - run.gap_from > self.settings.max_bridged_gap_s:
            self._close_run(run, run.gap_from, events)
            return True
        return False

    @staticmethod
    def _envelope(run: _Run, amp_r: float, amp_c: float) -> float:
        """The weaker of the two tones, each as a share of its peak in this run."""
        if run.peak_r <= 0.0 or run.peak_c <= 0.0:
            return 1.0  # no hit yet: this is the step that opens the run
        return min(amp_r / run.peak_r, amp_c / run.peak_c)

    @staticmethod
    def _centre_s(step: int) -> float:
        """Stream time of the centre of step ``step``'s windows."""
        return ((step + 1) * HOP - ROW_WINDOW / 2) / SAMPLE_RATE

    @staticmethod
    def _crossing(t0: float, e0: float, t1: float, e1: float) -> float:
        """Where the envelope crosses the edge level between (t0, e0) and (t1, e1)."""
        if e1 == e0:
            return t1
        frac = (EDGE_LEVEL - e0) / (e1 - e0)
        return t0 + min(1.0, max(0.0, frac)) * (t1 - t0)

    def _start_s(self, run: _Run) -> float:
        """Where the run's envelope last rose through the edge before its first hit."""
        envs = [self._envelope(run, a, b) for a, b in run.trace]
        i = run.open_index
        while i > 0 and envs[i - 1] >= EDGE_LEVEL:
            i -= 1
        t_i = self._centre_s(run.first_step + i)
        if i == 0:
            return t_i
        return self._crossing(t_i - HOP / SAMPLE_RATE, envs[i - 1], t_i, envs[i])

    def _try_confirm(self, run: _Run, until_s: float, events: list[KeyEvent]) -> None:
        """Make the run a key if it passes the key test, the tone lasting at least until_s."""
        s = self.settings
        if run.streak < s.min_hit_steps:
            return
        start = self._start_s(run)
        if until_s - start < s.min_tone_s:
            return
        r = run.key_index // 4
        c = 4 + run.key_index % 4
        err_r = math.atan2(run.pair_r[1], run.pair_r[0]) * self._to_hz
        err_c = math.atan2(run.pair_c[1], run.pair_c[0]) * self._to_hz
        freqs = ROW_HZ + COL_HZ
        for err, nominal in ((err_r, freqs[r]), (err_c, freqs[c])):
            if abs(err) > s.freq_tolerance * nominal + s.freq_tolerance_hz:
                self._reject(run, "frequency")
                return
        twist_db = 10.0 * math.log10(run.sum_pr / run.sum_pc)
        if twist_db > s.normal_twist_db or -twist_db > s.reverse_twist_db:
            self._reject(run, "twist")
            return
        run.confirmed = True
        run.start_s = start
        self._stats.keys += 1
        events.append(KeyStart(KEYPAD[run.key_index], start, self.time_s))

    def _reject(self, run: _Run, reason: str) -> None:
        run.rejected = True
        rejected = self._stats.rejected
        rejected[reason] = rejected.get(reason, 0) + 1

    def _close_run(self, run: _Run, end_s: float, events: list[KeyEvent]) -> None:
        if not run.confirmed and not run.rejected:
            self._try_confirm(run, end_s, events)
        if run.confirmed:
            events.append(KeyEnd(KEYPAD[run.key_index], run.start_s, end_s, self.time_s))
        elif not run.rejected:
            self._reject(run, "hits" if run.streak < self.settings.min_hit_steps else "short")
