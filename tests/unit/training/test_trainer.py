import numpy as np
import pytest
import torch
from sksurv.linear_model import CoxPHSurvivalAnalysis
from sksurv.util import Surv

from medai.core.config import TaskKind
from medai.core.errors import RunStateError
from medai.models import build_model
from medai.training.losses import cox_loss, make_loss
from medai.training.trainer import Trainer


def _data(n=300, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    y = (x[:, 0] - x[:, 1] + 0.5 * torch.randn(n, generator=g) > 0).long()
    return x, y


def _trainer(model, tmp_path=None, **kwargs):
    loss = make_loss(TaskKind.BINARY, None, 1, None)
    options = dict(max_epochs=30, batch_size=32, learning_rate=1e-2, patience=100, seed=0, progress=False)
    return Trainer(model, loss, checkpoint_dir=tmp_path, **(options | kwargs))


def test_training_is_deterministic_under_a_seed():
    x, y = _data()
    results = []
    for _ in range(2):
        torch.manual_seed(0)
        model = build_model("mlp", 4, 1, {"hidden_sizes": [16], "dropout": 0.2})
        _trainer(model).fit((x, y), (x, y))
        results.append(torch.cat([p.flatten() for p in model.parameters()]))
    assert torch.equal(results[0], results[1])


def test_resumed_training_equals_uninterrupted(tmp_path):
    x, y = _data()
    torch.manual_seed(0)
    reference = build_model("mlp", 4, 1, {"hidden_sizes": [16], "dropout": 0.2})
    full = _trainer(reference).fit((x, y), (x[:100], y[:100]))

    class Stop(Exception):
        pass

    def interrupt(epoch, row):
        if epoch == 12:
            raise Stop

    torch.manual_seed(0)
    model = build_model("mlp", 4, 1, {"hidden_sizes": [16], "dropout": 0.2})
    with pytest.raises(Stop):
        _trainer(model, tmp_path, on_epoch_end=interrupt).fit((x, y), (x[:100], y[:100]))
    torch.manual_seed(123)  # a fresh process: different global RNG, restored from the checkpoint
    model = build_model("mlp", 4, 1, {"hidden_sizes": [16], "dropout": 0.2})
    resumed = _trainer(model, tmp_path).fit((x, y), (x[:100], y[:100]), resume=True)
    assert resumed.resumed_from_epoch == 12
    assert [r["val_loss"] for r in resumed.history] == pytest.approx([r["val_loss"] for r in full.history])
    for a, b in zip(model.parameters(), reference.parameters()):
        assert torch.allclose(a, b)


def test_early_stopping_keeps_the_best_epoch():
    x, y = _data(120)
    torch.manual_seed(0)
    model = build_model("mlp", 4, 1, {"hidden_sizes": [128, 128], "dropout": 0.0})
    val = _data(200, seed=1)
    result = _trainer(model, max_epochs=400, patience=10, learning_rate=3e-2, batch_size=16).fit((x, y), val)
    assert result.stopped_early and result.epochs_run == result.best_epoch + 10
    assert _trainer(model).evaluate_loss(val) == pytest.approx(result.best_val_loss, rel=1e-6)


def test_resume_without_checkpoint_is_an_error(tmp_path):
    x, y = _data(50)
    with pytest.raises(RunStateError, match="no checkpoint"):
        _trainer(build_model("mlp", 4, 1, {}), tmp_path).fit((x, y), (x, y), resume=True)


def test_linear_deepsurv_recovers_cox_ph_coefficients():
    """A network with no hidden layer trained on the Cox partial likelihood is Cox regression."""
    rng = np.random.default_rng(0)
    n = 600
    x = rng.normal(size=(n, 3))
    t_event = rng.exponential(1 / np.exp(x @ np.array([0.8, -0.5, 0.0])))
    t_censor = rng.exponential(2.0, n)
    time, event = np.minimum(t_event, t_censor), (t_event <= t_censor).astype(np.float32)
    reference = CoxPHSurvivalAnalysis(alpha=0, ties="efron").fit(x, Surv.from_arrays(event.astype(bool), time)).coef_
    torch.manual_seed(0)
    model = build_model("mlp", 3, 1, {"hidden_sizes": [], "dropout": 0.0})
    data = (torch.tensor(x, dtype=torch.float32), torch.tensor(event), torch.tensor(time, dtype=torch.float32))
    Trainer(model, cox_loss, max_epochs=800, batch_size=None, learning_rate=0.05, weight_decay=0.0, patience=1000,
            seed=0, progress=False).fit(data, data)
    weights = model.net[0].weight.detach().numpy().ravel()
    np.testing.assert_allclose(weights, reference, atol=0.02)


def test_cox_loss_without_events_is_zero_with_gradient():
    log_risk = torch.randn(5, 1, requires_grad=True)
    loss = cox_loss(log_risk, torch.zeros(5), torch.arange(1.0, 6.0))
    loss.backward()
    assert float(loss.detach()) == 0.0 and log_risk.grad is not None
