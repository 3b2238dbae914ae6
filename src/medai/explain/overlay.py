"""Drawing saliency maps over images: RGB overlays, PNG files and base64 for HTML, and a report panel.

Maps are expected in [0, 1] (Grad-CAM maps as returned, integrated gradients through
:func:`medai.explain.saliency.displayable`). Nothing here rescales a map silently: a map outside [0, 1] raises.
"""

from __future__ import annotations

import base64
import io
import math
import os
import tempfile
from enum import StrEnum
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from medai.core.errors import DataValidationError, invalid_parameter

__all__ = ["Colormap", "max_saliency_slice", "overlay", "overlay_panel", "png_base64", "save_png"]

#: Smallest side, in pixels, an overlay is upscaled to (by an integer factor) so 28 px images stay legible.
MIN_DISPLAY_PX = 224


class Colormap(StrEnum):
    """Colour maps for saliency: ``jet`` (the Grad-CAM convention) or ``inferno`` (perceptually uniform,
    readable in greyscale and by colour-blind readers)."""

    JET = "jet"
    INFERNO = "inferno"


def _to_rgb_uint8(image: np.ndarray, owner: str) -> np.ndarray:
    """``(C, H, W)`` grey (C=1) or RGB (C=3) → ``(H, W, 3)`` uint8; non-uint8 data rescaled by its min/max."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[0] not in (1, 3):
        raise DataValidationError(
            f"{owner}: image must be (C, H, W) with C = 1 (grey) or 3 (RGB); got shape {image.shape}. "
            "For a volume (C, D, H, W) pick a slice with max_saliency_slice first."
        )
    if image.dtype != np.uint8:
        values = image.astype(np.float64)
        if not np.isfinite(values).all():
            raise DataValidationError(f"{owner}: image contains NaN or infinite values.")
        low, high = values.min(), values.max()
        scaled = (values - low) / (high - low) * 255.0 if high > low else np.zeros_like(values)
        image = np.round(scaled).astype(np.uint8)
    rgb = np.repeat(image, 3, axis=0) if image.shape[0] == 1 else image
    return np.ascontiguousarray(rgb.transpose(1, 2, 0))


def _check_map(saliency: np.ndarray, shape: tuple[int, ...], owner: str) -> np.ndarray:
    saliency = np.asarray(saliency, dtype=np.float64)
    if saliency.shape != shape:
        raise DataValidationError(
            f"{owner}: saliency must have the image's spatial shape {shape}; got {saliency.shape}."
        )
    if not np.isfinite(saliency).all() or saliency.min() < -1e-6 or saliency.max() > 1 + 1e-6:
        raise DataValidationError(
            f"{owner}: saliency must lie in [0, 1]; got values in [{np.nanmin(saliency):.3g}, "
            f"{np.nanmax(saliency):.3g}]. Pass integrated gradients through displayable() first."
        )
    return np.clip(saliency, 0.0, 1.0)  # only float rounding is clipped here


def _colormap(cmap: Colormap | str):
    import matplotlib

    try:
        name = Colormap(cmap)
    except ValueError:
        raise invalid_parameter("cmap", "overlay", f"one of {[c.value for c in Colormap]}", cmap) from None
    return matplotlib.colormaps[name.value]


def overlay(
    image: np.ndarray,
    saliency: np.ndarray,
    alpha: float = 0.45,
    cmap: Colormap | str = Colormap.JET,
    min_size: int = MIN_DISPLAY_PX,
) -> np.ndarray:
    """Blend a colour-mapped saliency map over an image.

    Images whose smaller side is below ``min_size`` are upscaled by the smallest integer factor reaching it:
    nearest-neighbour for the image (pixels stay visibly pixels, no invented detail) and bilinear for the map
    (it is a smooth field).

    Args:
        image: ``(C, H, W)`` grey (C=1) or RGB (C=3); uint8 is used as is, any other dtype is rescaled to
            0–255 by its own min/max.
        saliency: ``(H, W)`` in [0, 1].
        alpha: weight of the colour map, in [0, 1].
        cmap: ``"jet"`` or ``"inferno"``.
        min_size: smallest side of the result before upscaling stops; 0 or 1 keeps the input size.

    Returns:
        ``(H·k, W·k, 3)`` uint8 RGB with ``k`` the integer upscaling factor.
    """
    rgb = _to_rgb_uint8(image, "overlay")
    height, width = rgb.shape[:2]
    heat = _check_map(saliency, (height, width), "overlay")
    if not 0.0 <= alpha <= 1.0:
        raise invalid_parameter("alpha", "overlay", "in [0, 1]", alpha)
    colours = _colormap(cmap)
    factor = max(1, math.ceil(min_size / min(height, width)))
    if factor > 1:
        rgb = rgb.repeat(factor, axis=0).repeat(factor, axis=1)
        heat = F.interpolate(torch.from_numpy(heat)[None, None], scale_factor=factor, mode="bilinear",
                             align_corners=False)[0, 0].numpy()
    coloured = colours(np.clip(heat, 0.0, 1.0))[..., :3] * 255.0
    blended = (1.0 - alpha) * rgb.astype(np.float64) + alpha * coloured
    return np.clip(np.round(blended), 0, 255).astype(np.uint8)


def max_saliency_slice(image: np.ndarray, saliency: np.ndarray, axis: int = -1) -> tuple[np.ndarray, np.ndarray, int]:
    """The 2-D slice of a volume where the saliency map has the largest total (its "mass").

    Args:
        image: ``(C, *spatial)`` volume with three spatial axes.
        saliency: ``(*spatial)`` map in [0, 1].
        axis: the spatial axis to slice along (0, 1, 2 or negative); default the last — axial slices of
            medai's NIfTI volumes ``(C, X, Y, Z)``. Orientation is kept as stored; flip/transpose for a
            radiological display yourself.

    Returns:
        ``(image slice (C, a, b), saliency slice (a, b), slice index along axis)``.
    """
    image = np.asarray(image)
    saliency = np.asarray(saliency)
    if image.ndim != 4:
        raise DataValidationError(f"max_saliency_slice: image must be (C, D, H, W); got shape {image.shape}.")
    if saliency.shape != image.shape[1:]:
        raise DataValidationError(
            f"max_saliency_slice: saliency must have the volume's spatial shape {image.shape[1:]}; "
            f"got {saliency.shape}."
        )
    if isinstance(axis, bool) or not isinstance(axis, int | np.integer) or not -3 <= axis <= 2:
        raise invalid_parameter("axis", "max_saliency_slice", "a spatial axis in -3..2", axis)
    axis = int(axis) % 3
    other = tuple(a for a in range(3) if a != axis)
    index = int(np.argmax(np.abs(saliency).sum(axis=other)))
    return np.take(image, index, axis=axis + 1), np.take(saliency, index, axis=axis), index


def _png_bytes(rgb: np.ndarray) -> bytes:
    from PIL import Image

    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise DataValidationError(f"PNG output needs (H, W, 3) uint8 RGB; got {rgb.shape} {rgb.dtype}.")
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    return buffer.getvalue()


def save_png(path: str | Path, rgb: np.ndarray) -> Path:
    """Write ``(H, W, 3)`` uint8 RGB to ``path`` as PNG atomically: a temporary file in the same folder, then
    ``os.replace`` — a reader never sees half a file and a failure leaves no temporary file behind."""
    path = Path(path)
    data = _png_bytes(rgb)
    if not path.parent.is_dir():
        raise DataValidationError(f"save_png: folder {path.parent} does not exist; create it first.")
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def png_base64(rgb: np.ndarray) -> str:
    """``(H, W, 3)`` uint8 RGB → base64 PNG text, for ``<img src="data:image/png;base64,...">``."""
    return base64.b64encode(_png_bytes(rgb)).decode("ascii")


def overlay_panel(
    image: np.ndarray,
    maps: dict[str, np.ndarray],
    title: str = "",
    cmap: Colormap | str = Colormap.JET,
    alpha: float = 0.45,
) -> bytes:
    """A report figure: the image, then one overlay per map (e.g. Grad-CAM | integrated gradients), each with a
    colour bar, side by side.

    Args:
        image: ``(C, H, W)`` as for :func:`overlay`.
        maps: ``{panel title: (H, W) map in [0, 1]}``, drawn in the dict's order.
        title: figure title (e.g. the example's id, true label and predicted probability; no patient data).

    Returns:
        PNG bytes (use ``base64.b64encode`` to embed in HTML).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    if not maps:
        raise invalid_parameter("maps", "overlay_panel", "at least one {name: map} entry", maps)
    rgb = _to_rgb_uint8(image, "overlay_panel")
    # Every map is checked before drawing, so an error never leaves half a figure.
    overlays = {name: overlay(image, heat, alpha=alpha, cmap=cmap) for name, heat in maps.items()}
    colours = _colormap(cmap)
    figure = Figure(figsize=(3.2 * (1 + len(overlays)), 3.4), dpi=100)
    FigureCanvasAgg(figure)  # attaches the Agg canvas; no pyplot global state, safe in a server thread
    axes = figure.subplots(1, 1 + len(overlays), squeeze=False)[0]
    axes[0].imshow(rgb, interpolation="nearest")
    axes[0].set_title("image")
    for ax, (name, picture) in zip(axes[1:], overlays.items(), strict=True):
        ax.imshow(picture, interpolation="nearest")
        ax.set_title(name)
        bar = figure.colorbar(ScalarMappable(norm=Normalize(0.0, 1.0), cmap=colours), ax=ax, fraction=0.046,
                              pad=0.04)
        bar.set_label("relative importance")
    for ax in axes:
        ax.set_axis_off()
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
