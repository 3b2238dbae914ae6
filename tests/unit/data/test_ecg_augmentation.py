"""ECG augmentation as a Trainer batch transform: identity where it must be, reproducible per (seed, epoch,
index), each distortion within its documented range, dtype kept, and evaluation batches untouched."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from medai.core.errors import DataValidationError, InvalidParameterError
from medai.data.ecg_augmentation import (
    LEVELS,
    POWERLINE_FREQUENCIES_HZ,
    WANDER_COMPONENTS,
    WANDER_FREQUENCY_HZ,
    EcgAugmentation,
    EcgAugmentationDraw,
)
from medai.models import build_model
from medai.training.trainer import Trainer

FS = 100.0


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _batch(n: int = 8, leads: int = 3, samples: int = 1000, seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).standard_normal((n, leads, samples)).astype(np.float32))


def _only(draw: EcgAugmentationDraw, *keep: str) -> EcgAugmentationDraw:
    """``draw`` with every distortion but ``keep`` set to its neutral value."""
    batch, leads = draw.gain.shape
    neutral = {
        "shift": {"shift_fraction": np.zeros(batch)},
        "scale": {"gain": np.ones((batch, leads))},
        "wander": {"wander_amplitude": np.zeros((batch, WANDER_COMPONENTS))},
        "powerline": {"powerline_amplitude": np.zeros(batch)},
        "noise": {"noise_fraction": np.zeros(batch)},
        "dropout": {"lead_keep": np.ones((batch, leads), dtype=bool)},
    }
    changes = {k: v for name, fields in neutral.items() if name not in keep for k, v in fields.items()}
    return draw.replace(**changes)


def test_none_and_evaluation_return_the_batch_itself():
    x = _batch()
    index = torch.arange(8)
    assert EcgAugmentation("none", seed=0, sampling_rate_hz=FS)(x, index, 3, True) is x
    strong = EcgAugmentation("strong", seed=0, sampling_rate_hz=FS)
    assert strong(x, index, 3, False) is x
    assert torch.equal(x, _batch())  # and not modified in place by a training call
    strong(x, index, 3, True)
    assert torch.equal(x, _batch())


@pytest.mark.parametrize("strength", ["light", "strong"])
def test_reproducible_per_seed_epoch_and_index(strength):
    x = _batch(16)
    index = torch.arange(100, 116)
    augment = EcgAugmentation(strength, seed=7, sampling_rate_hz=FS)
    first = augment(x, index, 2, True)
    assert torch.equal(first, EcgAugmentation(strength, seed=7, sampling_rate_hz=FS)(x, index, 2, True))
    # a recording gets the same distortion whatever batch it comes in (resume, DDP ranks)
    order = torch.randperm(16, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(augment(x[order], index[order], 2, True), first[order])
    torch.testing.assert_close(augment(x[:5], index[:5], 2, True), first[:5])
    assert not torch.equal(first, x)
    assert not torch.allclose(first, augment(x, index, 3, True))  # another epoch
    assert not torch.allclose(first, EcgAugmentation(strength, seed=8, sampling_rate_hz=FS)(x, index, 2, True))


@pytest.mark.parametrize("strength", ["light", "strong"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_dtype_and_shape_kept_without_nan(strength, dtype):
    x = _batch(32, leads=12, samples=500).to(dtype)
    x[0, 3] = 0.0  # a flat lead: its s.d. is 0, nothing may divide by it
    y = EcgAugmentation(strength, seed=0, sampling_rate_hz=500)(x, torch.arange(32), 0, True)
    assert y.dtype == dtype and y.shape == x.shape and torch.isfinite(y.float()).all()
    assert (y[0, 3] == 0).all()


def test_parameter_ranges_and_rates():
    n, leads = 4000, 4
    index = torch.arange(n)
    for strength in ("light", "strong"):
        level = LEVELS[strength]
        draw = EcgAugmentation(strength, seed=1, sampling_rate_hz=500).draw(index, 0, leads)
        gain = draw.gain
        scaled = (gain != 1).any(axis=1)
        low, high = level.scale_range[0] * level.lead_scale_range[0], level.scale_range[1] * level.lead_scale_range[1]
        assert ((gain >= low) & (gain <= high)).all()
        assert abs(scaled.mean() - level.scale_p) < 0.03
        if strength == "light":
            assert (gain == gain[:, :1]).all()  # one gain per recording
        else:
            assert (gain[scaled].std(axis=1) > 0).all()  # and one per lead
        shifted = draw.shift_fraction != 0
        assert abs(shifted.mean() - level.shift_p) < 0.03
        assert np.abs(draw.shift_fraction).max() <= level.shift_max_fraction
        assert np.abs(draw.shift_fraction).max() > 0.9 * level.shift_max_fraction
        wander = draw.wander_amplitude.sum(axis=1)
        assert abs((wander > 0).mean() - level.wander_p) < 0.03 and wander.max() <= level.wander_max_fraction
        frequency = draw.wander_frequency_hz
        assert frequency.min() >= WANDER_FREQUENCY_HZ[0] and frequency.max() <= WANDER_FREQUENCY_HZ[1]
        assert abs((draw.powerline_amplitude > 0).mean() - level.powerline_p) < 0.03
        assert draw.powerline_amplitude.max() <= level.powerline_max_fraction
        assert set(np.unique(draw.powerline_frequency_hz)) == set(POWERLINE_FREQUENCIES_HZ)
        noisy = draw.noise_fraction > 0
        assert abs(noisy.mean() - level.noise_p) < 0.03
        snr_db = -20 * np.log10(draw.noise_fraction[noisy])
        assert snr_db.min() >= level.noise_snr_db[0] - 1e-9 and snr_db.max() <= level.noise_snr_db[1] + 1e-9
        dropped = ~draw.lead_keep
        assert not dropped.any(axis=1).all()  # most recordings keep every lead
        assert not dropped.all(axis=1).any()  # never every lead
        assert abs(dropped.mean() - level.lead_dropout_p) < 0.01
    single = EcgAugmentation("strong", seed=1, sampling_rate_hz=500).draw(index, 0, 1)
    assert single.lead_keep.all()  # a single lead is never dropped
    low_rate = EcgAugmentation("strong", seed=1, sampling_rate_hz=100).draw(index, 0, 1)
    assert (low_rate.powerline_amplitude[low_rate.powerline_frequency_hz == 60] == 0).all()  # would alias
    assert (low_rate.powerline_amplitude == 0).all()  # 50 Hz is the Nyquist frequency at 100 Hz: skipped too


def _sine_batch(n: int, leads: int, seconds: float, fs: float, hz: float = 10.0) -> torch.Tensor:
    t = torch.arange(int(seconds * fs)) / fs
    return torch.sin(2 * torch.pi * hz * t).repeat(n, leads, 1) * torch.arange(1, leads + 1)[None, :, None]


def test_amplitude_scaling_multiplies_each_lead_by_its_gain():
    augment = EcgAugmentation("strong", seed=0, sampling_rate_hz=FS)
    x = _batch(64)
    draw = _only(augment.draw(torch.arange(64), 0, 3), "scale")
    y = augment.apply(x, draw)
    torch.testing.assert_close(y, x * torch.from_numpy(draw.gain).float()[:, :, None])
    assert (draw.gain != 1).any()


def test_time_shift_is_a_circular_roll_within_the_range():
    augment = EcgAugmentation("strong", seed=0, sampling_rate_hz=FS)
    x = _batch(64, samples=400)
    draw = _only(augment.draw(torch.arange(64), 0, 3), "shift")
    y = augment.apply(x, draw)
    shifts = np.rint(draw.shift_fraction * 400).astype(int)
    assert np.abs(shifts).max() <= 40 and (shifts != 0).sum() > 30
    for i, shift in enumerate(shifts):
        assert torch.equal(y[i], torch.roll(x[i], int(shift), dims=1))


def test_baseline_wander_is_slow_and_bounded():
    fs, seconds = 100.0, 60.0  # 1/60 Hz resolution
    augment = EcgAugmentation("strong", seed=0, sampling_rate_hz=fs)
    x = _sine_batch(16, 2, seconds, fs)
    draw = augment.draw(torch.arange(16), 0, 2)
    draw = _only(draw.replace(wander_amplitude=np.full((16, WANDER_COMPONENTS), 0.3 / WANDER_COMPONENTS)),
                 "wander")
    wander = augment.apply(x, draw) - x
    spectrum = torch.fft.rfft(wander, dim=2).abs() ** 2
    frequency = torch.fft.rfftfreq(x.shape[2], 1 / fs)
    assert (spectrum[..., frequency < 1.0].sum(-1) / spectrum.sum(-1) > 0.99).all()
    std = x.std(dim=2, keepdim=True)
    assert (wander.abs() <= 0.3 * std + 1e-5).all() and (wander.abs().amax(dim=2) > 0.05 * std[..., 0]).all()
    torch.testing.assert_close(wander[:, 1], 2 * wander[:, 0])  # scaled by each lead's s.d.


def test_powerline_interference_is_at_50_or_60_hz():
    fs = 500.0
    augment = EcgAugmentation("strong", seed=0, sampling_rate_hz=fs)
    x = _sine_batch(32, 1, 4.0, fs, hz=1.0)
    draw = _only(augment.draw(torch.arange(32), 0, 1).replace(powerline_amplitude=np.full(32, 0.1)), "powerline")
    added = augment.apply(x, draw) - x
    frequency = torch.fft.rfftfreq(x.shape[2], 1 / fs)
    peak = frequency[torch.fft.rfft(added[:, 0], dim=1).abs().argmax(dim=1)]
    torch.testing.assert_close(peak.double(), torch.from_numpy(draw.powerline_frequency_hz))
    assert set(peak.tolist()) == {50.0, 60.0}
    # a whole number of periods in 4 s: the RMS of a sinusoid of amplitude a is a / √2
    torch.testing.assert_close(added.std(dim=2), 0.1 / 2**0.5 * x.std(dim=2), rtol=0.01, atol=0)


def test_gaussian_noise_has_the_drawn_snr():
    augment = EcgAugmentation("strong", seed=0, sampling_rate_hz=FS)
    x = _sine_batch(64, 2, 60.0, FS)
    draw = _only(augment.draw(torch.arange(64), 0, 2), "noise")
    noise = augment.apply(x, draw) - x
    noisy = draw.noise_fraction > 0
    assert noisy.sum() > 20 and (noise[~noisy] == 0).all()
    measured = noise[noisy].std(dim=2) / x[noisy].std(dim=2)  # (N, leads)
    expected = torch.from_numpy(draw.noise_fraction[noisy]).float()[:, None].expand_as(measured)
    torch.testing.assert_close(measured, expected, rtol=0.05, atol=0)
    assert noise[noisy].mean(dim=2).abs().max() < 0.05 * x.std()  # zero mean
    assert not torch.allclose(noise[noisy][0], noise[noisy][1])  # each recording its own field


def test_lead_dropout_zeroes_whole_leads_only():
    augment = EcgAugmentation("strong", seed=0, sampling_rate_hz=FS)
    x = _batch(400, leads=12, samples=50)
    draw = _only(augment.draw(torch.arange(400), 0, 12), "dropout")
    y = augment.apply(x, draw)
    keep = torch.from_numpy(draw.lead_keep)
    assert (~keep).sum() > 50
    assert (y[~keep] == 0).all() and torch.equal(y[keep], x[keep])


def test_light_never_drops_leads_nor_reverses_or_inverts():
    augment = EcgAugmentation("light", seed=0, sampling_rate_hz=FS)
    draw = augment.draw(torch.arange(2000), 0, 12)
    assert draw.lead_keep.all() and (draw.gain > 0).all()
    # no polarity flip and no time reversal at any strength: the output stays positively correlated with the input
    x = _batch(256, leads=2, samples=1000)
    for strength in ("light", "strong"):
        y = EcgAugmentation(strength, seed=0, sampling_rate_hz=FS)(x, torch.arange(256), 0, True)
        shifts = np.rint(EcgAugmentation(strength, seed=0, sampling_rate_hz=FS).draw(
            torch.arange(256), 0, 2).shift_fraction * 1000).astype(int)
        aligned = torch.stack([torch.roll(y[i], -int(s), dims=1) for i, s in enumerate(shifts)])
        kept = aligned.abs().amax(dim=2) > 0  # dropped leads are all zero
        correlation = F.cosine_similarity(aligned, x, dim=2)
        assert (correlation[kept] > 0.8).all()


def test_invalid_arguments():
    with pytest.raises(InvalidParameterError, match="'strength' parameter of EcgAugmentation must be one of"):
        EcgAugmentation("standard", seed=0, sampling_rate_hz=FS)
    with pytest.raises(InvalidParameterError, match="'sampling_rate_hz' parameter"):
        EcgAugmentation("light", seed=0, sampling_rate_hz=0)
    with pytest.raises(TypeError):
        EcgAugmentation("light", seed=0)  # the sampling rate has no default
    augment = EcgAugmentation("light", seed=0, sampling_rate_hz=FS)
    with pytest.raises(DataValidationError, match="float batch"):
        augment(torch.zeros(2, 1, 100, dtype=torch.int16), torch.arange(2), 0, True)
    with pytest.raises(DataValidationError, match="index has 3 entries"):
        augment(_batch(2), torch.arange(3), 0, True)


def test_plugs_into_the_trainer_training_only():
    calls = []

    class Recording(EcgAugmentation):
        def __call__(self, signals, index, epoch, training):
            calls.append((epoch, training, len(index)))
            return super().__call__(signals, index, epoch, training)

    torch.manual_seed(0)
    x, y = _batch(24, leads=1, samples=300), torch.tensor([0.0, 1.0] * 12)[:, None]
    model = build_model("resnet1d", 1, 1, {"width": 8})
    trainer = Trainer(model, F.binary_cross_entropy_with_logits, max_epochs=2, batch_size=8, progress=False,
                      batch_transform=Recording("strong", seed=0, sampling_rate_hz=FS))
    trainer.fit((x[:16], y[:16]), (x[16:], y[16:]))
    # two training batches of 8 per epoch, epochs counted from 0; each validation pass calls with training=False
    assert [(e, t, n) for e, t, n in calls if t] == [(0, True, 8)] * 2 + [(1, True, 8)] * 2
    assert [(t, n) for _, t, n in calls if not t] == [(False, 8)] * 2
