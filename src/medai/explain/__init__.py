"""Explanations of image classifiers: saliency maps, overlays for reports and the CLI, and a sanity check.

- :mod:`~medai.explain.saliency`: Grad-CAM (MONAI) and integrated gradients (captum) maps ``(N, *spatial)``.
- :mod:`~medai.explain.overlay`: maps drawn over images (RGB uint8, PNG files, base64, report panels).
- :mod:`~medai.explain.sanity`: the model-parameter randomisation test (Adebayo et al. 2018).

Typical use on a few test images ``x`` ``(N, C, H, W)`` of a single-logit binary model::

    maps = explain_images(model, x, target=1)          # explain the positive class
    heat = {"Grad-CAM": maps["grad_cam"][0], "Integrated gradients": displayable(maps["integrated_gradients"])[0]}
    png = overlay_panel(image_uint8, heat, title="example 3")
    check = model_randomisation_check(model, x, target=1, method="integrated_gradients")
"""

from medai.explain.overlay import Colormap, max_saliency_slice, overlay, overlay_panel, png_base64, save_png
from medai.explain.sanity import RandomisationMode, model_randomisation_check
from medai.explain.saliency import (
    SaliencyMethod,
    displayable,
    explain_images,
    find_target_layer,
    grad_cam,
    integrated_gradients,
)

__all__ = [
    "Colormap",
    "RandomisationMode",
    "SaliencyMethod",
    "displayable",
    "explain_images",
    "find_target_layer",
    "grad_cam",
    "integrated_gradients",
    "max_saliency_slice",
    "model_randomisation_check",
    "overlay",
    "overlay_panel",
    "png_base64",
    "save_png",
]
