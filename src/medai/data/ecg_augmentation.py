"""ECG augmentation as the Trainer's ``batch_transform``: random, label-preserving distortions of normalised ECGs.

:class:`EcgAugmentation` mirrors :class:`medai.data.images.BatchAugmentation`'s call
``(x_batch, index, epoch, training) -> model input`` and its seeding: every recording's random parameters come
from a generator seeded by (seed, epoch, index), so a run is the same when resumed and under
DistributedDataParallel (where each rank sees other indices). Unlike the image transform it does not normalise:
ECGs are normalised (float, per lead) before they reach the Trainer, so this transform only augments, and only
when ``training`` is true; evaluation batches pass through untouched (the same tensor is returned).

The distortions, in the order they are applied (ranges per strength in :data:`LEVELS`):

1. time shift: a circular roll by up to a fraction of the window. For a rhythm strip the label holds anywhere in
   the window; a roll keeps every beat (a zero fill would insert a flat line that reads as a pause or lead-off).
2. amplitude scaling: one gain per recording (``strong``: times a gain per lead) — electrode placement, body
   habitus and amplifier gain vary between recordings.
3. baseline wander: a sum of 3 sinusoids of 0.05–0.5 Hz (breathing, electrode drift), peak up to a fraction of
   each lead's s.d.; one curve per recording, scaled per lead.
4. powerline interference: one 50 or 60 Hz sinusoid at low amplitude (skipped where the sampling rate cannot
   represent it, i.e. at or under twice its frequency).
5. gaussian noise (EMG-like) at a signal-to-noise ratio drawn in dB, relative to each lead's power.
6. lead dropout (multi-lead only): each lead zeroed with a small probability (a disconnected electrode),
   never all leads of a recording.

Probability per recording and range, ``light`` / ``strong``:

=====================  =============================  ==========================================
distortion             light                          strong
=====================  =============================  ==========================================
time shift             p 0.5, ±5 % of the window      p 0.8, ±10 %
amplitude scaling      p 0.5, ×0.8–1.2                p 0.8, ×0.8–1.2 × 0.9–1.1 per lead
baseline wander        p 0.3, peak ≤ 0.1 s.d.         p 0.5, peak ≤ 0.3 s.d.
powerline 50/60 Hz     p 0.1, amplitude ≤ 0.05 s.d.   p 0.3, amplitude ≤ 0.1 s.d.
gaussian noise         p 0.3, SNR 20–30 dB            p 0.5, SNR 10–30 dB
lead dropout           off                            each lead p 0.05
=====================  =============================  ==========================================

No time reversal and no polarity flip, even at ``strong``: reversing time puts the P wave after the QRS (read as
retrograde conduction) and turns the T wave around; inverting polarity turns ST elevation into depression and
changes the electrical axis (an inverted lead I is the sign of dextrocardia or lead reversal). Both change what
an ECG means, so they are not label-preserving.

Statistics (each lead's s.d. and power) are taken from the batch before augmentation, in fp32; the result has the
input's dtype (float32 or bf16).
"""

from __future__ import annotations

import dataclasses
import math
import zlib
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import torch
from torch import Tensor

from medai.core.errors import DataValidationError, invalid_parameter

__all__ = ["LEVELS", "EcgAugmentation", "EcgAugmentationDraw", "EcgAugmentationLevel", "EcgAugmentationStrength"]

#: Sinusoids summed into one baseline-wander curve.
WANDER_COMPONENTS = 3
#: Frequency range of the baseline wander (breathing is 0.1–0.5 Hz; drift is slower).
WANDER_FREQUENCY_HZ = (0.05, 0.5)
POWERLINE_FREQUENCIES_HZ = (50.0, 60.0)


class EcgAugmentationStrength(StrEnum):
    """How much :class:`EcgAugmentation` distorts: ``none`` (identity), ``light`` (default), ``strong``."""

    NONE = "none"
    LIGHT = "light"
    STRONG = "strong"


