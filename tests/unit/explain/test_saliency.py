"""Grad-CAM and integrated gradients: localisation on a known task, targets, shapes, model state, errors."""

from __future__ import annotations

import copy
import json
import warnings

import numpy as np
import pytest
import torch
from monai.networks.nets import DenseNet121, ResNet, ViT
from torch import nn

from medai.core.errors import DataValidationError, InvalidParameterError, UnknownNameError
from medai.explain import displayable, explain_images, find_target_layer, grad_cam, integrated_gradients


def tiny_resnet(spatial_dims: int = 2, num_classes: int = 3) -> nn.Module:
    torch.manual_seed(0)
    return ResNet(block="basic", layers=[1, 1, 1, 1], block_inplanes=[4, 8, 8, 8], spatial_dims=spatial_dims,
                  n_input_channels=1, num_classes=num_classes, conv1_t_stride=2)


def test_the_task_was_learned(square_task):
    assert square_task.accuracy >= 0.9  # otherwise the localisation tests below would test nothing


def test_grad_cam_mass_falls_on_the_square(square_task, mass):
    maps = grad_cam(square_task.model, square_task.images, target=1)
    assert maps.shape == (8, 16, 16) and maps.dtype == np.float32
    assert maps.min() >= 0 and np.allclose(maps.max(axis=(1, 2)), 1.0)
    area = square_task.masks.mean()  # what a map unrelated to the square scores
    share = mass(maps, square_task.masks)
    assert share.mean() > 0.45 and share.min() > 2 * area
    random_maps = np.random.default_rng(0).random(maps.shape)
    assert mass(random_maps, square_task.masks).mean() < 0.25  # the criterion rejects a random map


def test_integrated_gradients_mass_falls_on_the_square(square_task, mass):
    attributions = integrated_gradients(square_task.model, square_task.images, target=1)
    assert attributions.shape == (8, 16, 16) and attributions.dtype == np.float32
    share = mass(displayable(attributions), square_task.masks)
    assert share.min() > 0.8
    # the square raises the class-1 score: its attributions are positive
    assert (attributions * square_task.masks).sum(axis=(1, 2)).min() > 0


def test_single_logit_model_class_0_explains_the_negated_logit(square_task, mass):
    model, x = square_task.model, square_task.images
    ig_pos = integrated_gradients(model, x, target=1)
    ig_neg = integrated_gradients(model, x, target=0)
    np.testing.assert_allclose(ig_neg, -ig_pos, atol=1e-6)
    cam_pos = grad_cam(model, x, target=1)
    cam_neg = grad_cam(model, x, target=0)
    # evidence against the positive class lies off the square
    assert mass(cam_neg + 1e-12, square_task.masks).mean() < 0.5 * mass(cam_pos, square_task.masks).mean()
    mixed = grad_cam(model, x, target=[1, 0] * 4)
    np.testing.assert_allclose(mixed[0::2], cam_pos[0::2], atol=1e-6)
    np.testing.assert_allclose(mixed[1::2], cam_neg[1::2], atol=1e-6)
    with pytest.raises(InvalidParameterError, match=r"class indices in \[0, 1\].*single-logit"):
        grad_cam(model, x, target=2)


def test_integrated_gradients_completeness_is_reported(square_task):
    maps, check = integrated_gradients(square_task.model, square_task.images, target=1, n_steps=32,
                                       return_completeness=True)
    json.dumps(check)
    assert len(check["delta"]) == 8 and check["n_steps"] == 32
    np.testing.assert_allclose(check["sum_attributions"], maps.reshape(8, -1).sum(1), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(np.subtract(check["sum_attributions"], check["output_difference"]), check["delta"],
                               atol=1e-4)
    assert check["max_relative_error"] < 0.05
    # a constant baseline equal to the image gives no attributions at all
    same = integrated_gradients(square_task.model, square_task.images[:1], 1, baseline=square_task.images[:1])
    assert np.abs(same).max() == 0


def test_multiclass_targets_per_image_and_3d_shapes():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv3d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv3d(4, 4, 3, padding=1, stride=2),
                          nn.ReLU(), nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(4, 3))
    x = torch.randn(2, 1, 8, 12, 12)
    cams = grad_cam(model, x, target=[2, 0])
    assert cams.shape == (2, 8, 12, 12) and 0 <= cams.min() and cams.max() <= 1
    np.testing.assert_allclose(cams[1], grad_cam(model, x[1:], target=0)[0], atol=1e-6)
    attributions = integrated_gradients(model, x, target=torch.tensor([2, 0]), n_steps=4)
    assert attributions.shape == (2, 8, 12, 12)
    with pytest.raises(InvalidParameterError, match=r"one integer class index or 2 of them"):
        grad_cam(model, x, target=[0, 1, 2])


def test_find_target_layer_on_monai_networks():
    cnn = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU(), nn.Flatten(), nn.LazyLinear(2))
    assert find_target_layer(cnn) == "0"
    resnet = tiny_resnet()
    assert find_target_layer(resnet) == "layer4"  # the block output, residual connection included
    assert grad_cam(resnet, torch.randn(2, 1, 64, 64), target=1).shape == (2, 64, 64)

    torch.manual_seed(0)
    densenet = DenseNet121(spatial_dims=2, in_channels=1, out_channels=2)
    assert find_target_layer(densenet) == "features"  # all concatenated channels, not the last dense layer's 32
    with pytest.warns(UserWarning, match="1x1 feature map"):  # 32 px through five stride-2 stages
        maps = grad_cam(densenet, torch.randn(2, 1, 32, 32), target=[0, 1])
    assert maps.shape == (2, 32, 32)
    # its in-place ReLU after 'features' had to be switched off during the computation, and is back on
    assert densenet.class_layers.relu.inplace is True


