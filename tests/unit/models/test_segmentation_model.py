"""The registered U-Net: MONAI's network under medai's (in_features, out_features) contract, clear input errors."""

from __future__ import annotations

import pytest
import torch
from monai.networks.nets import UNet as MonaiUNet

from medai.core.errors import DataValidationError, InvalidParameterError
from medai.models import build_model


def test_3d_unet_output_shape_and_monai_weights():
    torch.manual_seed(0)
    model = build_model("unet", 1, 3, {"spatial_dims": 3, "channels": [4, 8], "strides": [2]})
    assert model(torch.randn(1, 1, 8, 8, 8)).shape == (1, 3, 8, 8, 8)
    monai = MonaiUNet(3, 1, 3, channels=(4, 8), strides=(2,), num_res_units=1)
    monai.load_state_dict(model.state_dict())  # same keys and shapes: weights move between the two


def test_input_size_must_be_a_multiple_of_the_strides():
    model = build_model("unet", 1, 2, {"channels": [4, 8, 16], "strides": [2, 2]})
    with pytest.raises(DataValidationError, match="multiple of 4"):
        model(torch.randn(1, 1, 18, 16))
    with pytest.raises(DataValidationError, match="expects input"):
        model(torch.randn(1, 16, 16))


@pytest.mark.parametrize(("params", "message"), [
    ({"spatial_dims": 1}, "'spatial_dims'"),
    ({"channels": [8, 16], "strides": [2, 2]}, "'strides'"),
    ({"norm": "group"}, "'norm'"),
])
def test_invalid_parameters(params, message):
    with pytest.raises(InvalidParameterError, match=message):
        build_model("unet", 1, 2, params)
