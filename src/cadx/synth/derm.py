"""Write a synthetic dermoscopy data set in the ISIC 2019 training layout.

::

    OUT/ISIC_2019_Training_Input/ISIC_0000000.jpg      RGB JPEG photographs
    OUT/ISIC_2019_Training_GroundTruth.csv             image,MEL,NV,BCC,AK,BKL,DF,VASC,SCC,UNK (1.0/0.0)
    OUT/ISIC_2019_Training_Metadata.csv                image,age_approx,anatom_site_general,lesion_id,sex

Lesions are drawn by :mod:`cadx.synth.derm_render`: melanoma (MEL), naevi (NV) and basal cell
carcinoma (BCC) with their textbook dermoscopic features, each at a random strength, with atypical
naevi, lightly pigmented and amelanotic melanomas, pink dermal naevi and pigmented BCCs, so the
classes overlap as they do in practice. Some lesions are photographed twice (same ``lesion_id``,
another rotation, scale, position, light, vignette, hairs): a split must keep them on one side.

Everything follows from ``seed``: the same arguments give the same files, byte for byte.
"""

from __future__ import annotations

import csv
import logging
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cadx.errors import ConfigError
from cadx.io.atomic import atomic_path, prepare_output_folder
from cadx.synth.derm_render import SPAN, LesionLayer, View, draw_lesion, render_view

log = logging.getLogger(__name__)

#: The ISIC 2019 ground-truth columns, in the file's order (UNK: none of the others).
ISIC_CLASSES = ("MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC", "UNK")
#: Classes :func:`generate_derm` can draw.
SYNTH_CLASSES = ("MEL", "NV", "BCC")
#: Folder and file names of the ISIC 2019 training set.
IMAGE_DIR = "ISIC_2019_Training_Input"
GROUND_TRUTH_CSV = "ISIC_2019_Training_GroundTruth.csv"
METADATA_CSV = "ISIC_2019_Training_Metadata.csv"
METADATA_COLUMNS = ("image", "age_approx", "anatom_site_general", "lesion_id", "sex")

_SITES = {
    "NV": (("anterior torso", 3), ("posterior torso", 4), ("upper extremity", 2), ("lower extremity", 2)),
    "MEL": (("posterior torso", 4), ("lower extremity", 3), ("upper extremity", 2), ("anterior torso", 2),
            ("head/neck", 2)),
    "BCC": (("head/neck", 6), ("anterior torso", 2), ("posterior torso", 2), ("upper extremity", 1)),
}
_AGE = {"NV": (42, 15), "MEL": (62, 14), "BCC": (68, 12)}  # mean, sd in years
#: Lesion mean radius per look, as a fraction of the picture's short side (melanomas are larger).
_RADIUS = {"naevus": (0.13, 0.27), "atypical": (0.14, 0.30), "melanoma": (0.16, 0.33), "dermal": (0.12, 0.25),
           "amelanotic": (0.14, 0.30), "bcc": (0.12, 0.27), "pigmented_bcc": (0.12, 0.27)}
_LIGHT_SKIN = np.array([0.94, 0.78, 0.70], np.float32)
_DARK_SKIN = np.array([0.70, 0.50, 0.38], np.float32)


@dataclass(frozen=True)
class DermRecord:
    """One synthetic photograph and the truth behind it.

    Attributes
    ----------
    image : str
        ISIC-style id, ``ISIC_<7 digits>`` (file ``<image>.jpg``).
    diagnosis : str
        ``"MEL"``, ``"NV"`` or ``"BCC"``.
    lesion_id : str
        ``HAM_<7 digits>``; shared by the photographs of one lesion.
    view : int
        0 for the first photograph of the lesion, 1 for the second.
    path : Path
        The JPEG file.
    variant : str
        ``"typical"``, ``"atypical"`` / ``"dermal"`` (NV), ``"light"`` / ``"amelanotic"`` (MEL),
        ``"pigmented"`` (BCC).
    look : str
        How it is drawn, one of :data:`cadx.synth.derm_render.LOOKS` (atypical naevi and light
        melanomas share ``"atypical"``).
    strength : float
        0..1: how strongly the look's features show.
    age_approx : float or None
    anatom_site_general : str
        Empty when not recorded.
    sex : str
        ``"male"``, ``"female"`` or empty.
    """

    image: str
    diagnosis: str
    lesion_id: str
    view: int
    path: Path
    variant: str
    look: str
    strength: float
    age_approx: float | None
    anatom_site_general: str
    sex: str


@dataclass(frozen=True)
class _Lesion:
    index: int
    diagnosis: str
    variant: str
    look: str
    strength: float
    radius_frac: float
    skin_rgb: np.ndarray
    age_approx: float | None
    site: str
    sex: str


