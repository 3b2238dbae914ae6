"""Real-time rhythm monitoring behind `medai monitor RUN --record PATH` (or samples on standard input).

Samples arrive in chunks (as from a bedside monitor or a wearable). Every ``stride_s`` of new signal the last
``window_s`` seconds — the window length the model was trained on — are checked (flat line, NaN run, clipping,
amplitude), filtered, resampled and scored, giving one event per window::

    {"t_s": 40.0, "window": [30.0, 40.0], "rhythm": "A", "probability": 0.91, "latency_ms": 3.2, "signal": "usable"}

and alerts when the state changes, each stamped with the time in the recording (seconds from its start):

- ``af_onset`` / ``af_offset``: atrial fibrillation (class ``A``) becomes / stops being the predicted rhythm for
  ``confirm`` consecutive windows (default 2, i.e. an episode must last about window_s + stride_s to alert);
- ``flat_line``, ``poor_signal``: the window failed the signal check (lead off, saturation, noise); no rhythm is
  given for it — a monitor must never call a rhythm on garbage;
- ``signal_restored``: the first usable window after such a stretch.

Latency is the wall time from a window being complete to its event (check + filter + resample + network), per
window; the summary reports the median and 95th percentile and the speed in multiples of real time.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from medai.core.errors import InvalidParameterError
from medai.core.records import Modality, Record
from medai.registry.predictor import Predictor

#: The rhythm class whose episodes raise onset/offset alerts.
AF_CLASS = "A"


@dataclass
class MonitorState:
    """What the monitor remembers between windows."""

    rhythm: str | None = None
    pending: str | None = None
    pending_count: int = 0
    signal_ok: bool = True
    latencies_ms: list[float] = field(default_factory=list)
    n_windows: int = 0
    n_unusable: int = 0
    alerts: list[dict[str, Any]] = field(default_factory=list)


class RhythmMonitor:
    """Sliding-window rhythm classification of a stream.

    Args:
        predictor: a recording-level ECG model (trained by `medai train` on a rhythm folder).
        sampling_rate_hz: the stream's sampling rate.
        lead_names: names of the stream's channels (the model picks its lead by name, else the first).
        stride_s: seconds between windows (default: the model's training stride).
        confirm: consecutive windows a new rhythm must hold before an onset/offset alert.
    """

    def __init__(self, predictor: Predictor, sampling_rate_hz: float, lead_names: list[str] | None = None, *,
                 stride_s: float | None = None, confirm: int = 2) -> None:
        if not predictor.is_ecg or predictor.preprocessor.unit != "recording":
            raise InvalidParameterError("`medai monitor` needs a rhythm model trained on ECG recordings (a folder "
                                        "with REFERENCE.csv); this run holds another kind of model.")
        if sampling_rate_hz is None or sampling_rate_hz <= 0:
            raise InvalidParameterError("The stream's sampling rate is unknown: pass --sampling-rate HZ.")
        self.predictor = predictor
        self.rate = float(sampling_rate_hz)
        self.lead_names = lead_names
        self.window = int(round(predictor.preprocessor.window_s * self.rate))
        stride = stride_s if stride_s is not None else predictor.preprocessor.stride_s
        if stride <= 0:
            raise InvalidParameterError(f"--stride must be positive; got {stride}.")
        self.stride = max(1, int(round(stride * self.rate)))
        self.confirm = max(1, int(confirm))
        self.names = list(predictor.task["class_names"])
        self.state = MonitorState()
        self._buffer: np.ndarray | None = None
        self._received = 0
        self._next_end = self.window

    def push(self, chunk: np.ndarray) -> Iterator[dict[str, Any]]:
        """Add samples ``(n,)`` or ``(n, channels)`` and yield the events of every window completed."""
        chunk = np.asarray(chunk, dtype=np.float64)
        if chunk.ndim == 1:
            chunk = chunk[:, None]
        self._buffer = chunk if self._buffer is None else np.concatenate([self._buffer, chunk])
        self._received += len(chunk)
        while self._received >= self._next_end:
            start = self._next_end - self.window
            offset = self._received - len(self._buffer)
            window = self._buffer[start - offset:self._next_end - offset]
            yield from self._score(window, start)
            self._next_end += self.stride
        keep_from = self._next_end - self.window - (self._received - len(self._buffer))
        if keep_from > 0:
            self._buffer = self._buffer[keep_from:]

    def _score(self, window: np.ndarray, start: int) -> Iterator[dict[str, Any]]:
        began = time.perf_counter()
        record = Record(id="stream", modality=Modality.ECG, data=window.T.astype(np.float32),
                        meta={"sampling_rate_hz": self.rate, "source": "stream",
                              "lead_names": self.lead_names or [f"lead{i + 1}" for i in range(window.shape[1])]})
        preprocessor = self.predictor.preprocessor
        signal, check, _ = preprocessor.condition(record)
        t_start, t_end = start / self.rate, (start + len(window)) / self.rate
        event: dict[str, Any] = {"t_s": round(t_end, 3), "window": [round(t_start, 3), round(t_end, 3)]}
        if signal is None:
            event.update(signal="unusable", rhythm=None, reasons=list(check.reasons))
        else:
            windows, _ = preprocessor.windows(signal)
            scores = self.predictor.scores(windows[-1:])[0]
            scores = np.array([1 - scores, scores]) if np.ndim(scores) == 0 else scores
            k = int(np.argmax(scores))
            event.update(signal="usable", rhythm=self.names[k], probability=round(float(scores[k]), 4))
        latency = (time.perf_counter() - began) * 1000
        event["latency_ms"] = round(latency, 2)
        self.state.latencies_ms.append(latency)
        self.state.n_windows += 1
        yield event
        yield from self._alerts(event)

    def _alerts(self, event: dict[str, Any]) -> Iterator[dict[str, Any]]:
        state = self.state
        t = event["t_s"]
        if event["signal"] == "unusable":
            state.n_unusable += 1
            if state.signal_ok:
                state.signal_ok = False
                flat = any("flat" in r for r in event["reasons"])
                yield self._alert("flat_line" if flat else "poor_signal", t, "; ".join(event["reasons"]))
            return
        if not state.signal_ok:
            state.signal_ok = True
            yield self._alert("signal_restored", t, "the signal is usable again")
        rhythm = event["rhythm"]
        if rhythm == state.rhythm:
            state.pending, state.pending_count = None, 0
            return
        state.pending_count = state.pending_count + 1 if rhythm == state.pending else 1
        state.pending = rhythm
        if state.pending_count < self.confirm:
            return
        previous, state.rhythm = state.rhythm, rhythm
        state.pending, state.pending_count = None, 0
        if rhythm == AF_CLASS:
            yield self._alert("af_onset", t, f"atrial fibrillation for {self.confirm} consecutive window(s)")
        elif previous == AF_CLASS:
            yield self._alert("af_offset", t, f"rhythm '{rhythm}' after atrial fibrillation")

    def _alert(self, kind: str, t: float, detail: str) -> dict[str, Any]:
        alert = {"alert": kind, "t_s": t, "detail": detail}
        self.state.alerts.append(alert)
        return alert

    def summary(self, samples: int, wall_s: float) -> dict[str, Any]:
        latencies = np.asarray(self.state.latencies_ms)
        duration_s = samples / self.rate
        return {"duration_s": round(duration_s, 3), "n_windows": self.state.n_windows,
                "n_unusable": self.state.n_unusable, "n_alerts": len(self.state.alerts),
                "wall_s": round(wall_s, 3), "x_real_time": round(duration_s / wall_s, 1) if wall_s > 0 else None,
                "latency_ms": ({"median": round(float(np.median(latencies)), 2),
                                "p95": round(float(np.percentile(latencies, 95)), 2),
                                "max": round(float(latencies.max()), 2)} if len(latencies) else None)}


def replay(monitor: RhythmMonitor, signal: np.ndarray, chunk_s: float = 1.0) -> Iterator[dict[str, Any]]:
    """Feed a recorded signal ``(leads, samples)`` through the monitor in chunks, as fast as it goes."""
    step = max(1, int(round(chunk_s * monitor.rate)))
    data = np.asarray(signal).T
    for begin in range(0, len(data), step):
        yield from monitor.push(data[begin:begin + step])


def read_stream(lines: Iterable[str], columns: int | None = None) -> Iterator[np.ndarray]:
    """Samples from text lines (one sample per line, channels separated by commas or whitespace), in chunks of
    up to 256 samples. A line that is not numbers is an error naming its line number (never its content)."""
    chunk: list[list[float]] = []
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        try:
            values = [float(v) for v in text.replace(",", " ").split()]
        except ValueError:
            if number == 1:  # a header line
                continue
            raise InvalidParameterError(f"standard input, line {number}: expected numbers (one sample per line, "
                                        "channels separated by commas or spaces).") from None
        if columns is None:
            columns = len(values)
        if len(values) != columns:
            raise InvalidParameterError(f"standard input, line {number}: {len(values)} value(s), expected "
                                        f"{columns} (one per channel).")
        chunk.append(values)
        if len(chunk) >= 256:
            yield np.asarray(chunk)
            chunk = []
    if chunk:
        yield np.asarray(chunk)
