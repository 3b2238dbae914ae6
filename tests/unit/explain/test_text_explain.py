"""Word occlusion and its deletion/insertion check on a real TF-IDF + logistic-regression classifier (the
explanation code only needs a scoring function of raw texts)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from medai.core.errors import DataValidationError, InvalidParameterError
from medai.explain.faithfulness import deletion_insertion_chart
from medai.explain.text import explain_texts, remove_words, text_deletion_insertion, word_occlusion, word_spans

FILLER = ["heart size is normal", "the lungs are clear", "no pneumothorax is seen", "bones are intact",
          "mediastinum is unremarkable", "no acute osseous abnormality"]


def _reports(n: int, seed: int) -> tuple[list[str], np.ndarray]:
    rng = np.random.default_rng(seed)
    texts, y = [], []
    for _ in range(n):
        positive = rng.random() < 0.5
        parts = [str(p) for p in rng.choice(FILLER, size=3, replace=False)]
        if positive:
            parts.insert(int(rng.integers(0, 4)), "right lower lobe consolidation")
        texts.append("Patient Quux. " + ". ".join(parts) + ".")
        y.append(int(positive))
    return texts, np.array(y)


@pytest.fixture(scope="module")
def classifier():
    texts, y = _reports(200, seed=0)
    model = make_pipeline(TfidfVectorizer(), LogisticRegression(C=10.0, max_iter=1000)).fit(texts, y)
    return lambda batch: model.decision_function(batch)  # (b,) logit of the positive class


def test_word_spans_and_removal_keep_the_layout():
    text = "Findings:\n  small  effusion.\nImpression: none"
    spans = word_spans(text)
    assert [text[a:b] for a, b in spans] == ["Findings:", "small", "effusion.", "Impression:", "none"]
    assert remove_words(text, spans, [False, True, False, False, True]) == "Findings:\n    effusion.\nImpression: "
    grouped = word_spans("a b c d e", max_words=2)  # 5 words in 2 spans of 3 and 2 words
    assert grouped == [(0, 5), (6, 9)]


def test_occlusion_finds_the_decisive_words(classifier):
    texts, y = _reports(6, seed=1)
    positive = [t for t, label in zip(texts, y, strict=True) if label == 1][0]
    values = word_occlusion(classifier, [positive])[0]
    words = [positive[a:b] for a, b in word_spans(positive)]
    assert values.shape == (len(words),)
    top = {words[k].strip(".").lower() for k in np.argsort(-values)[:3]}
    assert top <= {"right", "lower", "lobe", "consolidation"}  # the finding, not the filler
    # each value is exactly the score drop of cutting that word out
    k = int(np.argmax(values))
    cut = remove_words(positive, word_spans(positive), np.arange(len(words)) == k)
    assert values[k] == pytest.approx(classifier([positive])[0] - classifier([cut])[0])


def test_deletion_insertion_beats_random_only_for_the_true_map(classifier):
    texts, y = _reports(16, seed=2)
    texts = [t for t, label in zip(texts, y, strict=True) if label == 1][:6]
    maps = word_occlusion(classifier, texts)
    report = text_deletion_insertion(classifier, texts, maps, steps=8, n_random=8, seed=0)
    assert report["n_inputs"] == len(texts) and len(report["fractions"]) == 9
    assert report["deletion"]["auc"] < report["deletion"]["random_auc_mean"]
    assert report["better_than_random"] is True
    reversed_maps = [-m for m in maps]  # least important first: must not pass
    worse = text_deletion_insertion(classifier, texts, reversed_maps, steps=8, n_random=8, seed=0)
    assert worse["better_than_random"] is False
    assert deletion_insertion_chart(report)  # the shared chart reads the same keys


def test_explain_texts_writes_no_text_outside_the_vocabulary(classifier):
    texts, _ = _reports(8, seed=3)
    result = explain_texts(classifier, texts, vocabulary={"consolidation", "lobe"}, n_top=20, steps=5,
                           n_random=4)
    assert result["n_explained"] == 8 and result["faithfulness"]["n_inputs"] == 8
    assert set(result["summary"]) == {"n_important", "faithful_better_than_random", "randomisation_test_passed"}
    written = {entry["word"] for example in result["examples"] for entry in example["top"]} - {None}
    assert written and written <= {"consolidation", "lobe"}
    dumped = json.dumps(result)
    assert "Quux" not in dumped and "pneumothorax" not in dumped
    assert all(len(example["top"]) == min(20, example["n_words"]) for example in result["examples"])


def test_multi_column_scores_need_a_target(classifier):
    two = lambda batch: np.column_stack([-classifier(batch), classifier(batch)])  # noqa: E731
    texts, _ = _reports(2, seed=4)
    assert np.allclose(word_occlusion(two, texts, target=1)[0], word_occlusion(classifier, texts)[0])
    with pytest.raises(InvalidParameterError, match="target"):
        word_occlusion(two, texts)


def test_bad_input_is_refused_with_the_reason(classifier):
    with pytest.raises(InvalidParameterError, match="non-empty list of texts"):
        word_occlusion(classifier, "one text")
    with pytest.raises(DataValidationError, match="one map per text"):
        text_deletion_insertion(classifier, ["a b c", "d e f"], [np.ones(3)])
    with pytest.raises(DataValidationError, match="must hold 3 finite values"):
        text_deletion_insertion(classifier, ["a b c", "d e f"], [np.ones(3), np.ones(2)])
    with pytest.raises(DataValidationError, match="at least 2 are needed"):
        text_deletion_insertion(classifier, ["a", "d e f"], [np.ones(1), np.ones(3)])
    with pytest.raises(InvalidParameterError, match="n_random"):
        text_deletion_insertion(classifier, ["a b c", "d e f"], [np.ones(3), np.ones(3)], n_random=1)