@dataclass(frozen=True)
class EcgAugmentationLevel:
    """Probabilities (``*_p``, per recording) and ranges of each distortion at one strength."""

    shift_p: float
    shift_max_fraction: float  # roll by up to ± this fraction of the window
    scale_p: float
    scale_range: tuple[float, float]  # one gain per recording, uniform
    lead_scale_range: tuple[float, float]  # times one gain per lead, uniform ((1, 1): off)
    wander_p: float
    wander_max_fraction: float  # peak of the wander curve ≤ this × the lead's s.d.
    powerline_p: float
    powerline_max_fraction: float  # amplitude ≤ this × the lead's s.d.
    noise_p: float
    noise_snr_db: tuple[float, float]  # signal-to-noise ratio, uniform in dB
    lead_dropout_p: float  # per lead, multi-lead recordings only


LEVELS: dict[EcgAugmentationStrength, EcgAugmentationLevel] = {
    EcgAugmentationStrength.NONE: EcgAugmentationLevel(
        shift_p=0.0, shift_max_fraction=0.0, scale_p=0.0, scale_range=(1.0, 1.0), lead_scale_range=(1.0, 1.0),
        wander_p=0.0, wander_max_fraction=0.0, powerline_p=0.0, powerline_max_fraction=0.0, noise_p=0.0,
        noise_snr_db=(math.inf, math.inf), lead_dropout_p=0.0),
    EcgAugmentationStrength.LIGHT: EcgAugmentationLevel(
        shift_p=0.5, shift_max_fraction=0.05, scale_p=0.5, scale_range=(0.8, 1.2), lead_scale_range=(1.0, 1.0),
        wander_p=0.3, wander_max_fraction=0.1, powerline_p=0.1, powerline_max_fraction=0.05, noise_p=0.3,
        noise_snr_db=(20.0, 30.0), lead_dropout_p=0.0),
    EcgAugmentationStrength.STRONG: EcgAugmentationLevel(
        shift_p=0.8, shift_max_fraction=0.1, scale_p=0.8, scale_range=(0.8, 1.2), lead_scale_range=(0.9, 1.1),
        wander_p=0.5, wander_max_fraction=0.3, powerline_p=0.3, powerline_max_fraction=0.1, noise_p=0.5,
        noise_snr_db=(10.0, 30.0), lead_dropout_p=0.05),
}


@dataclass(frozen=True)
class EcgAugmentationDraw:
    """The random parameters of one batch, one row per recording (numpy arrays; an unapplied distortion has its
    neutral value: shift 0, gain 1, amplitude 0, keep True)."""

    shift_fraction: np.ndarray  # (B,) roll by round(fraction × samples); positive = later
    gain: np.ndarray  # (B, leads)
    wander_frequency_hz: np.ndarray  # (B, WANDER_COMPONENTS)
    wander_phase: np.ndarray  # (B, WANDER_COMPONENTS) radians
    wander_amplitude: np.ndarray  # (B, WANDER_COMPONENTS) × lead s.d.; sums to the peak fraction
    powerline_frequency_hz: np.ndarray  # (B,)
    powerline_phase: np.ndarray  # (B,)
    powerline_amplitude: np.ndarray  # (B,) × lead s.d.
    noise_fraction: np.ndarray  # (B,) noise s.d. ÷ lead s.d. = 10 ** (-snr_db / 20); 0 = no noise
    noise_seed: np.ndarray  # (B,) seeds of the per-recording noise field
    lead_keep: np.ndarray  # (B, leads) bool

    def replace(self, **changes: np.ndarray) -> EcgAugmentationDraw:
        return dataclasses.replace(self, **changes)