def test_find_target_layer_refuses_models_without_convolutional_maps():
    vit = ViT(in_channels=1, img_size=(16, 16), patch_size=4, hidden_size=16, mlp_dim=32, num_layers=1, num_heads=2,
              classification=True, num_classes=2, spatial_dims=2)
    with pytest.raises(InvalidParameterError, match="attention .* integrated gradients alone"):
        find_target_layer(vit)
    assert integrated_gradients(vit, torch.randn(1, 1, 16, 16), 1, n_steps=4).shape == (1, 16, 16)
    with pytest.raises(InvalidParameterError, match="no Conv2d/Conv3d layer.*integrated gradients alone"):
        find_target_layer(nn.Sequential(nn.Flatten(), nn.Linear(4, 1)))


def test_model_state_gradients_and_hooks_are_restored(square_task):
    model = copy.deepcopy(square_task.model)
    model.train()
    model[0].eval()  # a mixed state must come back as it was
    model[0].weight.grad = torch.ones_like(model[0].weight)
    model[9].bias.requires_grad_(False)
    x = square_task.images[:2]
    with torch.no_grad():  # a caller inside no_grad still gets maps
        grad_cam(model, x, 1)
        integrated_gradients(model, x, 1, n_steps=4)
    assert model.training and not model[0].training and model[5].training
    assert torch.equal(model[0].weight.grad, torch.ones_like(model[0].weight))
    assert all(p.grad is None for name, p in model.named_parameters() if name != "0.weight")
    assert not model[9].bias.requires_grad and model[9].weight.requires_grad
    assert all(not m._forward_hooks and not m._backward_hooks for m in model.modules())


def test_results_are_float32_even_under_autocast(square_task):
    expected = integrated_gradients(square_task.model, square_task.images[:2], 1, n_steps=8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = integrated_gradients(square_task.model, square_task.images[:2], 1, n_steps=8)
    np.testing.assert_array_equal(got, expected)
    with pytest.raises(InvalidParameterError, match="float32.*model.float"):
        grad_cam(copy.deepcopy(square_task.model).to(torch.bfloat16), square_task.images, 1)


def test_bad_inputs_say_what_to_do(square_task):
    model = square_task.model
    with pytest.raises(InvalidParameterError, match="torch.as_tensor"):
        grad_cam(model, square_task.images.numpy(), 1)
    with pytest.raises(DataValidationError, match=r"images\[None\]"):
        grad_cam(model, square_task.images[0], 1)
    with pytest.raises(DataValidationError, match="floating point"):
        integrated_gradients(model, square_task.images.to(torch.uint8), 1)
    with pytest.raises(UnknownNameError, match="Unknown layer 'conv9'"):
        grad_cam(model, square_task.images, 1, layer="conv9")
    with pytest.raises(InvalidParameterError, match="n_steps"):
        integrated_gradients(model, square_task.images, 1, n_steps=1)
    with pytest.raises(UnknownNameError, match="Did you mean 'grad_cam'"):
        explain_images(model, square_task.images, 1, methods=("gradcam",))


def test_a_layer_that_runs_twice_is_refused():
    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3, padding=1)
            self.act = nn.ReLU()
            self.head = nn.Linear(2, 2)

        def forward(self, x):
            x = self.act(self.act(self.conv(x)) - 0.1)
            return self.head(x.mean(dim=(2, 3)))

    with pytest.raises(InvalidParameterError, match="runs 2 times per forward pass"):
        grad_cam(Twice(), torch.randn(1, 1, 8, 8), 1, layer="act")


def test_a_layer_without_a_spatial_map_is_refused(square_task):
    with pytest.raises(InvalidParameterError, match=r"'8' of Sequential outputs shape \(N, 16\), not a feature map"):
        grad_cam(square_task.model, square_task.images, 1, layer="8")  # the Flatten after pooling


def test_displayable_clips_at_the_percentile():
    maps = np.zeros((2, 40, 40))
    maps[0] = np.linspace(-1, 1, 1600).reshape(40, 40)
    maps[0, 0, 0] = -50.0  # one extreme pixel
    shown = displayable(maps, percentile=99.0)
    assert shown.dtype == np.float32 and shown.min() >= 0 and shown.max() == 1.0
    assert shown[0, 0, 0] == 1.0 and shown[0, 39, 39] == 1.0  # the top 1 % is clipped, not the outlier's scale
    np.testing.assert_allclose(shown[0, 20, 0], abs(maps[0, 20, 0]) / np.percentile(np.abs(maps[0]), 99), rtol=1e-6)
    assert np.all(shown[1] == 0)  # an all-zero map stays zero
    with pytest.raises(DataValidationError, match="NaN"):
        displayable(np.full((1, 2, 2), np.nan))


def test_explain_images_runs_both_methods(square_task):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        maps = explain_images(square_task.model, square_task.images[:2], 1, n_steps=8)
    assert set(maps) == {"grad_cam", "integrated_gradients"}
    assert all(m.shape == (2, 16, 16) for m in maps.values())
