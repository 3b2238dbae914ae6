"""Generated imaging phantoms with known truth, for segmentation work without patient data.

Two families, both deterministic for a given seed:

* **Lesion phantoms** (:func:`make_lesion_phantoms`): 2-D or 3-D patches of textured parenchyma with Rician-like
  noise, 0–3 hyperintense ellipse/ellipsoid lesions of varied size and contrast, and bright elongated *vessels*
  that are not lesions (a plain intensity threshold confuses them with lesions; shape tells them apart).
  Truth: the lesion mask (1 = lesion, 0 = anything else).
* **Cardiac short-axis cine phantom** (:func:`make_cardiac_cine_phantoms`): per subject a cine stack
  ``(frames, slices, rows, cols)`` covering the left ventricle (LV) from base to apex over one heart beat, as in
  bSSFP cine MRI: a bright LV blood pool inside a dark myocardial ring, a bright right-ventricular crescent beside
  the septum, two papillary muscles inside the cavity, a smooth coil-sensitivity bias and noise. Truth: the LV
  cavity mask (1 = LV blood pool including the papillary muscles, as in the usual clinical convention; 0 = else).

Volumes and ejection fraction follow the summation-of-discs (Simpson) method on the truth masks::

    V(frame) = (number of cavity voxels) x row spacing x column spacing x slice spacing   [mm^3, / 1000 -> mL]
    EDV = max over frames of V,  ESV = min over frames of V  (end-diastole / end-systole frames = argmax / argmin)
    EF  = (EDV - ESV) / EDV x 100                                                         [%]

The slice spacing is used as the slice thickness (contiguous slices). The EF a subject was *drawn* with (uniform in
25–70 %) sets the contraction; the truth reported is always recomputed from the discrete masks with the formula
above, so the model's EF and the truth EF are measured the same way.

Named datasets with a fixed subject-level train/val/test split are in :data:`SEGMENTATION_DATASETS`; load one
with :func:`load_segmentation_dataset`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage

from medai.core.errors import invalid_parameter
from medai.core.registry import Registry

__all__ = [
    "CardiacCinePhantoms",
    "LesionPhantoms",
    "SEGMENTATION_DATASETS",
    "SegmentationDatasetInfo",
    "cine_volumes_ml",
    "ejection_fraction",
    "load_segmentation_dataset",
    "make_cardiac_cine_phantoms",
    "make_lesion_phantoms",
]

SPLITS = ("train", "val", "test")


# ------------------------------------------------------------------------------------------------ lesion phantoms
@dataclass(frozen=True)
class LesionPhantoms:
    """Lesion phantom images and their truth.

    Attributes:
        images: float32 ``(N, 1, *spatial)``, arbitrary units (parenchyma about 0.4, lesions 0.2–0.6 brighter).
        masks: uint8 ``(N, 1, *spatial)``; 1 = lesion, 0 = background (parenchyma, vessels).
        ids: one id per image (each image is one subject).
        n_lesions: int ``(N,)`` number of lesions drawn in each image (0–3).
        spacing_mm: voxel size per spatial axis (rows, cols) or (slices, rows, cols).
    """

    images: np.ndarray
    masks: np.ndarray
    ids: tuple[str, ...]
    n_lesions: np.ndarray
    spacing_mm: tuple[float, ...]


def make_lesion_phantoms(
    n: int,
    *,
    spatial_dims: int = 2,
    size: int = 64,
    spacing_mm: float = 1.0,
    max_lesions: int = 3,
    noise_sd: float = 0.08,
    seed: int = 0,
    id_prefix: str = "lesion",
    first_id: int = 0,
) -> LesionPhantoms:
    """Generate ``n`` noisy lesion phantoms (see the module docstring).

    Args:
        n: number of images.
        spatial_dims: 2 (``size x size`` images) or 3 (``size^3`` volumes).
        size: edge length in voxels (>= 16).
        spacing_mm: isotropic voxel size in mm.
        max_lesions: images hold 0 to ``max_lesions`` lesions (about 20 % hold none).
        noise_sd: standard deviation of the Gaussian noise of each quadrature channel (Rician magnitude).
        seed: seed of ``numpy.random.default_rng``; the same arguments give the same images.
        id_prefix / first_id: ids are ``f"{id_prefix}-{first_id + i:04d}"``.

    Returns:
        :class:`LesionPhantoms`.
    """
    owner = "make_lesion_phantoms"
    if not isinstance(n, int) or n < 1:
        raise invalid_parameter("n", owner, "a positive integer", n)
    if spatial_dims not in (2, 3):
        raise invalid_parameter("spatial_dims", owner, "2 or 3", spatial_dims)
    if not isinstance(size, int) or size < 16:
        raise invalid_parameter("size", owner, "an integer >= 16", size)
    if not isinstance(max_lesions, int) or not 0 <= max_lesions <= 5:
        raise invalid_parameter("max_lesions", owner, "an integer in [0, 5]", max_lesions)
    rng = np.random.default_rng(seed)
    shape = (size,) * spatial_dims
    images = np.empty((n, 1, *shape), np.float32)
    masks = np.zeros((n, 1, *shape), np.uint8)
    counts = np.zeros(n, np.int64)
    grid = np.stack(np.meshgrid(*(np.arange(size, dtype=np.float64),) * spatial_dims, indexing="ij"))
    for i in range(n):
        images[i, 0], masks[i, 0], counts[i] = _lesion_image(rng, grid, shape, max_lesions, noise_sd)
    ids = tuple(f"{id_prefix}-{first_id + i:04d}" for i in range(n))
    return LesionPhantoms(images, masks, ids, counts, (float(spacing_mm),) * spatial_dims)


def _lesion_image(rng: np.random.Generator, grid: np.ndarray, shape: tuple[int, ...], max_lesions: int,
                  noise_sd: float) -> tuple[np.ndarray, np.ndarray, int]:
    dims = len(shape)
    size = shape[0]
    # Parenchyma: a smooth random texture (low-pass filtered white noise) around a random mean level.
    texture = ndimage.gaussian_filter(rng.standard_normal(shape), sigma=size / 16)
    texture *= rng.uniform(0.03, 0.07) / max(texture.std(), 1e-6)
    image = rng.uniform(0.35, 0.45) + texture
    # Vessels: bright thin tubes that cross the patch; lesions are compact, vessels elongated.
    for _ in range(rng.integers(1, 4)):
        image += rng.uniform(0.2, 0.45) * _tube(rng, grid, size, radius=rng.uniform(0.7, 1.4))
    mask = np.zeros(shape, bool)
    n_lesions = int(rng.choice(max_lesions + 1, p=_lesion_count_probabilities(max_lesions)))
    drawn = 0
    for _ in range(50 * max(n_lesions, 1)):
        if drawn == n_lesions:
            break
        radii = rng.uniform(2.5, 8.0 if dims == 2 else 6.0, dims) * (size / 64 if dims == 2 else size / 32)
        radii = np.maximum(radii, 2.0)
        margin = radii.max() + 2
        centre = rng.uniform(margin, size - 1 - margin, dims)
        q = _ellipsoid_q(grid, centre, radii, _random_rotation(rng, dims))
        inside = q <= 1.0
        if (ndimage.binary_dilation(mask, iterations=2) & inside).any():
            continue  # lesions do not touch: each one is a separate connected component of the truth
        mask |= inside
        # Soft edge (partial volume) and a slightly heterogeneous interior.
        profile = np.clip((1.15 - np.sqrt(q)) / 0.3, 0.0, 1.0)
        contrast = rng.uniform(0.2, 0.6)
        image += contrast * profile * (1 + 0.15 * ndimage.gaussian_filter(rng.standard_normal(shape), 1.0))
        drawn += 1
    # Rician-like magnitude noise: |signal + complex Gaussian noise|.
    image = np.hypot(image + rng.normal(0, noise_sd, shape), rng.normal(0, noise_sd, shape))
    return image.astype(np.float32), mask.astype(np.uint8), drawn


def _lesion_count_probabilities(max_lesions: int) -> np.ndarray:
    if max_lesions == 0:
        return np.array([1.0])
    p = np.r_[0.2, np.full(max_lesions, 0.8 / max_lesions)]
    return p / p.sum()


def _random_rotation(rng: np.random.Generator, dims: int) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((dims, dims)))
    return q * np.sign(np.diag(r))


def _ellipsoid_q(grid: np.ndarray, centre: np.ndarray, radii: np.ndarray, rotation: np.ndarray) -> np.ndarray:
    """Normalised quadratic form: <= 1 inside the ellipsoid (centre, semi-axes ``radii`` along ``rotation``)."""
    offset = grid - centre.reshape(-1, *([1] * (grid.ndim - 1)))
    local = np.tensordot(rotation.T, offset, axes=1)
    return sum((local[k] / radii[k]) ** 2 for k in range(len(radii)))


def _tube(rng: np.random.Generator, grid: np.ndarray, size: int, radius: float) -> np.ndarray:
    """A soft tube along a gently curved line across the patch, values in [0, 1]."""
    dims = grid.shape[0]
    direction = rng.standard_normal(dims)
    direction /= np.linalg.norm(direction)
    point = rng.uniform(0.2 * size, 0.8 * size, dims)
    offset = grid - point.reshape(-1, *([1] * dims))
    along = np.tensordot(direction, offset, axes=1)
    across = offset - direction.reshape(-1, *([1] * dims)) * along
    bend = rng.standard_normal(dims)
    bend -= direction * (bend @ direction)
    bend *= rng.uniform(0.0, 6.0) / max(np.linalg.norm(bend), 1e-9)
    curved = across - bend.reshape(-1, *([1] * dims)) * np.sin(along / size * np.pi)
    distance = np.sqrt((curved ** 2).sum(axis=0))
    return np.clip((radius + 0.5 - distance) / 1.0, 0.0, 1.0)


# ------------------------------------------------------------------------------------------ cardiac cine phantom
@dataclass(frozen=True)
class CardiacCinePhantoms:
    """Short-axis cine stacks of the LV and their truth.

    Attributes:
        images: float32 ``(subjects, frames, slices, rows, cols)``, arbitrary units (blood pool about 1).
        masks: uint8, same shape; 1 = LV cavity (blood pool with papillary muscles), 0 = anything else.
        ids: subject ids.
        spacing_mm: ``(slice spacing, row spacing, column spacing)``; slices are contiguous (thickness = spacing).
        volumes_ml: ``(subjects, frames)`` LV cavity volume of each frame from the truth masks.
        edv_ml / esv_ml / ef_percent: ``(subjects,)`` truth end-diastolic / end-systolic volume and ejection
            fraction (see the module docstring for the definition).
        ed_frame / es_frame: ``(subjects,)`` truth end-diastolic and end-systolic frame (argmax / argmin volume).
        drawn_ef_percent: ``(subjects,)`` the EF each subject was drawn with (sets the contraction only).
    """

    images: np.ndarray
    masks: np.ndarray
    ids: tuple[str, ...]
    spacing_mm: tuple[float, float, float]
    volumes_ml: np.ndarray
    edv_ml: np.ndarray
    esv_ml: np.ndarray
    ef_percent: np.ndarray
    ed_frame: np.ndarray
    es_frame: np.ndarray
    drawn_ef_percent: np.ndarray


def cine_volumes_ml(masks: np.ndarray, spacing_mm: tuple[float, float, float]) -> np.ndarray:
    """Cavity volume per frame in mL: voxel count x voxel volume.

    Args:
        masks: ``(..., frames, slices, rows, cols)``, 1 = cavity.
        spacing_mm: ``(slice, row, col)`` spacing.

    Returns:
        float64 ``(..., frames)``.
    """
    voxel_ml = float(np.prod(spacing_mm)) / 1000.0
    return (np.asarray(masks) > 0).sum(axis=(-3, -2, -1)).astype(np.float64) * voxel_ml


def ejection_fraction(volumes_ml: np.ndarray) -> dict[str, np.ndarray]:
    """End-diastolic / end-systolic volume, frames and ejection fraction from per-frame volumes.

    ED is the frame of largest volume, ES of smallest; ``EF = (EDV - ESV) / EDV x 100``. A subject whose largest
    volume is 0 has an undefined EF (NaN).

    Args:
        volumes_ml: ``(subjects, frames)`` or ``(frames,)``.

    Returns:
        ``{"edv_ml", "esv_ml", "ef_percent", "ed_frame", "es_frame"}``, arrays of shape ``(subjects,)`` (or
        scalars' 0-d arrays for one subject).
    """
    volumes = np.asarray(volumes_ml, dtype=np.float64)
    ed = volumes.argmax(axis=-1)
    es = volumes.argmin(axis=-1)
    edv = volumes.max(axis=-1)
    esv = volumes.min(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        ef = np.where(edv > 0, (edv - esv) / np.where(edv > 0, edv, 1.0) * 100.0, np.nan)
    return {"edv_ml": edv, "esv_ml": esv, "ef_percent": ef, "ed_frame": ed, "es_frame": es}


def make_cardiac_cine_phantoms(
    n_subjects: int,
    *,
    n_frames: int = 20,
    n_slices: int = 8,
    size: int = 64,
    pixel_mm: float = 2.0,
    slice_mm: float = 10.0,
    ef_range: tuple[float, float] = (25.0, 70.0),
    seed: int = 0,
    id_prefix: str = "heart",
    first_id: int = 0,
) -> CardiacCinePhantoms:
    """Generate short-axis cine phantoms of the LV (see the module docstring).

    The cavity is a truncated prolate half-ellipsoid cut by ``n_slices`` short-axis planes from the base (slice 0)
    towards the apex; its short-axis radius and long-axis length shrink from end-diastole (frame 0) to end-systole
    (a subject-specific frame at 30–45 % of the cycle) and recover in diastole. The myocardial cross-section of each
    slice is conserved, so the wall thickens in systole.

    Args:
        n_subjects: number of subjects.
        n_frames: cine frames per heart beat (>= 8).
        n_slices: short-axis slices per frame (>= 3).
        size: rows = cols of each image (>= 32).
        pixel_mm: in-plane pixel spacing.
        slice_mm: slice spacing (= thickness).
        ef_range: uniform range of the EF each subject is drawn with, in %.
        seed: seed of ``numpy.random.default_rng``.
        id_prefix / first_id: ids are ``f"{id_prefix}-{first_id + i:04d}"``.

    Returns:
        :class:`CardiacCinePhantoms`.
    """
    owner = "make_cardiac_cine_phantoms"
    if not isinstance(n_subjects, int) or n_subjects < 1:
        raise invalid_parameter("n_subjects", owner, "a positive integer", n_subjects)
    if not isinstance(n_frames, int) or n_frames < 8:
        raise invalid_parameter("n_frames", owner, "an integer >= 8", n_frames)
    if not isinstance(n_slices, int) or n_slices < 3:
        raise invalid_parameter("n_slices", owner, "an integer >= 3", n_slices)
    if not isinstance(size, int) or size < 32:
        raise invalid_parameter("size", owner, "an integer >= 32", size)
    low, high = (float(v) for v in ef_range)
    if not 5.0 <= low <= high <= 85.0:
        raise invalid_parameter("ef_range", owner, "(low, high) with 5 <= low <= high <= 85", ef_range)
    rng = np.random.default_rng(seed)
    shape = (n_subjects, n_frames, n_slices, size, size)
    images = np.empty(shape, np.float32)
    masks = np.empty(shape, np.uint8)
    drawn = np.empty(n_subjects)
    # In-plane pixel centres in mm, (rows, cols).
    yy, xx = np.meshgrid(np.arange(size) * pixel_mm, np.arange(size) * pixel_mm, indexing="ij")
    for s in range(n_subjects):
        drawn[s] = rng.uniform(low, high)
        images[s], masks[s] = _cine_subject(rng, yy, xx, drawn[s], n_frames, n_slices, slice_mm, size * pixel_mm)
    spacing = (float(slice_mm), float(pixel_mm), float(pixel_mm))
    volumes = cine_volumes_ml(masks, spacing)
    ef = ejection_fraction(volumes)
    ids = tuple(f"{id_prefix}-{first_id + i:04d}" for i in range(n_subjects))
    return CardiacCinePhantoms(images, masks, ids, spacing, volumes, ef["edv_ml"], ef["esv_ml"], ef["ef_percent"],
                               ef["ed_frame"], ef["es_frame"], drawn)


def _contraction(n_frames: int, es_frame: int) -> np.ndarray:
    """Fraction of the systolic shortening reached at each frame: 0 at ED (frame 0), 1 at ES, back to 0."""
    t = np.arange(n_frames, dtype=np.float64)
    systole = (1 - np.cos(np.pi * np.minimum(t, es_frame) / es_frame)) / 2
    diastole = (1 + np.cos(np.pi * (t - es_frame) / (n_frames - es_frame))) / 2
    return np.where(t <= es_frame, systole, diastole)


def _soft(signed_distance_mm: np.ndarray, edge_mm: float) -> np.ndarray:
    """Partial-volume weight of a region from a signed distance (negative inside)."""
    return 1.0 / (1.0 + np.exp(np.clip(signed_distance_mm / edge_mm, -30, 30)))


def _cine_subject(rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray, ef_drawn: float, n_frames: int,
                  n_slices: int, slice_mm: float, fov_mm: float) -> tuple[np.ndarray, np.ndarray]:
    size = yy.shape[0]
    pixel_mm = fov_mm / size
    centre = fov_mm / 2 + rng.uniform(-8, 8, 2)  # (row, col) mm: short-axis images are roughly LV-centred
    radius_ed = rng.uniform(22.0, 29.0)  # basal cavity radius at ED, mm
    length_ed = n_slices * slice_mm * rng.uniform(0.95, 1.1)  # base-to-apex cavity length, mm
    wall_ed = rng.uniform(7.0, 10.0)  # myocardial wall thickness at ED, mm
    long_shortening = 1 - 0.12 * ef_drawn / 70  # long-axis length ES / ED
    radial = np.sqrt((1 - ef_drawn / 100) / long_shortening)  # radius ES / ED so that V_ES / V_ED ~ 1 - EF
    es_frame = int(round(n_frames * rng.uniform(0.30, 0.45)))
    contraction = _contraction(n_frames, es_frame)
    elongation = rng.uniform(0.9, 1.1)  # slightly elliptical cavity
    angle = rng.uniform(0, np.pi)
    cos, sin = np.cos(angle), np.sin(angle)
    dy, dx = yy - centre[0], xx - centre[1]
    u, v = cos * dx + sin * dy, -sin * dx + cos * dy  # rotated in-plane coordinates, mm
    rho = np.sqrt(u ** 2 / elongation + v ** 2 * elongation)  # elliptical "radius", mm
    rv_angle = rng.uniform(0.8, 1.2) * np.pi  # RV lies beside the septum
    papillary_angles = rng.uniform(-0.3, 0.3) + np.array([0.35, -0.35]) * np.pi
    # Trabeculations: small muscle bundles on the endocardial border (inside the truth cavity, as the papillary
    # muscles): they make the blood/muscle boundary irregular, while the truth contour stays smooth.
    trabecula_angles = rng.uniform(0, 2 * np.pi, rng.integers(6, 13))
    trabecula_sizes = rng.uniform(1.5, 3.0, len(trabecula_angles))
    blood = rng.uniform(0.9, 1.1)
    myocardium = rng.uniform(0.25, 0.35)
    tissue = rng.uniform(0.4, 0.5)
    noise = rng.uniform(0.05, 0.09)
    apical_darkening = rng.uniform(0.1, 0.35)  # slow flow: the blood signal falls towards the apex
    # Coil sensitivity: a smooth multiplicative bias across the field of view.
    gradient = rng.normal(0, 0.25, 2)
    bias = 1 + gradient[0] * (yy / fov_mm - 0.5) + gradient[1] * (xx / fov_mm - 0.5)
    texture = ndimage.gaussian_filter(rng.standard_normal((size, size)), 3.0)
    texture *= 0.05 / max(texture.std(), 1e-6)

    images = np.empty((n_frames, n_slices, size, size), np.float32)
    masks = np.empty((n_frames, n_slices, size, size), np.uint8)
    depth = (np.arange(n_slices) + 0.5) * slice_mm  # slice centres below the basal plane, mm
    ed_cavity = radius_ed * np.sqrt(np.clip(1 - (depth / length_ed) ** 2, 0, None))
    wall_area = np.pi * ((ed_cavity + wall_ed) ** 2 - ed_cavity ** 2)  # conserved through the beat
    edge = 0.4 * pixel_mm
    for t in range(n_frames):
        c = contraction[t]
        radius = radius_ed * (1 - (1 - radial) * c)
        length = length_ed * (1 - (1 - long_shortening) * c)
        for k in range(n_slices):
            cavity_r = radius * np.sqrt(max(0.0, 1 - (depth[k] / length) ** 2))
            outer_r = np.sqrt(cavity_r ** 2 + wall_area[k] / np.pi)
            cavity = rho <= cavity_r
            w_outer = _soft(rho - outer_r, edge)
            w_cavity = _soft(rho - cavity_r, edge) if cavity_r > 0 else np.zeros_like(rho)
            # Papillary muscles: dark discs inside the cavity (part of the truth cavity, by convention).
            w_papillary = np.zeros_like(rho)
            if cavity_r > 12.0:
                for a in papillary_angles:
                    p = 0.6 * cavity_r * np.array([np.cos(a), np.sin(a)])
                    d = np.sqrt((u - p[0]) ** 2 + (v - p[1]) ** 2) - min(3.5, 0.18 * cavity_r)
                    w_papillary = np.maximum(w_papillary, _soft(d, edge))
            if cavity_r > 8.0:
                for a, r in zip(trabecula_angles, trabecula_sizes):
                    p = (cavity_r - 0.3 * r) * np.array([np.cos(a), np.sin(a)])
                    d = np.sqrt((u - p[0]) ** 2 + (v - p[1]) ** 2) - r
                    w_papillary = np.maximum(w_papillary, _soft(d, edge))
            # Right ventricle: a crescent of blood beside the septum, shrinking in systole.
            w_rv = np.zeros_like(rho)
            if depth[k] < 0.8 * length:
                rv_r = 1.25 * outer_r * (1 - 0.2 * c)
                rv_c = (outer_r + 0.15 * rv_r) * np.array([np.cos(rv_angle), np.sin(rv_angle)])
                d_rv = np.sqrt((u - rv_c[0]) ** 2 + (v - rv_c[1]) ** 2) - rv_r
                w_rv = _soft(d_rv, edge) * (1 - _soft(rho - (outer_r + 2.5), edge))
            image = tissue + texture
            image = image * (1 - w_outer) + myocardium * w_outer
            blood_k = blood * (1 - apical_darkening * (depth[k] / length_ed) ** 2)
            image = image * (1 - w_cavity) + blood_k * w_cavity
            image = image * (1 - w_papillary * w_cavity) + myocardium * w_papillary * w_cavity
            image = image * (1 - w_rv) + blood * w_rv
            image = image * bias
            image = np.hypot(image + rng.normal(0, noise, image.shape), rng.normal(0, noise, image.shape))
            images[t, k] = image
            masks[t, k] = cavity
    return images, masks


# ----------------------------------------------------------------------------------------------- named datasets
@dataclass(frozen=True)
class SegmentationDatasetInfo:
    """A named generated segmentation dataset.

    Attributes:
        name: registry name (``data: {builtin: NAME}`` in a recipe).
        title: one line.
        kind: ``lesion`` (each image one subject; truth = lesions) or ``cardiac-cine`` (cine stacks per subject;
            truth = LV cavity, EF per subject).
        spatial_dims: 2 or 3: the dimensionality of the network's input.
        n: subjects per split ``{"train": n, "val": n, "test": n}``.
        params: keyword arguments of the generator.
        seed: base seed; each split has its own stream, so the splits never share a subject.
        label: the name of the foreground class.
    """

    name: str
    title: str
    kind: str
    spatial_dims: int
    n: dict[str, int]
    params: dict[str, Any] = field(default_factory=dict)
    seed: int = 20240611
    label: str = "lesion"


SEGMENTATION_DATASETS: Registry[SegmentationDatasetInfo] = Registry("segmentation dataset")


def _register(info: SegmentationDatasetInfo) -> None:
    SEGMENTATION_DATASETS.register(info.name)(info)


_register(SegmentationDatasetInfo(
    name="lesion-phantoms-2d",
    title="2-D noisy lesion phantoms (64 x 64, 1 mm pixels), 0-3 lesions per image, vessel distractors",
    kind="lesion", spatial_dims=2, n={"train": 600, "val": 100, "test": 200},
    params={"spatial_dims": 2, "size": 64, "spacing_mm": 1.0}, label="lesion",
))
_register(SegmentationDatasetInfo(
    name="lesion-phantoms-3d",
    title="3-D noisy lesion phantoms (32^3, 1.5 mm voxels), 0-3 lesions per volume, vessel distractors",
    kind="lesion", spatial_dims=3, n={"train": 160, "val": 24, "test": 48},
    params={"spatial_dims": 3, "size": 32, "spacing_mm": 1.5}, label="lesion",
))
_register(SegmentationDatasetInfo(
    name="cardiac-cine-phantom",
    title="Short-axis cine MRI phantom of the LV: 20 frames x 8 slices of 64 x 64 (2 mm, 10 mm slices), "
          "EF 25-70 %",
    kind="cardiac-cine", spatial_dims=2, n={"train": 16, "val": 4, "test": 16},
    params={"n_frames": 20, "n_slices": 8, "size": 64, "pixel_mm": 2.0, "slice_mm": 10.0}, label="lv_cavity",
))


def load_segmentation_dataset(name: str) -> dict[str, LesionPhantoms | CardiacCinePhantoms]:
    """Generate the named dataset: ``{"train": ..., "val": ..., "test": ...}``, disjoint subjects.

    Raises:
        UnknownNameError: ``name`` is not registered (the message lists the names).
    """
    info = SEGMENTATION_DATASETS.get(name)
    streams = np.random.SeedSequence(info.seed).spawn(len(SPLITS))
    out: dict[str, LesionPhantoms | CardiacCinePhantoms] = {}
    first = 0
    for split, stream in zip(SPLITS, streams):
        seed = int(stream.generate_state(1)[0])
        n = info.n[split]
        if info.kind == "lesion":
            out[split] = make_lesion_phantoms(n, seed=seed, id_prefix="case", first_id=first, **info.params)
        else:
            out[split] = make_cardiac_cine_phantoms(n, seed=seed, id_prefix="subject", first_id=first, **info.params)
        first += n
    return out
