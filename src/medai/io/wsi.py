"""Whole-slide images (histopathology): tissue tiles read with OpenSlide, and a tiled dataset on disk.

A slide is far too large to hold in memory (often 100 000 x 80 000 px at level 0), so it is never read whole at
full resolution. :func:`read_slide_tiles` builds a tissue mask on a low-resolution thumbnail, keeps the grid tiles
that are mostly tissue, and reads only those tiles from the chosen pyramid level. :func:`tile_slides` does this for
every slide listed in a CSV and writes PNG tiles plus a manifest that :func:`medai.io.images.read_manifest` (and so
``medai train --data manifest.csv``) reads, with one patient id per tile so that a patient-level split keeps all
tiles of a slide (or of a patient) in one split.

Coordinates are always level-0 pixels ``(x, y)`` of the tile's top-left corner, as OpenSlide's ``read_region``
takes them. Tile data is ``uint8`` ``(3, tile_size, tile_size)`` RGB, read at the level's own resolution (never
resampled): ``meta["mpp"]`` states the microns per pixel actually obtained.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from medai.core.errors import (
    DataValidationError,
    InvalidParameterError,
    MissingDependencyError,
    RunStateError,
    invalid_parameter,
)
from medai.core.outputs import finish_run_directory, partial_path, remove_tree, write_text
from medai.core.records import Modality, Record
from medai.io.images import OnInvalid, _check_on_invalid, _id_string

# Thumbnail for the tissue mask: about 8 x 8 mask pixels per tile, within these bounds on its longer side.
_MASK_MIN_SIDE = 512
_MASK_MAX_SIDE = 4096
# The pyramid level the thumbnail is made from is read whole; refuse beyond this (a slide without a pyramid).
_THUMBNAIL_SOURCE_MAX_PIXELS = 8192 * 8192
# Saturation (0-255) below which a pixel is background whatever Otsu says: glass and white background are grey,
# and a slide with no tissue would otherwise be split at noise level.
_MIN_TISSUE_SATURATION = 15
_SLIDES_COLUMNS = ("slide_path", "label")


def _openslide():
    try:
        import openslide
    except (ImportError, OSError) as exc:  # OSError: the python package is there but the C library is not
        raise MissingDependencyError(
            f"Reading whole-slide images needs OpenSlide ({exc.__class__.__name__}: {str(exc)[:120]}): "
            "pip install openslide-python openslide-bin"
        ) from None
    return openslide


def otsu_threshold(values: np.ndarray) -> int:
    """Otsu's threshold (Otsu, IEEE Trans. Syst. Man Cybern. 1979) of uint8 values.

    Picks ``t`` maximising the between-class variance of ``values <= t`` versus ``values > t``.

    Args:
        values: uint8 array of any shape.

    Returns:
        The threshold in 0..255; pixels ``> t`` form the upper class. A constant array returns its value.
    """
    histogram = np.bincount(np.asarray(values, dtype=np.uint8).ravel(), minlength=256).astype(np.float64)
    total = histogram.sum()
    if total == 0:
        return 0
    levels = np.arange(256, dtype=np.float64)
    weight_low = np.cumsum(histogram)  # pixels <= t
    weight_high = total - weight_low
    sum_low = np.cumsum(histogram * levels)
    mean_low = np.divide(sum_low, weight_low, out=np.zeros(256), where=weight_low > 0)
    mean_high = np.divide(sum_low[-1] - sum_low, weight_high, out=np.zeros(256), where=weight_high > 0)
    between = weight_low * weight_high * (mean_low - mean_high) ** 2
    if not between.any():
        return int(np.flatnonzero(histogram)[0])
    return int(np.argmax(between))


def tissue_mask(rgb: np.ndarray) -> np.ndarray:
    """Tissue mask of an RGB thumbnail: saturation above Otsu's threshold (and above a small floor).

    Stained tissue (H&E, IHC) is coloured while glass, background and most scanner borders are near-grey, so
    HSV saturation separates them better than brightness (the approach of CLAM, Lu et al., Nat. Biomed. Eng.
    2021, without its median blur). Black pen marks and dark debris are low-saturation and fall in the background.

    Args:
        rgb: uint8 ``(H, W, 3)``.

    Returns:
        bool ``(H, W)``: True where there is tissue.
    """
    rgb = np.asarray(rgb, dtype=np.uint8)
    high = rgb.max(axis=2).astype(np.int32)
    low = rgb.min(axis=2).astype(np.int32)
    saturation = np.where(high > 0, (high - low) * 255 // np.maximum(high, 1), 0).astype(np.uint8)
    return saturation > max(otsu_threshold(saturation), _MIN_TISSUE_SATURATION)


def _check_options(owner: str, tile_size, level, target_mpp, tissue_fraction, max_tiles) -> None:
    if isinstance(tile_size, bool) or not isinstance(tile_size, int) or tile_size < 16:
        raise invalid_parameter("tile_size", owner, "an int >= 16 (pixels)", tile_size)
    if level is not None and target_mpp is not None:
        raise InvalidParameterError(
            f"{owner}: give either 'level' or 'target_mpp', not both (got level={level!r}, "
            f"target_mpp={target_mpp!r})."
        )
    if level is not None and (isinstance(level, bool) or not isinstance(level, int) or level < 0):
        raise invalid_parameter("level", owner, "None or an int >= 0", level)
    if target_mpp is not None and (
        isinstance(target_mpp, bool) or not isinstance(target_mpp, int | float) or not target_mpp > 0
    ):
        raise invalid_parameter("target_mpp", owner, "None or a number > 0 (microns per pixel)", target_mpp)
    if isinstance(tissue_fraction, bool) or not isinstance(tissue_fraction, int | float) or not (
        0 <= tissue_fraction <= 1
    ):
        raise invalid_parameter("tissue_fraction", owner, "a number in [0, 1]", tissue_fraction)
    if max_tiles is not None and (isinstance(max_tiles, bool) or not isinstance(max_tiles, int) or max_tiles < 1):
        raise invalid_parameter("max_tiles", owner, "None or an int >= 1", max_tiles)


def _open_slide(path: Path):
    openslide = _openslide()
    try:
        return openslide.OpenSlide(str(path))
    except openslide.OpenSlideUnsupportedFormatError:
        raise DataValidationError(
            f"{path}: not a whole-slide image OpenSlide can read (unsupported format or corrupt file). Expected a "
            "tiled, pyramidal slide such as Aperio .svs, Hamamatsu .ndpi, MIRAX .mrxs, Leica .scn, Philips .tiff "
            "or a generic tiled TIFF."
        ) from None
    except openslide.OpenSlideError as exc:
        raise DataValidationError(f"{path}: corrupt whole-slide image (OpenSlide: {str(exc)[:160]}).") from None


def _level_mpp(slide) -> float | None:
    value = slide.properties.get("openslide.mpp-x")
    try:
        mpp = float(value) if value is not None else None
    except ValueError:
        return None
    return mpp if mpp is not None and math.isfinite(mpp) and mpp > 0 else None


def _choose_level(slide, path: Path, level: int | None, target_mpp: float | None) -> tuple[int, float | None]:
    mpp0 = _level_mpp(slide)
    downsamples = slide.level_downsamples
    if target_mpp is not None:
        if mpp0 is None:
            raise DataValidationError(
                f"{path}: the slide does not record its resolution (no 'openslide.mpp-x' property), so a level "
                f"cannot be chosen for {target_mpp} microns per pixel. Choose the level explicitly (--level N)."
            )
        # Closest on a log scale: 0.25 and 1.0 are equally far from 0.5.
        level = min(range(len(downsamples)), key=lambda i: abs(math.log(mpp0 * downsamples[i] / target_mpp)))
    elif level is None:
        level = 0
    elif level >= slide.level_count:
        raise DataValidationError(
            f"{path}: level {level} does not exist; this slide has levels 0..{slide.level_count - 1} "
            f"(downsamples {', '.join(f'{d:g}' for d in downsamples)})."
        )
    return level, (mpp0 * downsamples[level] if mpp0 is not None else None)


def _thumbnail_mask(slide, path: Path, tile_extent0: float) -> tuple[np.ndarray, float, float]:
    """Tissue mask on a thumbnail, with its scale (level-0 pixels per mask pixel) along x and y."""
    width0, height0 = slide.dimensions
    longest = max(width0, height0)
    downsample = min(max(tile_extent0 / 8, longest / _MASK_MAX_SIDE), max(longest / _MASK_MIN_SIDE, 1.0))
    downsample = max(downsample, 1.0)
    source = slide.get_best_level_for_downsample(downsample)
    source_width, source_height = slide.level_dimensions[source]
    if source_width * source_height > _THUMBNAIL_SOURCE_MAX_PIXELS:
        raise DataValidationError(
            f"{path}: no low-resolution pyramid level to build the tissue mask from (the smallest usable level is "
            f"{source_width}x{source_height} px). medai does not read a slide whole at full resolution; convert it "
            "to a pyramidal tiled TIFF (e.g. `vips tiffsave in out.tif --tile --pyramid`)."
        )
    size = (max(1, round(width0 / downsample)), max(1, round(height0 / downsample)))
    try:
        thumbnail = slide.get_thumbnail(size).convert("RGB")
    except (_openslide().OpenSlideError, OSError, ValueError) as exc:
        raise DataValidationError(f"{path}: corrupt image data in the low-resolution level ({exc}).") from None
    mask = tissue_mask(np.asarray(thumbnail))
    return mask, width0 / mask.shape[1], height0 / mask.shape[0]


def _grid_fractions(mask: np.ndarray, xs0: np.ndarray, ys0: np.ndarray, extent0: float, scale_x: float,
                    scale_y: float) -> np.ndarray:
    """Tissue fraction of every grid tile ``(len(ys0), len(xs0))`` from a summed-area table of the mask."""
    table = np.zeros((mask.shape[0] + 1, mask.shape[1] + 1), dtype=np.int64)
    table[1:, 1:] = mask.astype(np.int64).cumsum(0).cumsum(1)

    def span(starts: np.ndarray, scale: float, limit: int) -> tuple[np.ndarray, np.ndarray]:
        first = np.clip(np.round(starts / scale).astype(np.int64), 0, limit - 1)
        last = np.clip(np.round((starts + extent0) / scale).astype(np.int64), first + 1, limit)
        return first, last

    c0, c1 = span(xs0, scale_x, mask.shape[1])
    r0, r1 = span(ys0, scale_y, mask.shape[0])
    inside = (table[r1][:, c1] - table[r0][:, c1] - table[r1][:, c0] + table[r0][:, c0]).astype(np.float64)
    return inside / ((r1 - r0)[:, None] * (c1 - c0)[None, :])


def _background_rgb(slide) -> np.ndarray:
    value = slide.properties.get("openslide.background-color") or "FFFFFF"
    try:
        return np.array([int(value[i : i + 2], 16) for i in (0, 2, 4)], dtype=np.float64)
    except ValueError:
        return np.full(3, 255.0)


def _iter_slide_tiles(path: str | Path, *, tile_size: int, level: int | None, target_mpp: float | None,
                      tissue_fraction: float, max_tiles: int | None, seed: int, owner: str) -> Iterator[Record]:
    _check_options(owner, tile_size, level, target_mpp, tissue_fraction, max_tiles)
    path = Path(path)
    if not path.is_file():
        raise InvalidParameterError(f"Slide file not found: {path}.")
    slide = _open_slide(path)
    try:
        level, mpp = _choose_level(slide, path, level, target_mpp)
        downsample = float(slide.level_downsamples[level])
        level_width, level_height = slide.level_dimensions[level]
        if level_width < tile_size or level_height < tile_size:
            raise DataValidationError(
                f"{path}: level {level} is {level_width}x{level_height} px, smaller than one {tile_size}-px tile. "
                "Choose a lower level (finer resolution) or a smaller tile size."
            )
        # Whole tiles only: the partial tiles at the right and bottom edges are dropped.
        xs0 = np.round(np.arange(0, level_width - tile_size + 1, tile_size) * downsample).astype(np.int64)
        ys0 = np.round(np.arange(0, level_height - tile_size + 1, tile_size) * downsample).astype(np.int64)
        extent0 = tile_size * downsample
        mask, scale_x, scale_y = _thumbnail_mask(slide, path, extent0)
        fractions = _grid_fractions(mask, xs0, ys0, extent0, scale_x, scale_y)
        rows, cols = np.nonzero(fractions >= tissue_fraction)  # row-major: tiles come in reading order
        if max_tiles is not None and len(rows) > max_tiles:
            keep = np.sort(np.random.default_rng(seed).choice(len(rows), size=max_tiles, replace=False))
            rows, cols = rows[keep], cols[keep]
        background = _background_rgb(slide)
        read_errors = (_openslide().OpenSlideError, OSError, ValueError)
        for row, col in zip(rows.tolist(), cols.tolist()):
            x, y = int(xs0[col]), int(ys0[row])
            try:
                region = np.asarray(slide.read_region((x, y), level, (tile_size, tile_size)))
            except read_errors as exc:  # OpenSlide latches the error: the slide is unusable from here
                raise DataValidationError(
                    f"{path}: corrupt tile data at level {level}, x={x}, y={y} ({str(exc)[:160]})."
                ) from None
            rgb, alpha = region[..., :3].astype(np.float64), region[..., 3:4] / 255.0
            if (alpha < 1).any():  # outside the scanned area: show the slide's background, not black
                rgb = rgb * alpha + background * (1 - alpha)
            data = np.ascontiguousarray(np.clip(np.round(rgb), 0, 255).astype(np.uint8).transpose(2, 0, 1))
            yield Record(
                id=f"{path.stem}:x{x}_y{y}",
                modality=Modality.IMAGE,
                data=data,
                meta={"source": str(path), "level": level, "downsample": downsample, "mpp": mpp, "x": x, "y": y,
                      "tile_size": tile_size, "tissue_fraction": round(float(fractions[row, col]), 4)},
            )
    finally:
        slide.close()


def read_slide_tiles(
    path: str | Path,
    *,
    tile_size: int = 224,
    level: int | None = None,
    target_mpp: float | None = None,
    tissue_fraction: float = 0.5,
    max_tiles: int | None = None,
    seed: int = 0,
) -> list[Record]:
    """Read the tissue tiles of one whole-slide image.

    The level's pixel grid is cut into non-overlapping ``tile_size`` squares (partial tiles at the right and
    bottom edges are dropped). A tissue mask (:func:`tissue_mask`) is computed on a thumbnail of at most 4096 px
    per side, read from a low-resolution pyramid level; a tile is kept when the mask covers at least
    ``tissue_fraction`` of it. Only kept tiles are read at the chosen level.

    All returned tiles are held in memory (``tile_size=224``: 150 kB each); for whole cohorts use
    :func:`tile_slides`, which streams them to disk, or cap the count with ``max_tiles``.

    Args:
        path: a slide OpenSlide reads (.svs, .ndpi, .mrxs, .scn, .tiff, generic tiled TIFF, ...).
        tile_size: tile side in pixels at the chosen level (>= 16).
        level: pyramid level to read (0 = full resolution). Default: 0, unless ``target_mpp`` is given.
        target_mpp: microns per pixel wanted; the level whose resolution is closest (on a log scale) is read as
            it is, without resampling. Needs the slide's ``openslide.mpp-x`` property.
        tissue_fraction: minimum fraction of tissue in a kept tile, in [0, 1] (0 keeps every tile).
        max_tiles: keep at most this many tissue tiles, drawn uniformly without replacement with ``seed``
            (the same seed and slide give the same tiles), returned in reading order.
        seed: seed of the ``max_tiles`` draw.

    Returns:
        ``Modality.IMAGE`` records in reading order (row by row), ``data`` uint8 ``(3, tile_size, tile_size)``
        RGB (transparent areas outside the scan filled with the slide's background colour), ``id``
        ``"<slide stem>:x<X>_y<Y>"`` with level-0 coordinates of the top-left corner, ``patient_id`` and
        ``label`` None. ``meta``: ``source``, ``level``, ``downsample``, ``mpp`` (microns per pixel at that
        level, None when the slide does not record it), ``x``, ``y`` (level 0), ``tile_size``,
        ``tissue_fraction``. An empty list when no tile has enough tissue.

    Raises:
        MissingDependencyError: OpenSlide is not installed.
        InvalidParameterError: the file does not exist, or an option is out of range (or both ``level`` and
            ``target_mpp`` given).
        DataValidationError: not a slide OpenSlide reads, or corrupt (names the file); the level does not exist
            or is smaller than one tile; ``target_mpp`` on a slide that records no resolution; no
            low-resolution level to build the mask from.
    """
    return list(_iter_slide_tiles(path, tile_size=tile_size, level=level, target_mpp=target_mpp,
                                  tissue_fraction=tissue_fraction, max_tiles=max_tiles, seed=seed,
                                  owner="read_slide_tiles"))


def _read_slides_csv(slides_csv: Path) -> list[dict[str, Any]]:
    """Validate the slide list before anything is written; rows carry their CSV row number (header = row 1)."""
    from medai.io.tabular import read_table

    frame = read_table(slides_csv)
    missing = [c for c in _SLIDES_COLUMNS if c not in frame.columns]
    if missing:
        raise DataValidationError(
            f"{slides_csv}: missing columns {missing}. Found {list(frame.columns)}; expected "
            "slide_path,label[,patient_id]."
        )
    has_patient = "patient_id" in frame.columns
    rows, stems = [], {}
    for row_number, row in enumerate(frame.to_dict("records"), start=2):
        raw_path, label = row["slide_path"], row["label"]
        if not isinstance(raw_path, str) or not raw_path.strip():
            raise DataValidationError(f"{slides_csv}: row {row_number} has an empty 'slide_path'.")
        label = label.item() if isinstance(label, np.generic) else label
        if label is None or (isinstance(label, float) and math.isnan(label)):
            raise DataValidationError(f"{slides_csv}: row {row_number} ({raw_path}) has an empty 'label'.")
        path = Path(raw_path.strip())
        path = path if path.is_absolute() else slides_csv.parent / path
        slide_id = path.stem
        if slide_id in stems:
            raise DataValidationError(
                f"{slides_csv}: rows {stems[slide_id]} and {row_number} are both slide '{slide_id}'; tile folders "
                "and tile ids are named after the slide file name, so each must be unique. Rename one file."
            )
        stems[slide_id] = row_number
        if has_patient:
            patient = _id_string(row["patient_id"])
            if patient is None:  # a default here could put one patient's slides in two splits
                raise DataValidationError(
                    f"{slides_csv}: row {row_number} ({raw_path}) has an empty 'patient_id'. Fill it, or drop the "
                    "column to use each slide as its own patient."
                )
        else:
            patient = slide_id
        rows.append({"row": row_number, "path": path, "slide": slide_id, "label": label, "patient_id": patient})
    return rows


def tile_slides(
    slides_csv: str | Path,
    out_dir: str | Path,
    *,
    tile_size: int = 224,
    level: int | None = None,
    target_mpp: float | None = None,
    tissue_fraction: float = 0.5,
    max_tiles: int | None = None,
    seed: int = 0,
    on_invalid: str = OnInvalid.RAISE,
    progress: bool = True,
) -> Path:
    """Tile every slide listed in a CSV into PNG files and a manifest for image training.

    The CSV has columns ``slide_path,label[,patient_id]``; relative slide paths are resolved from the CSV's
    folder. Without a ``patient_id`` column each slide is its own patient (its file stem), so a patient-level
    split keeps all tiles of a slide together; with it, all tiles of a patient's slides stay together.

    Output (written into ``OUT.partial`` and renamed to ``OUT`` only when complete; nothing is left behind on
    error):

    - ``OUT/<slide stem>/<slide stem>_x<X>_y<Y>.png``: the tiles (level-0 coordinates, see
      :func:`read_slide_tiles`);
    - ``OUT/manifest.csv``: ``path,label,patient_id,slide`` with paths relative to ``OUT``, read by
      :func:`medai.io.images.read_manifest` and ``medai train --data OUT/manifest.csv``;
    - ``OUT/tiling.json``: the options, the tile count per slide and every skipped slide with the reason.

    Args:
        slides_csv: the slide list.
        out_dir: output folder; must not exist.
        tile_size, level, target_mpp, tissue_fraction, max_tiles, seed: as in :func:`read_slide_tiles`
            (``max_tiles`` is per slide).
        on_invalid: "raise" (default) or "skip" a slide that is missing, unreadable, or yields no tissue tile
            (skipped slides are listed in ``tiling.json``).
        progress: show a progress bar (on standard error).

    Returns:
        ``out_dir``.

    Raises:
        InvalidParameterError: bad options, or the CSV does not exist.
        RunStateError: ``out_dir`` or ``out_dir.partial`` already exists.
        DataValidationError: missing columns, an empty label/path/patient id, two slides with the same file stem
            (all named by CSV row); a missing or unreadable slide, or one without tissue tiles (names the file
            and row, unless skipped); no tiles at all.
    """
    owner = "tile_slides"
    policy = _check_on_invalid(on_invalid, owner)
    _check_options(owner, tile_size, level, target_mpp, tissue_fraction, max_tiles)
    slides_csv, out_dir = Path(slides_csv), Path(out_dir)
    work = partial_path(out_dir)
    if out_dir.exists():
        raise RunStateError(f"Output directory {out_dir} already exists; tiles are never overwritten. Choose another "
                            "output folder.")
    if work.exists():
        raise RunStateError(f"{work} is left from an interrupted tiling; delete it to start again.")
    rows = _read_slides_csv(slides_csv)
    _openslide()  # a missing library is one error, not one skipped slide per row
    work.mkdir(parents=True)
    try:
        manifest, per_slide, skipped = _tile_rows(rows, slides_csv, work, policy, progress, dict(
            tile_size=tile_size, level=level, target_mpp=target_mpp, tissue_fraction=tissue_fraction,
            max_tiles=max_tiles, seed=seed))
        if not manifest:
            raise DataValidationError(f"{slides_csv}: no tiles written ({len(skipped)} of {len(rows)} slides "
                                      "skipped; see the reasons above).")
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")  # quotes labels that contain commas
        writer.writerow(["path", "label", "patient_id", "slide"])
        writer.writerows(manifest)
        write_text(work / "manifest.csv", buffer.getvalue())
        summary = {
            "slides_csv": str(slides_csv),
            "options": {"tile_size": tile_size, "level": level, "target_mpp": target_mpp,
                        "tissue_fraction": tissue_fraction, "max_tiles": max_tiles, "seed": seed},
            "n_slides": len(rows),
            "n_tiles": len(manifest),
            "tiles_per_slide": per_slide,
            "skipped": skipped,
        }
        write_text(work / "tiling.json", json.dumps(summary, indent=2) + "\n")
        finish_run_directory(work, out_dir)
    except BaseException:
        remove_tree(work)
        raise
    return out_dir


def _tile_rows(rows, slides_csv: Path, work: Path, policy: OnInvalid, progress: bool, options: dict):
    from PIL import Image
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    manifest, per_slide, skipped = [], {}, []
    bar = Progress(TextColumn("tiling {task.description}"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn(), console=Console(stderr=True), transient=True, disable=not progress)
    with bar:
        task = bar.add_task("", total=len(rows))
        for row in rows:
            path, slide_id = row["path"], row["slide"]
            bar.update(task, description=path.name)  # the file name only: never the patient id
            folder = work / slide_id
            kept_before = len(manifest)
            try:
                if not path.is_file():
                    raise DataValidationError(f"{path}: slide file not found.")
                folder.mkdir()
                count = 0
                for record in _iter_slide_tiles(path, owner="tile_slides", **options):
                    name = f"{slide_id}_x{record.meta['x']}_y{record.meta['y']}.png"
                    Image.fromarray(record.data.transpose(1, 2, 0)).save(folder / name, compress_level=3)
                    manifest.append((f"{slide_id}/{name}", row["label"], row["patient_id"], slide_id))
                    count += 1
                if count == 0:
                    raise DataValidationError(
                        f"{path}: no tile has at least {options['tissue_fraction']:g} tissue. Check the slide, or "
                        "lower the tissue fraction."
                    )
            except DataValidationError as exc:
                remove_tree(folder)
                del manifest[kept_before:]  # nothing is kept from a slide that failed part-way
                message = f"{slides_csv}: row {row['row']}: {exc}"
                if policy == OnInvalid.RAISE:
                    raise DataValidationError(message) from None
                skipped.append({"row": row["row"], "slide": str(path), "reason": str(exc)})
                bar.advance(task)
                continue
            per_slide[slide_id] = count
            bar.advance(task)
    return manifest, per_slide, skipped

