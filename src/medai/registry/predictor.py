"""The Predictor: one object that turns new records into predictions, used by `medai predict`, `medai evaluate`,
`medai explain` and (later) the service. It only ever runs a verified artefact.

Inputs are table rows (tabular models), image records (image models), ECG recordings or texts (text models);
the artefact's ``preprocessor.json`` ``type`` says which. Image predictors take uint8 images prepared by the stored
:class:`ImagePreprocessor` (any size and intensity range is resized and scaled the way training data was) and run in fp32 in chunks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from medai.core.config import TaskKind
from medai.core.errors import InvalidParameterError
from medai.core.records import Record
from medai.data.ecg_preprocessor import EcgPreprocessor
from medai.data.ehr_features import EhrFeaturizer
from medai.data.images import ImagePreprocessor
from medai.data.preprocess import TabularPreprocessor
from medai.evaluation.survival import format_horizon
from medai.models import build_model
from medai.registry.artifact import Artifact, load_artifact


class Predictor:
    """Predictions from a model artefact.

    Output columns: ``id``; binary ``score`` (calibrated probability of the positive class) and ``pred`` (class
    at the operating threshold); multi-class ``score_<class>`` and ``pred`` (most probable class); regression
    ``score`` = ``pred`` (prediction in the target's unit); survival ``score`` (log relative risk; higher =
    worse), ``surv_<t>`` (predicted survival probability at horizon t) and ``pred`` (``high``/``low`` risk group at
    the validation median); multi-label ``score_<finding>`` (probability), ``pred_<finding>`` (0/1 at the
    finding's threshold) and ``pred`` (the findings present, ``;``-separated, or ``none``).
    """

    #: Images scored per forward pass.
    chunk_size = 256

    def __init__(self, artifact: Artifact) -> None:
        self.artifact = artifact
        self.task = artifact.task
        self.kind = TaskKind(self.task["kind"])
        if self.kind is TaskKind.SEGMENTATION:
            raise InvalidParameterError(
                f"{artifact.path} is a segmentation model: `medai predict`, `evaluate` and `explain` do not take "
                "segmentation models yet. Its run folder holds the test-set predictions (predictions.csv) and a "
                "DICOM SEG of a test case (segmentation_example/seg.dcm)."
            )
        self.is_image = artifact.preprocessor.get("type") == "image"
        self.is_ecg = artifact.preprocessor.get("type") == "ecg"
        self.is_ehr = artifact.preprocessor.get("type") == "ehr"  # input: EhrFeaturizer sequences (n, bins, C)
        self.is_text = artifact.preprocessor.get("type") == "text"  # input: texts composed by TextPreprocessor
        if self.is_text:
            from medai.models.text import check_encoder  # also registers the text networks
            from medai.tasks.text import TextPreprocessor

            check_encoder(artifact.preprocessor.get("encoder") or {}, where=str(artifact.path))
        self.preprocessor = (ImagePreprocessor.from_dict(artifact.preprocessor) if self.is_image
                             else EcgPreprocessor.from_dict(artifact.preprocessor) if self.is_ecg
                             else EhrFeaturizer.from_dict(artifact.preprocessor) if self.is_ehr
                             else TextPreprocessor.from_dict(artifact.preprocessor) if self.is_text
                             else TabularPreprocessor.from_dict(artifact.preprocessor))
        config = artifact.config
        self.model = build_model(config.model.name, self.task["in_features"], self.task["out_features"],
                                 config.model.params)
        self.model.load_state_dict(artifact.weights)
        self.model.eval()
        #: The forward pass of predictions: the network itself, or a faster engine checked against it
        #: (:func:`medai.serve.runtime.use_runtime`); explanations always use ``self.model``.
        self.forward = self.model
        self._recalibrator = self._conformal = None
        if artifact.recalibration:
            self.install_recalibration(artifact.recalibration)
        if artifact.conformal:
            self.install_conformal(artifact.conformal)

    def install_recalibration(self, state: dict) -> None:
        """Apply a recalibration map (fitted on validation; ``recalibration.json``) to every probability."""
        from medai.evaluation.recalibration import Recalibrator

        self.artifact.recalibration = state
        self._recalibrator = Recalibrator.from_dict(state, source=str(self.artifact.path / "recalibration.json"))

    def install_conformal(self, state: dict) -> None:
        """Give every prediction its conformal set and ``abstain`` flag (``conformal.json``)."""
        from medai.evaluation.conformal import conformal_from_dict

        self.artifact.conformal = state
        self._conformal = conformal_from_dict(state, source=str(self.artifact.path / "conformal.json"))

    @classmethod
    def load(cls, path: str | Path) -> Predictor:
        return cls(load_artifact(path))

    @property
    def model_id(self) -> dict[str, str]:
        return {"name": self.artifact.config.name, "sha256": self.artifact.sha256}

    def encode(self, frame: pd.DataFrame, source: str = "input") -> np.ndarray:
        return self.preprocessor.transform(frame, source=source)

    def model_input(self, x: np.ndarray | torch.Tensor) -> torch.Tensor:
        """What the network takes: tabular encodings and ECG windows as they are; uint8 images normalised to
        float32."""
        x = torch.as_tensor(x)
        return self.preprocessor.normalise(x) if self.is_image or self.is_ecg else x

    @torch.no_grad()
    def raw_output(self, x: np.ndarray) -> np.ndarray:
        """Network output ``(n, out_features)`` with the training-time class reweighting undone."""
        if self.is_text:  # x: texts, tokenised by the model in chunks of similar length
            output = self.model.logits(x)
        elif self.is_image or self.is_ecg or self.is_ehr:
            chunks = [self.forward(self.model_input(x[i:i + self.chunk_size])).float().numpy()
                      for i in range(0, len(x), self.chunk_size)]
            output = np.concatenate(chunks).astype(np.float64)
        else:
            output = self.forward(torch.from_numpy(x)).numpy().astype(np.float64)
        return output - np.asarray(self.task.get("logit_offset", 0.0))

    def prepare_images(self, records: list[Record]) -> tuple[np.ndarray, list[list[str]]]:
        """uint8 ``(N, C, *image_size)`` for image records, and per record what preparation did (resizing,
        intensity scaling) — for the prediction's warnings."""
        if not self.is_image:
            raise TypeError("prepare_images is for image models; this model takes table rows.")
        prepared = [self.preprocessor.prepare(record) for record in records]
        return np.stack([p[0] for p in prepared]), [p[1] for p in prepared]

    def predict_records(self, records: list[Record]) -> tuple[pd.DataFrame, list[list[str]]]:
        """Predictions for image records (``id`` column = record id), and the preparation notes per record."""
        images, notes = self.prepare_images(records)
        frame = pd.DataFrame({"id": [record.id for record in records]})
        return pd.concat([frame, self.format_scores(self.scores(images))], axis=1), notes

    def predict_signals(self, records: list[Record]) -> pd.DataFrame:
        """Predictions for ECG recordings. A recording model gives one row per recording (its windows' mean
        probabilities); a beat model one row per detected beat (``record``, ``time_s``). A recording that fails
        the signal check gets ``pred`` = ``unusable`` and the reasons in ``note`` — never a rhythm."""
        if not self.is_ecg:
            raise TypeError("predict_signals is for ECG models.")
        frames = []
        for record in records:
            signal, check, notes = self.preprocessor.condition(record)
            if signal is None:
                frames.append(pd.DataFrame({"id": [record.id], "pred": ["unusable"],
                                            "note": ["signal unusable: " + "; ".join(check.reasons)]}))
                continue
            x, positions = self.preprocessor.model_windows(signal)
            note = "; ".join(notes)
            if self.preprocessor.unit == "beat":
                if len(x) == 0:
                    frames.append(pd.DataFrame({"id": [record.id], "pred": ["no beats"],
                                                "note": ["no heartbeat was detected"]}))
                    continue
                time_s = np.asarray(positions) / self.preprocessor.sampling_rate_hz
                head = pd.DataFrame({"id": [f"{record.id}:{t:.3f}" for t in time_s], "record": record.id,
                                     "time_s": time_s})
                frames.append(pd.concat([head, self.format_scores(self.scores(x)), pd.DataFrame(
                    {"note": [note] * len(x)})], axis=1))
                continue
            window_scores = self.scores(x, recalibrate=False)  # the map was fitted on recording means
            mean = window_scores.mean(axis=0, keepdims=window_scores.ndim == 2)
            mean = self.recalibrated(np.atleast_1d(mean) if window_scores.ndim == 1 else mean)
            frame = pd.concat([pd.DataFrame({"id": [record.id]}), self.format_scores(mean)], axis=1)
            frame["n_windows"] = len(x)
            frame["note"] = note
            frames.append(frame)
        return pd.concat(frames, ignore_index=True)

    def predict_texts(self, texts, ids) -> pd.DataFrame:
        """Predictions for report texts (already composed from the model's text columns; see
        :meth:`medai.tasks.text.TextPreprocessor.texts`), one row per text with its ``id``."""
        if not self.is_text:
            raise TypeError("predict_texts is for text models.")
        texts = np.asarray(texts, dtype=object)
        frame = pd.DataFrame({"id": np.asarray(ids, dtype=object)})
        if len(texts) == 0:
            return frame
        return pd.concat([frame, self.format_scores(self.scores(texts))], axis=1)

    def predict(self, frame: pd.DataFrame, source: str = "input") -> pd.DataFrame:
        """Predict for every row of ``frame`` (feature columns as in training; extra columns are ignored)."""
        frame = frame.reset_index(drop=True)
        id_column = self.task.get("id_column")
        ids = frame[id_column].astype(str) if id_column and id_column in frame.columns else (
            pd.Series(np.arange(1, len(frame) + 1)).astype(str))
        scores = self.scores(self.encode(frame, source))
        out = pd.DataFrame({"id": ids.to_numpy()})
        return pd.concat([out, self.format_scores(scores)], axis=1)

    def scores(self, x: np.ndarray, recalibrate: bool = True) -> np.ndarray:
        """Binary: P(positive) ``(n,)``; multi-class: probabilities ``(n, K)``; regression: prediction ``(n,)``;
        survival: log relative risk ``(n,)``."""
        output = self.raw_output(x)
        if self.kind is TaskKind.BINARY:
            return self._maybe_recalibrated(recalibrate, 1.0 / (1.0 + np.exp(-output[:, 0])))
        if self.kind is TaskKind.MULTILABEL:
            return self._maybe_recalibrated(recalibrate, 1.0 / (1.0 + np.exp(-output)))
        if self.kind is TaskKind.MULTICLASS:
            shifted = output - output.max(axis=1, keepdims=True)
            probabilities = np.exp(shifted)
            return self._maybe_recalibrated(recalibrate, probabilities / probabilities.sum(axis=1, keepdims=True))
        if self.kind is TaskKind.REGRESSION:
            return output[:, 0] * self.task["target_std"] + self.task["target_mean"]
        return output[:, 0]

    def _maybe_recalibrated(self, recalibrate: bool, probabilities: np.ndarray) -> np.ndarray:
        return self.recalibrated(probabilities) if recalibrate else probabilities

    def recalibrated(self, probabilities: np.ndarray) -> np.ndarray:
        """Probabilities through the artefact's recalibration map (unchanged without one)."""
        return probabilities if self._recalibrator is None else self._recalibrator.transform(probabilities)

    def survival_at(self, log_risk: np.ndarray, horizons: list[float]) -> np.ndarray:
        """S(t | x) = exp(-H0(t) exp(h(x))) with the Breslow H0 of the training split; ``(n, len(horizons))``."""
        baseline = self.artifact.survival_baseline
        times = np.asarray(baseline["time"], dtype=float)
        cumulative = np.asarray(baseline["cumulative_hazard"], dtype=float)
        index = np.searchsorted(times, np.asarray(horizons, dtype=float), side="right") - 1
        h0 = np.where(index >= 0, cumulative[np.clip(index, 0, None)], 0.0)
        return np.exp(-np.outer(np.exp(log_risk - baseline["risk_offset"]), h0))

    def format_scores(self, scores: np.ndarray) -> pd.DataFrame:
        """Score columns and ``pred`` for a batch of scores from :meth:`scores`; with a conformal state, also the
        prediction set and ``abstain`` (1 = the set is not a single answer: refer to a clinician) — regression:
        ``lower``/``upper`` of the conformal interval."""
        # Columns are gathered first and the frame built once: adding columns one by one costs more than the
        # prediction itself for the one-record requests of the service.
        columns = self._score_columns(scores)
        if self._conformal is not None and len(scores):
            columns.update(self._conformal_columns(scores))
        return pd.DataFrame(columns)

    def _conformal_columns(self, scores: np.ndarray) -> dict[str, Any]:
        names = self.task.get("class_names")
        if self.kind is TaskKind.REGRESSION:
            interval = self._conformal.predict_intervals(scores)
            return {"lower": interval[:, 0], "upper": interval[:, 1]}
        sets = self._conformal.predict_sets(scores)
        if self.kind is TaskKind.MULTILABEL:  # (n, K, [absent, present]): abstain when a finding is undecided
            undecided = sets.sum(axis=2) != 1
            return {"prediction_set": [";".join(f"{n}?" if u else (n if s[1] else f"no {n}")
                                                for n, u, s in zip(names, row_u, row_s))
                                       for row_u, row_s in zip(undecided, sets)],
                    "abstain": undecided.any(axis=1).astype(int)}
        labels = ["low", "high"] if self.kind is TaskKind.SURVIVAL else list(names)
        return {"prediction_set": ["{" + ", ".join(n for n, keep in zip(labels, row) if keep) + "}" for row in sets],
                "abstain": (sets.sum(axis=1) != 1).astype(int)}

    def _score_columns(self, scores: np.ndarray) -> dict[str, Any]:
        names = self.task.get("class_names")
        if self.kind is TaskKind.BINARY:
            threshold = self.artifact.thresholds["threshold"]
            return {"score": scores, "pred": np.where(scores >= threshold, names[1], names[0])}
        if self.kind in (TaskKind.MULTICLASS, TaskKind.MULTILABEL):
            columns: dict[str, Any] = {f"score_{c}": scores[:, j] for j, c in enumerate(names)}
            if self.kind is TaskKind.MULTICLASS:
                columns["pred"] = np.asarray(names, dtype=object)[scores.argmax(axis=1)]
                return columns
            present = scores >= np.asarray(self.artifact.thresholds["label_thresholds"])
            columns.update({f"pred_{name}": present[:, j].astype(int) for j, name in enumerate(names)})
            columns["pred"] = [";".join(n for n, p in zip(names, row) if p) or "none" for row in present]
            return columns
        if self.kind is TaskKind.REGRESSION:
            return {"score": scores, "pred": scores}
        horizons = self.task["horizons"]
        surv = self.survival_at(scores, horizons)
        columns = {"score": scores}
        columns.update({f"surv_{format_horizon(t)}": surv[:, j] for j, t in enumerate(horizons)})
        columns["pred"] = np.where(scores >= self.artifact.thresholds["risk_group_cutoff"], "high", "low")
        return columns