class EcgAugmentation:
    """Augments a normalised float ECG batch ``(B, leads, samples)`` in training; see the module docstring.

    Args:
        strength: ``none``, ``light`` (default) or ``strong`` (ranges in :data:`LEVELS`).
        seed: base seed; each recording's parameters come from (seed, epoch, index).
        sampling_rate_hz: sampling rate of the batches (sets wander and powerline frequencies).

    Use: ``Trainer(..., batch_transform=EcgAugmentation("light", seed=seed, sampling_rate_hz=500))``; the Trainer
    calls ``transform(x, index, epoch, training)``.
    """

    def __init__(self, strength: str = "light", *, seed: int = 0, sampling_rate_hz: float) -> None:
        try:
            self.strength = EcgAugmentationStrength(strength)
        except ValueError:
            raise invalid_parameter("strength", "EcgAugmentation", f"one of {[s.value for s in LEVELS]}",
                                    strength) from None
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise invalid_parameter("seed", "EcgAugmentation", "an integer", seed)
        if isinstance(sampling_rate_hz, bool) or not isinstance(sampling_rate_hz, (int, float)) \
                or not math.isfinite(sampling_rate_hz) or sampling_rate_hz <= 0:
            raise invalid_parameter("sampling_rate_hz", "EcgAugmentation", "a positive number of Hz",
                                    sampling_rate_hz)
        self.seed = seed
        self.sampling_rate_hz = float(sampling_rate_hz)
        self.level = LEVELS[self.strength]

    def __call__(self, signals: Tensor, index: Tensor, epoch: int, training: bool) -> Tensor:
        """Float ``(B, leads, samples)`` → the same shape and dtype; ``index`` ``(B,)`` identifies the recordings.
        Returns ``signals`` itself when not training or at strength ``none``."""
        if not training or self.strength is EcgAugmentationStrength.NONE:
            return signals
        _check_batch(signals, index)
        if signals.shape[0] == 0:
            return signals
        return self.apply(signals, self.draw(index, epoch, signals.shape[1]))

    def draw(self, index: Tensor | np.ndarray, epoch: int, leads: int) -> EcgAugmentationDraw:
        """The random parameters of recordings ``index`` at ``epoch`` (a fixed number of draws per recording, so
        each parameter depends only on (seed, epoch, index))."""
        indices = torch.as_tensor(index).reshape(-1).tolist()
        rows = [self._draw_one(np.random.default_rng(_sample_seed(self.seed, epoch, int(i))), leads)
                for i in indices or [0]]  # an empty batch: stack one row and keep none, for the shapes
        fields = [f.name for f in dataclasses.fields(EcgAugmentationDraw)]
        return EcgAugmentationDraw(**{name: np.stack([row[name] for row in rows])[: len(indices)]
                                      for name in fields})

    def _draw_one(self, rng: np.random.Generator, leads: int) -> dict[str, np.ndarray]:
        level = self.level
        on = rng.random(6) < np.array([level.shift_p, level.scale_p, level.wander_p, level.powerline_p,
                                       level.noise_p, 1.0])
        shift = rng.uniform(-level.shift_max_fraction, level.shift_max_fraction)
        gain = rng.uniform(*level.scale_range) * rng.uniform(*level.lead_scale_range, size=leads)
        wander_frequency = rng.uniform(*WANDER_FREQUENCY_HZ, size=WANDER_COMPONENTS)
        wander_phase = rng.uniform(0, 2 * np.pi, size=WANDER_COMPONENTS)
        # the peak fraction split over the components: |sum| ≤ sum of amplitudes = the peak
        wander_amplitude = rng.dirichlet(np.ones(WANDER_COMPONENTS)) * rng.uniform(0, level.wander_max_fraction)
        powerline_frequency = rng.choice(POWERLINE_FREQUENCIES_HZ)
        powerline_phase = rng.uniform(0, 2 * np.pi)
        powerline_amplitude = rng.uniform(0, level.powerline_max_fraction)
        snr_db = rng.uniform(*level.noise_snr_db) if level.noise_p > 0 else math.inf
        noise_seed = rng.integers(0, 2**63 - 1)
        dropped = rng.random(leads) < level.lead_dropout_p
        if leads == 1 or dropped.all():
            dropped[:] = False
        if powerline_frequency * 2 >= self.sampling_rate_hz:  # not representable: it would alias
            on[3] = False
        return {
            "shift_fraction": np.float64(shift if on[0] else 0.0),
            "gain": gain if on[1] else np.ones(leads),
            "wander_frequency_hz": wander_frequency,
            "wander_phase": wander_phase,
            "wander_amplitude": wander_amplitude if on[2] else np.zeros(WANDER_COMPONENTS),
            "powerline_frequency_hz": np.float64(powerline_frequency),
            "powerline_phase": np.float64(powerline_phase),
            "powerline_amplitude": np.float64(powerline_amplitude if on[3] else 0.0),
            "noise_fraction": np.float64(10 ** (-snr_db / 20) if on[4] else 0.0),
            "noise_seed": np.int64(noise_seed),
            "lead_keep": ~dropped,
        }

    def apply(self, signals: Tensor, draw: EcgAugmentationDraw) -> Tensor:
        """Apply the parameters ``draw`` to ``signals`` ``(B, leads, samples)`` (vectorised over the batch, except
        the noise fields, drawn per recording from their own seeds)."""
        batch, leads, samples = signals.shape
        device = signals.device
        x = signals.float()
        std = x.std(dim=2, keepdim=True)  # (B, L, 1), before augmentation

        def tensor(array: np.ndarray) -> Tensor:
            return torch.as_tensor(np.asarray(array), dtype=torch.float32, device=device)

        shift = torch.as_tensor(np.rint(draw.shift_fraction * samples).astype(np.int64), device=device)
        if bool((shift != 0).any()):
            source = (torch.arange(samples, device=device)[None, :] - shift[:, None]) % samples  # (B, S)
            x = torch.gather(x, 2, source[:, None, :].expand(batch, leads, samples))
        x = x * tensor(draw.gain)[:, :, None]
        t = torch.arange(samples, dtype=torch.float32, device=device) / self.sampling_rate_hz  # (S,) seconds
        if draw.wander_amplitude.any():
            angle = 2 * math.pi * tensor(draw.wander_frequency_hz)[:, :, None] * t + tensor(draw.wander_phase)[
                :, :, None]  # (B, K, S)
            wander = (tensor(draw.wander_amplitude)[:, :, None] * torch.sin(angle)).sum(dim=1)  # (B, S)
            x = x + wander[:, None, :] * std
        if draw.powerline_amplitude.any():
            angle = 2 * math.pi * tensor(draw.powerline_frequency_hz)[:, None] * t + tensor(draw.powerline_phase)[
                :, None]
            x = x + (tensor(draw.powerline_amplitude)[:, None] * torch.sin(angle))[:, None, :] * std
        noisy = np.flatnonzero(draw.noise_fraction > 0)
        if noisy.size:
            fields = np.stack([np.random.default_rng(int(draw.noise_seed[i])).standard_normal(
                (leads, samples), dtype=np.float32) for i in noisy])
            rows = torch.as_tensor(noisy, device=device)
            scale = tensor(draw.noise_fraction[noisy])[:, None, None] * std[rows]  # (N, L, 1)
            x = x.index_add(0, rows, torch.from_numpy(fields).to(device) * scale)
        if not draw.lead_keep.all():
            x = x * torch.as_tensor(draw.lead_keep, device=device)[:, :, None]
        return x.to(signals.dtype)


def _check_batch(signals: Tensor, index: Tensor) -> None:
    if signals.ndim != 3 or not signals.is_floating_point():
        raise DataValidationError(
            f"EcgAugmentation expects a float batch (batch, leads, samples); got shape {tuple(signals.shape)} of "
            f"{signals.dtype}. Normalise the ECGs to floats before training."
        )
    if len(index) != signals.shape[0]:
        raise DataValidationError(
            f"EcgAugmentation: index has {len(index)} entries for a batch of {signals.shape[0]} recordings."
        )


def _sample_seed(seed: int, epoch: int, index: int) -> int:
    return zlib.crc32(f"ecg:{seed}:{epoch}:{index}".encode()) & 0x7FFFFFFF
