"""The registered ECG networks: shapes for any length and lead count, embeddings and time-resolved logits,
gradients, determinism, bf16, input errors, and a small learning check on synthetic rhythms."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from medai.core.errors import DataValidationError, InvalidParameterError
from medai.models import MODELS, build_model

#: Small versions for the tests (the defaults are measured in the module's report, not here).
SMALL = {"resnet1d": {"width": 8}, "ecg_transformer": {"width": 32, "depth": 2, "token_stride": 8}}
NAMES = list(SMALL)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _model(name: str, leads: int = 1, out_features: int = 2, seed: int = 0, **params) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model(name, leads, out_features, {**SMALL[name], **params})


def test_both_are_registered():
    assert {"resnet1d", "ecg_transformer"} <= set(MODELS.names())


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(("leads", "samples"), [(1, 300), (1, 1500), (12, 1000), (3, 777)])
def test_any_length_and_lead_count(name, leads, samples):
    model = _model(name, leads, out_features=3)
    x = torch.randn(2, leads, samples)
    model.train()
    assert model(x).shape == (2, 3)
    model.eval()
    with torch.no_grad():
        steps = math.ceil(samples / model.downsampling)
        assert model.features(x).shape == (2, model.embedding_size)
        assert model.feature_map(x).shape[::2] == (2, steps)
        assert model.forward_time(x).shape == (2, 3, steps)


def test_default_sizes():
    resnet = build_model("resnet1d", 1, 1, {})
    assert resnet.downsampling == 32 and resnet.embedding_size == 2 * 256
    transformer = build_model("ecg_transformer", 12, 1, {})
    assert transformer.downsampling == 16 and transformer.embedding_size == 64 and len(transformer.encoder.layers) == 4
    deeper = build_model("resnet1d", 1, 1, {"blocks_per_stage": 2})
    assert len(deeper.blocks) == 8 and sum(p.numel() for p in deeper.parameters()) > 2 * sum(
        p.numel() for p in resnet.parameters())


def test_resnet_forward_time_is_the_head_on_each_step():
    model = _model("resnet1d", 2, out_features=3).eval()
    x = torch.randn(2, 2, 640)
    with torch.no_grad():
        h = model.feature_map(x)  # (2, C, 20)
        per_step = model.forward_time(x)
        for t in (0, 7, 19):
            expected = model.head(torch.cat([h[:, :, t], h[:, :, t]], dim=1))
            torch.testing.assert_close(per_step[:, :, t], expected)
        torch.testing.assert_close(model(x), model.head(model.features(x)))


def test_transformer_forward_time_averages_to_the_logits():
    model = _model("ecg_transformer", 1, out_features=3).eval()
    x = torch.randn(3, 1, 500)
    with torch.no_grad():
        torch.testing.assert_close(model.forward_time(x).mean(dim=2), model(x), rtol=1e-5, atol=1e-5)


def test_transformer_padding_mask_ignores_the_padding():
    model = _model("ecg_transformer", 1).eval()
    x = torch.randn(1, 1, 640)
    other = x.clone()
    other[..., 464:] = 5 * torch.randn(176)  # beyond valid (400) + the tokenizer's receptive field
    valid = torch.tensor([400])
    with torch.no_grad():
        torch.testing.assert_close(model(x, valid), model(other, valid))
        torch.testing.assert_close(model.features(x, valid), model.features(other, valid))
        assert not torch.allclose(model(x), model(other))
    with pytest.raises(DataValidationError, match="one positive length per recording"):
        model(x, torch.tensor([400, 400]))


@pytest.mark.parametrize("name", NAMES)
def test_gradients_reach_every_parameter_and_the_input(name):
    model = _model(name, 3).train()
    x = torch.randn(4, 3, 600, requires_grad=True)
    model(x).pow(2).mean().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, pname


@pytest.mark.parametrize("name", NAMES)
def test_deterministic_under_a_seed(name):
    x = torch.randn(4, 2, 500)
    first, second, third = _model(name, 2, seed=3), _model(name, 2, seed=3), _model(name, 2, seed=4)
    for a, b in zip(first.state_dict().values(), second.state_dict().values()):
        assert torch.equal(a, b)
    torch.manual_seed(9)
    out_first = first.train()(x)  # dropout too: same seed, same masks
    torch.manual_seed(9)
    assert torch.equal(out_first, second.train()(x))
    first.eval(), third.eval()
    with torch.no_grad():
        assert not torch.allclose(first(x), third(x))


@pytest.mark.parametrize("name", NAMES)
def test_bf16_autocast_forward_and_backward(name):
    model = _model(name, 2)
    x = torch.randn(4, 2, 500)
    model.eval()
    with torch.no_grad():
        reference = model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(x)
            per_step = model.forward_time(x)
    assert torch.isfinite(low).all() and torch.isfinite(per_step).all()
    torch.testing.assert_close(low.float(), reference, rtol=0.1, atol=0.1)
    model.train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        output = model(x)
    output.float().pow(2).mean().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize("name", NAMES)
def test_input_errors_say_what_is_expected(name):
    model = _model(name, 12)
    with pytest.raises(DataValidationError, match=r"expects input \(batch, leads=12, samples\)"):
        model(torch.randn(2, 1, 1000))
    with pytest.raises(DataValidationError, match=r"expects input"):
        model(torch.randn(12, 1000))
    with pytest.raises(DataValidationError, match="at least"):
        model(torch.randn(2, 12, 4))


@pytest.mark.parametrize(("name", "params", "message"), [
    ("resnet1d", {"kernel_size": 8}, "'kernel_size' parameter of ResNet1d must be an odd integer"),
    ("resnet1d", {"stages": 0}, "'stages' parameter"),
    ("resnet1d", {"dropout": 1.0}, "'dropout' parameter"),
    ("resnet1d", {"depth": 4}, "Model 'resnet1d'"),
    ("ecg_transformer", {"width": 30, "heads": 4}, "'width' parameter of EcgTransformer"),
    ("ecg_transformer", {"token_stride": 10}, "'token_stride' parameter .* multiple of 4"),
    ("ecg_transformer", {"depth": 1.5}, "'depth' parameter"),
])
def test_invalid_parameters(name, params, message):
    with pytest.raises(InvalidParameterError, match=message):
        build_model(name, 1, 1, params)


def _rhythms(n: int, seed: int, fs: float = 150.0, seconds: float = 4.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Synthetic 1-lead strips: class 0 regular beats (fixed RR), class 1 irregular beats (RR uniform 0.35–1.1 s)
    with a 0.4 s burst of 20–30 Hz oscillation at 15 % of the beat height (fibrillation-like). Same beat shape and
    noise in both. (Irregularity alone is learnt by resnet1d to 0.92–0.95 in 50 steps, not by the transformer.)"""
    rng = np.random.default_rng(seed)
    samples = int(fs * seconds)
    t = np.arange(samples) / fs
    x = np.zeros((n, 1, samples), dtype=np.float32)
    y = rng.permutation(np.arange(n) % 2)
    for i in range(n):
        if y[i] == 0:
            rr = rng.uniform(0.6, 1.0)
            beats = np.arange(rng.uniform(0, rr), seconds, rr)
        else:
            beats = np.cumsum(rng.uniform(0.35, 1.1, size=20)) - rng.uniform(0, 0.5)
            beats = beats[(beats > 0) & (beats < seconds)]
            start = rng.uniform(0, seconds - 0.4)
            burst = (t >= start) & (t < start + 0.4)
            x[i, 0, burst] += 0.15 * np.sin(2 * np.pi * rng.uniform(20, 30) * t[burst])
        for b in beats:
            x[i, 0] += np.exp(-0.5 * ((t - b) / 0.012) ** 2)  # QRS-like spike
        x[i, 0] += 0.05 * rng.standard_normal(samples)
    x = (x - x.mean(axis=2, keepdims=True)) / x.std(axis=2, keepdims=True)
    return torch.from_numpy(x), torch.from_numpy(y.astype(np.float32))


@pytest.mark.parametrize("name", NAMES)
def test_learns_irregular_rhythm_from_regular(name):
    x_train, y_train = _rhythms(200, seed=1)
    x_test, y_test = _rhythms(100, seed=2)
    model = _model(name, 1, out_features=1, seed=0)
    with torch.no_grad():
        untrained = ((model.eval()(x_test)[:, 0] > 0).float() == y_test).float().mean().item()
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(50):
        batch = torch.randint(0, 200, (32,), generator=generator)
        loss = F.binary_cross_entropy_with_logits(model(x_train[batch])[:, 0], y_train[batch])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    model.eval()
    with torch.no_grad():
        accuracy = ((model(x_test)[:, 0] > 0).float() == y_test).float().mean().item()
    assert untrained < 0.75
    assert accuracy > 0.9
