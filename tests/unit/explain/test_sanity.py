"""Model-parameter randomisation test (Adebayo et al. 2018) on a model that learned a known task."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from monai.networks.nets import ViT

from medai.core.errors import InvalidParameterError, UnknownNameError
from medai.explain import model_randomisation_check
from medai.explain.sanity import NOT_SENSITIVE_ABOVE, RandomisationMode, _interpret
from medai.explain.saliency import SaliencyMethod


@pytest.mark.parametrize("method", ["grad_cam", "integrated_gradients"])
def test_cascading_randomisation_destroys_the_maps_of_a_trained_model(square_task, method):
    model = square_task.model
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng_before = torch.random.get_rng_state()
    result = model_randomisation_check(model, square_task.images, target=1, method=method, seed=0)
    json.dumps(result)  # goes into the report as is
    assert result["method"] == method and result["mode"] == "cascading" and result["n_images"] == 8
    assert result["n_layers"] == 4  # three convolutions and the linear head
    assert result["reference"]["spearman_abs"] == 1.0 and result["reference"]["ssim"] == 1.0
    steps = result["steps"]
    assert [s["layer"] for s in steps] == ["9", "5", "2", "0"]  # from the output layer downwards
    assert [s["n_layers_randomised"] for s in steps] == [1, 2, 3, 4]
    assert result["final"]["spearman_abs"] == steps[-1]["spearman_abs"]
    final = result["final"]
    assert final["spearman_abs"] < 0.6 and final["ssim"] < 0.6  # far from the identity's 1.0
    assert f"{final['spearman_abs']:.2f}" in result["interpretation"]
    assert result["layer"] == ("5" if method == "grad_cam" else None)
    # the caller's model and random state are untouched
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert torch.equal(torch.random.get_rng_state(), rng_before)


def test_layers_are_grouped_and_independent_mode_randomises_one_group(square_task):
    grouped = model_randomisation_check(square_task.model, square_task.images[:2], 1, "integrated_gradients",
                                        max_steps=2, n_steps=8)
    assert [s["layers"] for s in grouped["steps"]] == [["9", "5"], ["2", "0"]]
    assert [s["layer"] for s in grouped["steps"]] == ["5", "0"]
    independent = model_randomisation_check(square_task.model, square_task.images[:2], 1, "integrated_gradients",
                                            layers="independent", n_steps=8)
    assert [s["n_layers_randomised"] for s in independent["steps"]] == [1, 1, 1, 1]
    # every step changes only one group, so the fully randomised model is computed on its own
    assert independent["final"]["spearman_abs"] < 0.6
    with pytest.raises(InvalidParameterError, match=r"'layers' parameter .*\['cascading', 'independent'\]"):
        model_randomisation_check(square_task.model, square_task.images, 1, "grad_cam", layers="top-down")
    with pytest.raises(UnknownNameError, match="Did you mean 'integrated_gradients'"):
        model_randomisation_check(square_task.model, square_task.images, 1, "integrated_gradient")


def test_grad_cam_check_on_a_vit_says_grad_cam_is_not_available():
    vit = ViT(in_channels=1, img_size=(16, 16), patch_size=4, hidden_size=16, mlp_dim=32, num_layers=1, num_heads=2,
              classification=True, num_classes=2, spatial_dims=2)
    with pytest.raises(InvalidParameterError, match="integrated gradients alone"):
        model_randomisation_check(vit, torch.randn(1, 1, 16, 16), 1, "grad_cam")


def _measures(rho, ssim, undefined=0, constant=0):
    return {"spearman_abs": rho, "spearman": rho, "ssim": ssim, "n_undefined": undefined,
            "n_became_constant": constant}


def test_interpretation_is_computed_from_the_numbers():
    reference = _measures(1.0, 1.0)
    steps = [{"layer": "head", "n_layers_randomised": 1, **_measures(0.9, 0.8)},
             {"layer": "conv", "n_layers_randomised": 2, **_measures(0.1, 0.1)}]

    def say(final, ref=reference, method=SaliencyMethod.GRAD_CAM):
        return _interpret(method, RandomisationMode.CASCADING, ref, steps, final, 4)

    stays = say(_measures(0.8, 0.7), method=SaliencyMethod.INTEGRATED_GRADIENTS)
    assert "not sensitive to the model's weights" in stays and "do not trust" in stays and "0.80" in stays
    assert stays.startswith("Integrated gradients maps")
    passes = say(_measures(0.1, 0.1))
    assert "passes this sanity check" in passes and "do not trust" not in passes
    assert (f"falls to {NOT_SENSITIVE_ABOVE} or below after randomising 2 layer(s) from the top, down to 'conv'"
            in passes)
    assert "with caution" in say(_measures(0.3, 0.2))
    # randomised Grad-CAM maps that went all-zero: a change, even though SSIM of two mostly-empty maps is high
    vanished = say(_measures(None, 0.9, undefined=4, constant=4))
    assert "lose all structure" in vanished and "passes" in vanished
    assert "could not be assessed" in say(_measures(None, 1.0, undefined=4, constant=0))
    partial = say(_measures(0.1, 0.5, undefined=1, constant=1))
    assert "1 of 4 images are left out" in partial
    assert "not deterministic" in say(_measures(0.1, 0.1), ref=_measures(0.9, 0.9))


def test_similarity_counts_maps_that_lost_all_structure():
    from medai.explain.sanity import _similarity

    rng = np.random.default_rng(0)
    original = rng.random((3, 12, 12))
    other = original.copy()
    other[1] = 0.0  # randomisation left nothing
    other[2] = 1.0 - original[2]  # reversed ranks
    result = _similarity(original, other)
    assert result["n_undefined"] == 1 and result["n_became_constant"] == 1
    assert result["spearman_abs"] == pytest.approx(0.0, abs=1e-4)  # mean of 1 and -1; the constant one left out
    same = _similarity(original, original)
    assert same["spearman_abs"] == 1.0 and same["ssim"] == 1.0