def generate_derm(
    out_dir: str | Path,
    *,
    n: int = 100,
    seed: int = 0,
    classes: Sequence[str] = SYNTH_CLASSES,
    size_px: int = 320,
    revisit_fraction: float = 0.2,
    atypical_fraction: float = 0.2,
    first_id: int = 0,
) -> list[DermRecord]:
    """Write ``n`` synthetic dermoscopy photographs and the two ISIC 2019 CSV files.

    Parameters
    ----------
    out_dir : str or Path
        Output folder (created; files of the same names are replaced).
    n : int
        Photographs, >= 1. Classes get equal numbers of lesions (to within one).
    seed : int
        >= 0; the same arguments give the same files.
    classes : sequence of str
        A subset of :data:`SYNTH_CLASSES`. The ground-truth file always has all nine ISIC columns.
    size_px : int
        Picture width, >= 64. Pictures with a dermoscope's round vignette (about half) are square,
        the others 4:3 landscape (as HAM10000's 600 x 450).
    revisit_fraction : float
        0..1: fraction of lesions photographed twice.
    atypical_fraction : float
        0..1: fraction of naevi drawn atypical and of melanomas drawn lightly pigmented (the cases
        that make the task hard).
    first_id : int
        Image and lesion numbers start here (``ISIC_<first_id + k>``, ``HAM_<first_id + k>``), so
        two generated sets can hold different lesions (a held-out test set).

    Returns
    -------
    list of DermRecord
        Sorted by image id.

    Raises
    ------
    ConfigError
        A class that cannot be drawn, or an option out of range.
    OutputPathError
        ``out_dir`` is a file or cannot be created.

    Examples
    --------
    >>> import tempfile
    >>> records = generate_derm(tempfile.mkdtemp(), n=4, seed=1, size_px=96)
    >>> [r.image for r in records]
    ['ISIC_0000000', 'ISIC_0000001', 'ISIC_0000002', 'ISIC_0000003']
    >>> sorted({r.diagnosis for r in records})
    ['BCC', 'MEL', 'NV']
    """
    classes = _check_options(n=n, seed=seed, classes=classes, size_px=size_px, revisit_fraction=revisit_fraction,
                             atypical_fraction=atypical_fraction)
    if not 0 <= int(first_id) <= 10**7 - n:
        raise ConfigError(f"first_id: expected 0..{10**7 - n} (7-digit ids), got {first_id}")
    out = prepare_output_folder(out_dir)
    master = np.random.default_rng((seed, 0))
    n_lesions = min(n, max(1, math.ceil(n / (1 + revisit_fraction))))
    labels = master.permutation(np.resize(np.array(classes), n_lesions))
    lesions = [_plan_lesion(i, str(dx), seed, atypical_fraction) for i, dx in enumerate(labels)]
    revisited = [int(i) for i in master.choice(n_lesions, size=n - n_lesions, replace=False)]
    shots = [(i, 0) for i in range(n_lesions)] + [(i, 1) for i in revisited]
    remaining = Counter(index for index, _ in shots)
    order = master.permutation(len(shots))
    lesion_ids = master.permutation(n_lesions)  # unrelated to the order of the images

    records: list[DermRecord] = []
    layers: dict[int, LesionLayer] = {}
    for number, k in enumerate(order):
        index, view_index = shots[k]
        lesion = lesions[index]
        image = f"ISIC_{first_id + number:07d}"
        view_rng = np.random.default_rng((seed, 2, index, view_index))
        view = _plan_view(lesion, view_rng, size_px=size_px, first=view_index == 0)
        if index not in layers:
            raster = int(np.clip(2 * SPAN * lesion.radius_frac * size_px, 64, 2 * size_px))
            layers[index] = draw_lesion(lesion.look, np.random.default_rng((seed, 1, index)), size_px=raster,
                                        strength=lesion.strength)
        pixels = render_view(layers[index], view, view_rng, skin_rgb=lesion.skin_rgb)
        remaining[index] -= 1
        if remaining[index] == 0:
            del layers[index]  # each lesion is drawn once; freed after its last photograph
        path = out / IMAGE_DIR / f"{image}.jpg"
        _write_jpeg(path, pixels, quality=int(view_rng.integers(85, 96)))
        records.append(DermRecord(
            image=image, diagnosis=lesion.diagnosis, lesion_id=f"HAM_{first_id + int(lesion_ids[index]):07d}",
            view=view_index, path=path, variant=lesion.variant, look=lesion.look, strength=round(lesion.strength, 4),
            age_approx=lesion.age_approx, anatom_site_general=lesion.site, sex=lesion.sex,
        ))
    _write_ground_truth(out / GROUND_TRUTH_CSV, records)
    _write_metadata(out / METADATA_CSV, records)
    log.info("wrote %d synthetic dermoscopy images (%d lesions) to %s", len(records), n_lesions, out)
    return records


