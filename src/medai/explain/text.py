"""Word attributions for text classifiers by occlusion, checked with deletion / insertion curves against random
word orderings (Petsiuk et al. 2018, "RISE", applied to words as in DeYoung et al. 2020, "ERASER").

Occlusion (Zeiler & Fergus 2014; "leave-one-out" for text, Li et al. 2016): a word's attribution is the drop of
the explained class's score when that word alone is cut out of the report — positive = evidence for the class.
It only needs a scoring function of raw texts, so the same code explains the MiniLM classifier
(:meth:`medai.models.text.MiniLMClassifier.logits`) and the TF-IDF baseline (:meth:`TfidfLogistic.scores`).
Words are whitespace-separated strings; a report longer than ``max_words`` has its consecutive words grouped into
``max_words`` spans (each span is then one element), which bounds the cost to ``max_words + 1`` scorings per report.

Deletion removes the most important words first (a faithful map makes the score fall fast: low area), insertion
restores them into the empty text (rise fast: high area); the same curves for ``n_random`` random orderings set the
reference, and the verdict uses the rule of :func:`medai.explain.faithfulness.faithfulness_report` (better than
random by more than :data:`~medai.explain.faithfulness.BETTER_THAN_RANDOM_Z` SDs, on both curves). The result has
the same keys, so :func:`~medai.explain.faithfulness.deletion_insertion_chart` draws it.

Report text never leaves this module: :func:`explain_texts` returns word positions and attribution values, and a
word itself only when the caller's ``vocabulary`` (e.g. TF-IDF terms found in at least 10 training reports) holds
it, so a rare string — a name that escaped de-identification — cannot appear in a run's files.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Collection, Sequence
from typing import Any

import numpy as np

from medai.core.errors import DataValidationError, invalid_parameter
from medai.explain.faithfulness import AttributionOrder, _compare, _enum, _interpret_curves, _number, _score

__all__ = ["N_EXPLAINED_TEXTS", "check_text_explanations", "explain_texts", "remove_words", "text_deletion_insertion",
           "word_occlusion", "word_spans"]

_WORD = re.compile(r"\S+")
#: Most words (or word spans) per report: occlusion costs one scoring per element.
MAX_WORDS = 128
#: Test reports a training run explains and checks.
N_EXPLAINED_TEXTS = 8


def word_spans(text: str, max_words: int | None = MAX_WORDS) -> list[tuple[int, int]]:
    """Character spans ``[(start, end)]`` of the whitespace-separated words of ``text``; with more than
    ``max_words`` words, consecutive words are grouped into ``max_words`` spans of near-equal word counts."""
    spans = [m.span() for m in _WORD.finditer(str(text))]
    if max_words is None or len(spans) <= max_words:
        return spans
    groups = np.array_split(np.arange(len(spans)), max_words)
    return [(spans[g[0]][0], spans[g[-1]][1]) for g in groups]


def remove_words(text: str, spans: Sequence[tuple[int, int]], removed) -> str:
    """``text`` with the spans flagged in ``removed`` (bool, one per span) cut out; the whitespace between words
    is kept, so section headers and line breaks stay where they were."""
    text = str(text)
    parts, position = [], 0
    for (start, end), cut in zip(spans, removed, strict=True):
        if cut:
            parts.append(text[position:start])
            position = end
    parts.append(text[position:])
    return "".join(parts)


def word_occlusion(score_fn: Callable[[list[str]], np.ndarray], texts: Sequence[str],
                   target: int | Sequence[int] | None = None, *, max_words: int | None = MAX_WORDS,
                   batch_size: int = 64) -> list[np.ndarray]:
    """Occlusion attribution of every word (or span, see :func:`word_spans`) of each text.

    Args:
        score_fn: ``list of b texts -> (b,)`` scores of the explained class, or ``(b, K)`` (column ``target``).
            Prefer logits: a probability saturated at 1.000 hides every word's effect.
        texts: the explained texts.
        target: column of a ``(b, K)`` score: one int or one per text; None for ``(b,)`` or ``(b, 1)`` scores.
        max_words: most elements per text (None: every word).
        batch_size: most texts per call of ``score_fn``.

    Returns:
        Per text a ``(n_words,)`` float64 array: score(text) − score(text without that word); positive = the word
        is evidence for the class. A text without words gives an empty array.
    """
    owner = "word_occlusion"
    texts = _check_texts(texts, owner)
    _check_int(batch_size, "batch_size", owner, 1)
    targets = _targets(target, len(texts), owner)
    spans = [word_spans(t, max_words) for t in texts]
    variants = []
    for i, (text, s) in enumerate(zip(texts, spans, strict=True)):
        variants.append((i, text))
        for k in range(len(s)):
            variants.append((i, remove_words(text, s, np.arange(len(s)) == k)))
    scores = _scores(score_fn, variants, targets, batch_size, owner)
    result, position = [], 0
    for s in spans:
        full = scores[position]
        result.append(full - np.asarray(scores[position + 1:position + 1 + len(s)], dtype=np.float64))
        position += 1 + len(s)
    return result


def text_deletion_insertion(score_fn: Callable[[list[str]], np.ndarray], texts: Sequence[str],
                            attributions: Sequence[np.ndarray], target: int | Sequence[int] | None = None, *,
                            steps: int = 10, n_random: int = 8, seed: int = 0,
                            order: AttributionOrder | str = AttributionOrder.SIGNED,
                            max_words: int | None = MAX_WORDS, batch_size: int = 64) -> dict[str, Any]:
    """Deletion and insertion curves of word attributions against random word orderings.

    Each text's words are removed (deletion: from the full text) or restored (insertion: from the empty text) in
    ``steps`` equal shares of its own word count, most important first. Curves are over the *share* of words, so
    texts of different lengths average on one axis.

    Args:
        score_fn, target, max_words, batch_size: as in :func:`word_occlusion`.
        texts: the explained texts (each with at least 2 words).
        attributions: per text a ``(n_words,)`` map over the spans of :func:`word_spans` with ``max_words``.
        steps: removal steps (each removes ``1/steps`` of a text's words, rounded).
        n_random: random orderings of the reference (at least 2: their SD sets the margin).
        seed: seed of the random orderings and of tie-breaking between equal attributions.
        order: ``signed`` (most positive first) or ``absolute``.

    Returns:
        The keys of :func:`medai.explain.faithfulness.faithfulness_report`: ``n_inputs``, ``n_elements`` (the
        mean word count), ``steps``, ``n_random``, ``seed``, ``baseline`` (``"removed"``), ``order``,
        ``fractions``, ``deletion`` and ``insertion`` (``auc``, ``curve``, ``random_auc_mean``, ``random_auc_sd``,
        ``random_curve``, ``random_curve_sd``, ``difference``, ``z``, ``win_rate``, ``better_than_random``, ...),
        ``better_than_random`` and ``interpretation``.

    Raises:
        InvalidParameterError: an invalid parameter.
        DataValidationError: maps that do not match the texts' words, a text of fewer than 2 words, or scores of
            the wrong shape.
    """
    owner = "text_deletion_insertion"
    texts = _check_texts(texts, owner)
    _check_int(steps, "steps", owner, 1)
    _check_int(n_random, "n_random", owner, 2)
    _check_int(batch_size, "batch_size", owner, 1)
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise invalid_parameter("seed", owner, "an integer", seed)
    ranking = _enum(AttributionOrder, order, "order", owner)
    targets = _targets(target, len(texts), owner)
    if len(attributions) != len(texts):
        raise DataValidationError(f"{owner}: {len(attributions)} attribution maps for {len(texts)} texts; give one "
                                  "map per text.")
    rng = np.random.default_rng(seed)
    spans, orders = [], []
    for i, (text, values) in enumerate(zip(texts, attributions, strict=True)):
        s = word_spans(text, max_words)
        values = np.asarray(values, dtype=np.float64)
        if values.shape != (len(s),) or not np.isfinite(values).all():
            raise DataValidationError(f"{owner}: the map of text {i} must hold {len(s)} finite values (one per word "
                                      f"span); got shape {values.shape}.")
        if len(s) < 2:
            raise DataValidationError(f"{owner}: text {i} has {len(s)} word(s); at least 2 are needed.")
        values = np.abs(values) if ranking is AttributionOrder.ABSOLUTE else values
        mine = np.lexsort((rng.random(len(s)), -values))
        orders.append([mine] + [rng.permutation(len(s)) for _ in range(n_random)])
        spans.append(s)
    shares = np.arange(steps + 1) / steps
    variants, where = [], []
    for i, (text, s) in enumerate(zip(texts, spans, strict=True)):
        counts = np.round(shares * len(s)).astype(int)
        for o, ordering in enumerate(orders[i]):
            for mode in (0, 1):
                for step, count in enumerate(counts):
                    chosen = np.zeros(len(s), dtype=bool)
                    chosen[ordering[:count]] = True
                    # deletion cuts the chosen words; insertion keeps only them
                    variants.append((i, remove_words(text, s, chosen if mode == 0 else ~chosen)))
                    where.append((mode, i, o, step))
    scores = _scores(score_fn, variants, targets, batch_size, owner)
    curves = np.empty((2, len(texts), 1 + n_random, steps + 1))
    for (mode, i, o, step), value in zip(where, scores, strict=True):
        curves[mode, i, o, step] = value
    areas = np.trapezoid(curves, shares, axis=-1)
    result: dict[str, Any] = {
        "n_inputs": len(texts), "n_elements": _number(np.mean([len(s) for s in spans])), "steps": int(steps),
        "n_random": int(n_random), "seed": int(seed), "baseline": "removed", "order": ranking.value,
        "fractions": [_number(f) for f in shares],
    }
    for mode, name, sign in ((0, "deletion", -1.0), (1, "insertion", 1.0)):
        result[name] = _compare(areas[mode], curves[mode], sign)
    result["better_than_random"] = bool(result["deletion"]["better_than_random"]
                                        and result["insertion"]["better_than_random"])
    result["interpretation"] = _interpret_curves(result).replace("elements", "words")
    return result


def explain_texts(score_fn: Callable[[list[str]], np.ndarray], texts: Sequence[str],
                  target: int | Sequence[int] | None = None, *, vocabulary: Collection[str] | None = None,
                  n_top: int = 5, steps: int = 10, n_random: int = 8, seed: int = 0,
                  max_words: int | None = MAX_WORDS, batch_size: int = 64) -> dict[str, Any]:
    """Occlusion attributions of a few texts, their deletion/insertion check, and a JSON-safe summary holding no
    report text.

    Args:
        score_fn, texts, target, max_words, batch_size: as in :func:`word_occlusion`.
        vocabulary: lower-case words that may be written out (e.g. TF-IDF unigrams found in at least 10 training
            reports); a top word is written only when, lower-cased and stripped of punctuation, it is in it.
            None: no word is written (positions and values only).
        n_top: most important words listed per text.
        steps, n_random, seed: as in :func:`text_deletion_insertion`.

    Returns:
        ``method`` (``"word_occlusion"``), ``n_explained``, ``examples`` (per text: ``n_words`` and ``top``: up to
        ``n_top`` entries ``{"position", "attribution", "word"}`` — ``word`` None unless in ``vocabulary``),
        ``faithfulness`` (:func:`text_deletion_insertion`; None when fewer than 2 texts have 2 words or more) and
        ``summary`` (``n_important`` None: no data-set importance for text; ``faithful_better_than_random``;
        ``randomisation_test_passed`` None: occlusion needs no gradients and the check is not run on it).
    """
    owner = "explain_texts"
    texts = _check_texts(texts, owner)
    _check_int(n_top, "n_top", owner, 1)
    allowed = frozenset(str(w).lower() for w in vocabulary) if vocabulary is not None else frozenset()
    maps = word_occlusion(score_fn, texts, target, max_words=max_words, batch_size=batch_size)
    examples = []
    for text, values in zip(texts, maps, strict=True):
        spans = word_spans(text, max_words)
        grouped = max_words is not None and len(_WORD.findall(text)) > max_words
        top = []
        for k in np.argsort(-values, kind="stable")[:n_top]:
            word = None
            if not grouped:  # a span of several words is never written out
                candidate = text[spans[k][0]:spans[k][1]].strip(string.punctuation).lower()
                word = candidate if candidate in allowed else None
            top.append({"position": int(k), "attribution": _number(values[k]), "word": word})
        examples.append({"n_words": len(spans), "top": top})
    usable = [i for i, m in enumerate(maps) if len(m) >= 2]
    faithfulness = None
    if len(usable) >= 2:
        targets = _targets(target, len(texts), owner)
        faithfulness = text_deletion_insertion(
            score_fn, [texts[i] for i in usable], [maps[i] for i in usable],
            None if target is None else [targets[i] for i in usable], steps=steps, n_random=n_random, seed=seed,
            max_words=max_words, batch_size=batch_size)
    return {"method": "word_occlusion", "n_explained": len(texts), "examples": examples,
            "faithfulness": faithfulness,
            "summary": {"n_important": None,
                        "faithful_better_than_random": None if faithfulness is None
                        else faithfulness["better_than_random"],
                        "randomisation_test_passed": None}}


def check_text_explanations(predictor, texts: Sequence[str], kind, *, seed: int,
                            vocabulary: Collection[str] | None = None,
                            n_texts: int = N_EXPLAINED_TEXTS) -> dict[str, Any]:
    """``explanations.json`` of a text run: :func:`explain_texts` on up to ``n_texts`` test reports drawn at random
    (``seed``), scored by the network's raw output (logits, class reweighting undone:
    :meth:`~medai.registry.predictor.Predictor.raw_output`). A single-logit binary model is explained for the
    positive class; multi-class and multi-label ones for each report's highest-scoring class.

    Args:
        predictor: the run's text :class:`~medai.registry.predictor.Predictor`.
        texts: the test reports.
        kind: the task's :class:`~medai.core.config.TaskKind`.
        seed: seed of the draw and of the random orderings.
        vocabulary: words that may be written out (see :func:`explain_texts`).
        n_texts: most reports explained.
    """
    texts = _check_texts(texts, "check_text_explanations")
    _check_int(n_texts, "n_texts", "check_text_explanations", 1)
    rng = np.random.default_rng(seed)
    chosen = [texts[i] for i in np.sort(rng.choice(len(texts), size=min(n_texts, len(texts)), replace=False))]
    single = predictor.task["out_features"] == 1
    target = None if single else [int(k) for k in predictor.raw_output(chosen).argmax(axis=1)]
    result = explain_texts(predictor.raw_output, chosen, target, vocabulary=vocabulary, seed=seed)
    result["explained_class"] = "positive class" if single else "highest-scoring class of each report"
    return result


# ------------------------------------------------------------------------------------------------ helpers


def _scores(score_fn, variants: list[tuple[int, str]], targets: list[int | None], batch_size: int,
            owner: str) -> np.ndarray:
    """The score of each ``(text index, text)``, each distinct (text, target) scored once (the full and the empty
    text recur in every ordering)."""
    unique: dict[tuple[str, int | None], int] = {}
    for i, text in variants:
        unique.setdefault((text, targets[i]), len(unique))
    keys = list(unique)
    values = np.empty(len(keys))
    for start in range(0, len(keys), batch_size):
        chunk = keys[start:start + batch_size]
        values[start:start + len(chunk)] = _score(lambda batch: score_fn([t for t, _ in chunk]),
                                                  np.empty((len(chunk), 1)), [t for _, t in chunk], owner)
    return np.array([values[unique[(text, targets[i])]] for i, text in variants])


def _check_texts(texts, owner: str) -> list[str]:
    if isinstance(texts, str) or not isinstance(texts, Sequence | np.ndarray) or len(texts) == 0:
        raise invalid_parameter("texts", owner, "a non-empty list of texts", type(texts).__name__)
    if not all(isinstance(t, str) for t in texts):
        raise DataValidationError(f"{owner}: every text must be a string; got "
                                  f"{sorted({type(t).__name__ for t in texts})}.")
    return [str(t) for t in texts]


def _check_int(value, name: str, owner: str, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
        raise invalid_parameter(name, owner, f"an integer >= {low}", value)


def _targets(target, n: int, owner: str) -> list[int | None]:
    if target is None:
        return [None] * n
    values = np.asarray(target)
    if values.ndim > 1 or (values.ndim == 1 and values.shape[0] != n) or not np.issubdtype(values.dtype, np.integer) \
            or (values < 0).any():
        raise invalid_parameter("target", owner, f"None, one class index or {n} class indices (one per text)",
                                target if values.size <= 10 else f"array of shape {values.shape}")
    return [int(v) for v in np.broadcast_to(values, (n,))]