def _check_options(*, n, seed, classes, size_px, revisit_fraction, atypical_fraction) -> tuple[str, ...]:
    if isinstance(classes, str):
        classes = [c for c in classes.split(",") if c.strip()]
    chosen = tuple(str(c).strip().upper() for c in classes)
    unknown = [c for c in chosen if c not in SYNTH_CLASSES]
    if unknown:
        known = "an ISIC class the synthetic generator does not draw" if all(c in ISIC_CLASSES for c in unknown) \
            else "not an ISIC 2019 class"
        raise ConfigError(f"classes: {', '.join(unknown)}: {known}; choose from {', '.join(SYNTH_CLASSES)}")
    if not chosen or len(set(chosen)) != len(chosen):
        raise ConfigError(f"classes: expected distinct names from {', '.join(SYNTH_CLASSES)}, got {list(classes)}")
    if int(n) < 1:
        raise ConfigError(f"n: expected at least 1 image, got {n}")
    if int(seed) < 0:
        raise ConfigError(f"seed: expected an integer >= 0, got {seed}")
    if int(size_px) < 64:
        raise ConfigError(f"size_px: expected at least 64, got {size_px}")
    for name, value in (("revisit_fraction", revisit_fraction), ("atypical_fraction", atypical_fraction)):
        if not 0.0 <= float(value) <= 1.0:
            raise ConfigError(f"{name}: expected a number in [0, 1], got {value}")
    return chosen


def _plan_lesion(index: int, diagnosis: str, seed: int, atypical_fraction: float) -> _Lesion:
    """Class variant, strength, size, skin and metadata of one lesion (its own random stream)."""
    rng = np.random.default_rng((seed, 3, index))
    u = rng.random()
    if diagnosis == "NV":
        variant = "atypical" if u < atypical_fraction else "dermal" if u < atypical_fraction + 0.12 else "typical"
        look = {"atypical": "atypical", "dermal": "dermal", "typical": "naevus"}[variant]
    elif diagnosis == "MEL":
        variant = "light" if u < atypical_fraction else "amelanotic" if u < atypical_fraction + 0.05 else "typical"
        look = {"light": "atypical", "amelanotic": "amelanotic", "typical": "melanoma"}[variant]
    else:
        variant = "pigmented" if u < 0.3 else "typical"
        look = "pigmented_bcc" if variant == "pigmented" else "bcc"
    # Atypical naevi and lightly pigmented melanomas share the look and its strength range.
    low, high = {"naevus": (0.0, 0.6), "atypical": (0.15, 0.55), "melanoma": (0.4, 1.0)}.get(look, (0.15, 1.0))
    strength = rng.uniform(low, high)
    radius = rng.uniform(*_RADIUS[look])
    tone = rng.beta(2, 3)
    mean, sd = _AGE[diagnosis]
    age = float(np.clip(5 * round(rng.normal(mean, sd) / 5), 5, 85)) if rng.random() > 0.02 else None
    names, weights = zip(*_SITES[diagnosis], strict=True)
    site = str(rng.choice(names, p=np.array(weights) / sum(weights))) if rng.random() > 0.05 else ""
    sex = ("male" if rng.random() < (0.55 if diagnosis != "NV" else 0.48) else "female") if rng.random() > 0.02 else ""
    return _Lesion(index, diagnosis, variant, look, float(strength), float(radius),
                   (_LIGHT_SKIN * (1 - tone) + _DARK_SKIN * tone).astype(np.float32), age, site, sex)


def _plan_view(lesion: _Lesion, rng: np.random.Generator, *, size_px: int, first: bool) -> View:
    """Where and how the lesion is photographed (a second photograph zooms, turns and shifts it)."""
    dermoscope = bool(rng.random() < 0.5)
    shape = (size_px, size_px) if dermoscope else (round(size_px * 0.75), size_px)
    side = min(shape)
    radius = lesion.radius_frac * side * (1.0 if first else rng.uniform(0.85, 1.15))
    centre = (shape[0] / 2 + rng.normal(0, 0.05) * side, shape[1] / 2 + rng.normal(0, 0.05) * side)
    return View(shape_hw=shape, centre_rc=centre, radius_px=radius, angle=float(rng.uniform(0, 2 * np.pi)),
                dermoscope=dermoscope)


def _write_jpeg(path: Path, pixels: np.ndarray, *, quality: int) -> None:
    from PIL import Image

    with atomic_path(path) as tmp:
        Image.fromarray(pixels).save(tmp, format="JPEG", quality=quality)


def _write_ground_truth(path: Path, records: list[DermRecord]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(("image",) + ISIC_CLASSES)
        for r in records:
            writer.writerow([r.image] + ["1.0" if c == r.diagnosis else "0.0" for c in ISIC_CLASSES])


def _write_metadata(path: Path, records: list[DermRecord]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(METADATA_COLUMNS)
        for r in records:
            age = "" if r.age_approx is None else f"{r.age_approx:.1f}"
            writer.writerow([r.image, age, r.anatom_site_general, r.lesion_id, r.sex])
