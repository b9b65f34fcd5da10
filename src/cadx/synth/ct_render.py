"""Draw axial head-CT slices in Hounsfield units: a head phantom and intracranial haemorrhages.

A head is an ellipse (left-right half-axis ``a_mm``, anterior-posterior ``b_mm``) in a *normalised*
frame where the scalp surface is ``r = 1``; towards the vertex the outline shrinks (``r`` is divided
by :func:`outline_scale` of the slice's height ``t`` in 0..1, skull base to vertex). From outside in:
air (-1000 HU), scalp (soft tissue), skull (cortical tables ~1400 HU around diploe ~750 HU, thicker
at the occiput), a thin extra-axial CSF layer, cortex (grey matter) cut by sulci (CSF, partial
volume), white matter, and the lateral ventricles (CSF ~5 HU) in the middle slices.

Haemorrhages (:data:`SUBTYPES`, blood 50-90 HU) are drawn where they occur, each over a few
consecutive slices with a size envelope peaking at its centre slice:

- ``epidural``: a short, thick biconvex lens against the inner table of the skull;
- ``intraparenchymal``: an irregular blob in the brain with a rim of oedema (~20 HU);
- ``intraventricular``: blood settling in the dependent (posterior) part of a lateral ventricle;
- ``subarachnoid``: blood filling the sulci and the surface CSF over a sector of the brain;
- ``subdural``: a long, thin crescent along the inner table.

:func:`render_slice` returns the noise-free HU image and a tissue code map (:data:`TISSUES`, then
``BLEED_CODE0 + i`` for ``SUBTYPES[i]``) from which the labels and known-answer points follow.
Image rows run anterior to posterior, columns patient right to left (DICOM LPS, orientation
``1,0,0,0,1,0``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: RSNA 2019 subtypes in the order of the label file (``any`` is their OR).
SUBTYPES = ("epidural", "intraparenchymal", "intraventricular", "subarachnoid", "subdural")
#: Tissue codes of :func:`render_slice`'s code map, by name.
TISSUES = {"air": 0, "scalp": 1, "skull": 2, "csf": 3, "grey": 4, "white": 5, "ventricle": 6, "oedema": 7}
#: Code of ``SUBTYPES[0]`` in the code map; ``SUBTYPES[i]`` is ``BLEED_CODE0 + i``.
BLEED_CODE0 = 10

_SCALP = 0.05  # scalp thickness, normalised radius
_CSF_GAP = 0.012  # extra-axial CSF layer
_CSF_HU = 6.0
_VENT_HU = 4.0


@dataclass(frozen=True)
class Head:
    """One patient's head (the same in each of the patient's studies).

    Attributes
    ----------
    a_mm, b_mm : float
        Half-axes of the head outline at the skull base, left-right and anterior-posterior, mm.
    skull : float
        Skull thickness, normalised radius (fraction of the outline's half-axis).
    grey_hu, white_hu : float
        Grey and white matter attenuation, HU.
    sulci : int
        Number of sulcal periods around the brain (2 sulci each).
    phase : float
        Phase of the sulcal pattern, radians.
    """

    a_mm: float
    b_mm: float
    skull: float
    grey_hu: float
    white_hu: float
    sulci: int
    phase: float


@dataclass(frozen=True)
class Pose:
    """Where the head lies in a study's images: shift of its centre (mm) and rotation (radians)."""

    shift_mm: tuple[float, float]
    angle: float


@dataclass(frozen=True)
class Bleed:
    """One haemorrhage.

    Attributes
    ----------
    subtype : str
        One of :data:`SUBTYPES`.
    centre_slice : int
        Slice index (0 = lowest) where it is largest.
    half_span : int
        It shows on ``centre_slice +- half_span`` at most (an envelope ``sqrt(1 - (dk / (half_span + 1))^2)``
        scales its size; a slice where it covers no pixel is labelled negative).
    hu : float
        Blood attenuation, 50-90 HU.
    angle : float
        Direction from the head centre (radians, normalised frame; pi/2 is posterior).
    size : float
        Subtype-specific extent, normalised radius: lens/crescent depth, blob radius, fill fraction
        of the ventricle, sector half-width (radians) for subarachnoid blood.
    width : float
        Angular half-width of a lens or crescent (radians); radial position of a blob (0..1 of
        the brain); side of an intraventricular bleed (-1 or 1).
    shape : tuple of float
        Free shape parameters (outline harmonics of a blob).
    """

    subtype: str
    centre_slice: int
    half_span: int
    hu: float
    angle: float
    size: float
    width: float
    shape: tuple[float, ...] = ()

    def envelope(self, k: int) -> float:
        """Size factor on slice ``k`` (0 off the bleed's slices)."""
        dk = abs(k - self.centre_slice)
        if dk > self.half_span:
            return 0.0
        return float(np.sqrt(1.0 - (dk / (self.half_span + 1.0)) ** 2))


def outline_scale(t: float) -> float:
    """Head outline size at height ``t`` (0 = skull base, 1 = vertex), relative to the base."""
    return float(np.sqrt(max(1.0 - (0.9 * t) ** 2, 0.04)))


def ventricle_envelope(t: float) -> float:
    """Lateral ventricle size at height ``t`` (0 outside about 0.32..0.68)."""
    return float(max(0.0, 1.0 - ((t - 0.5) / 0.18) ** 2))


class StudyGrid:
    """Per-study pixel coordinates in the head's normalised frame (computed once, reused per slice).

    Parameters
    ----------
    head : Head
    pose : Pose
    size_px : int
        Image side, px.
    spacing_mm : float
        Pixel spacing, mm.
    """

    def __init__(self, head: Head, pose: Pose, *, size_px: int, spacing_mm: float) -> None:
        self.head, self.pose, self.size_px, self.spacing_mm = head, pose, size_px, spacing_mm
        centre = (size_px - 1) / 2.0
        coord = (np.arange(size_px, dtype=np.float32) - centre) * np.float32(spacing_mm)
        x = coord[None, :] - np.float32(pose.shift_mm[0])  # patient left, mm
        y = coord[:, None] - np.float32(pose.shift_mm[1])  # posterior, mm
        c, s = np.float32(np.cos(pose.angle)), np.float32(np.sin(pose.angle))
        self.xn = ((x * c + y * s) / np.float32(head.a_mm)).astype(np.float32)
        self.yn = ((y * c - x * s) / np.float32(head.b_mm)).astype(np.float32)
        self.r0 = np.hypot(self.xn, self.yn)
        self.theta = np.arctan2(self.yn, self.xn)
        # skull thicker at the occiput (theta = pi/2), thinner at the temples
        self.skull = (head.skull * (1.0 + 0.25 * np.sin(self.theta))).astype(np.float32)
        self.cortex = (0.055 + 0.015 * np.sin(3 * self.theta + head.phase)).astype(np.float32)
        self.fov = (coord[None, :] ** 2 + coord[:, None] ** 2) <= (centre * spacing_mm) ** 2


def render_slice(grid: StudyGrid, k: int, n_slices: int,
                 bleeds: tuple[Bleed, ...] = ()) -> tuple[np.ndarray, np.ndarray]:
    """Noise-free HU image and tissue code map of slice ``k`` of ``n_slices``.

    Parameters
    ----------
    grid : StudyGrid
    k : int
        Slice index, 0 = lowest (skull base).
    n_slices : int
        Slices in the study (the top one is near the vertex).
    bleeds : tuple of Bleed
        Haemorrhages of the study (each drawn where its envelope is non-zero; later ones on top).

    Returns
    -------
    hu : ndarray, (size_px, size_px) float32
        Hounsfield units; -1000 in air, also outside the field of view.
    codes : ndarray, (size_px, size_px) uint8
        :data:`TISSUES` codes, ``BLEED_CODE0 + i`` where ``SUBTYPES[i]`` blood is drawn.
    """
    head = grid.head
    t = k / max(n_slices - 1, 1)
    scale = outline_scale(t)
    r = grid.r0 * np.float32(1.0 / scale)
    r_in = np.float32(1.0 - _SCALP) - grid.skull
    depth = r_in - r  # > 0 inside the skull, normalised radius
    hu = np.full(r.shape, -1000.0, np.float32)
    codes = np.zeros(r.shape, np.uint8)

    scalp = (r <= 1.0) & (r > 1.0 - _SCALP)
    hu[scalp] = 25.0
    codes[scalp] = TISSUES["scalp"]
    bone = (depth <= 0) & (r <= 1.0 - _SCALP)
    u = np.clip(-depth[bone] / grid.skull[bone], 0.0, 1.0)
    hu[bone] = 750.0 + 650.0 * np.abs(2.0 * u - 1.0) ** 1.5
    codes[bone] = TISSUES["skull"]

    brain = depth > 0
    d = depth[brain]
    cortex = grid.cortex[brain]
    sulcal = np.abs(np.sin(head.sulci * grid.theta[brain] + 0.5 * np.sin(3 * grid.theta[brain] + head.phase)
                           + 0.6 * k + head.phase))
    w = np.clip(1.0 - sulcal / 0.3, 0.0, 1.0) * (d < _CSF_GAP + 0.85 * cortex)
    values = np.where(d < _CSF_GAP + cortex, head.grey_hu, head.white_hu).astype(np.float32)
    values = values * (1 - w) + _CSF_HU * w
    values[d < _CSF_GAP] = _CSF_HU
    tissue = np.where(d < _CSF_GAP + cortex, TISSUES["grey"], TISSUES["white"]).astype(np.uint8)
    tissue[(w > 0.5) | (d < _CSF_GAP)] = TISSUES["csf"]
    hu[brain] = values
    codes[brain] = tissue

    # normalised in-slice coordinates (internal structures shrink with the outline)
    X = grid.xn * np.float32(1.0 / scale)
    Y = grid.yn * np.float32(1.0 / scale)
    vent_env = ventricle_envelope(t)
    ventricles = []
    if vent_env > 0:
        for side in (-1.0, 1.0):
            vx, vy = _ventricle_frame(X, Y, side)
            ax, ay = 0.07 * np.sqrt(vent_env), 0.30 * np.sqrt(vent_env)
            mask = (vx / ax) ** 2 + (vy / ay) ** 2 < 1.0
            ventricles.append((side, mask, vy, ay))
            hu[mask] = _VENT_HU
            codes[mask] = TISSUES["ventricle"]

    for bleed in bleeds:
        env = bleed.envelope(k)
        if env <= 0:
            continue
        if bleed.subtype == "intraparenchymal":  # a rim of perihaematomal oedema
            ring = (_blob_radius(bleed, X, Y) < 1.4 * bleed.size * env) & (
                (codes == TISSUES["grey"]) | (codes == TISSUES["white"]))
            hu[ring] = 20.0
            codes[ring] = TISSUES["oedema"]
        mask = _bleed_mask(bleed, env, grid, X, Y, r, depth, w if bleed.subtype == "subarachnoid" else None,
                           brain, ventricles)
        if mask is None:
            continue
        hu[mask] = bleed.hu
        codes[mask] = BLEED_CODE0 + SUBTYPES.index(bleed.subtype)
    hu[~grid.fov] = -1000.0
    codes[~grid.fov] = TISSUES["air"]
    return hu, codes


def _ventricle_frame(X: np.ndarray, Y: np.ndarray, side: float) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates in one lateral ventricle's own frame (frontal horns converging to the midline)."""
    cx, cy, tilt = 0.12 * side, 0.0, -0.22 * side
    c, s = np.cos(tilt), np.sin(tilt)
    dx, dy = X - cx, Y - cy
    return dx * c + dy * s, dy * c - dx * s


def _blob_radius(bleed: Bleed, X: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """Distance from an intraparenchymal blob's centre over its irregular outline's relative radius."""
    rho = bleed.width * 0.6
    dx, dy = X - rho * np.cos(bleed.angle), Y - rho * np.sin(bleed.angle)
    phi = np.arctan2(dy, dx)
    h = bleed.shape
    return np.hypot(dx, dy) / (1.0 + h[0] * np.sin(3 * phi + h[1]) + h[2] * np.sin(5 * phi + h[3]))


def _angle_diff(theta: np.ndarray, angle: float) -> np.ndarray:
    return np.abs((theta - angle + np.pi) % (2 * np.pi) - np.pi)


def _bleed_mask(bleed: Bleed, env: float, grid: StudyGrid, X: np.ndarray, Y: np.ndarray, r: np.ndarray,
                depth: np.ndarray, sulcal_w: np.ndarray | None, brain: np.ndarray,
                ventricles: list) -> np.ndarray | None:
    """Boolean mask of one bleed on one slice (None where the slice has no room for it)."""
    if bleed.subtype in ("epidural", "subdural"):
        u = _angle_diff(grid.theta, bleed.angle) / bleed.width
        if bleed.subtype == "epidural":  # biconvex lens: parabolic profile, thick in the middle
            profile = np.clip(1.0 - u ** 2, 0.0, None)
        else:  # crescent: flat along the skull, tapering only at the ends
            profile = np.sqrt(np.clip(1.0 - u ** 4, 0.0, None))
        return (depth > 0) & (depth < bleed.size * env * profile)
    if bleed.subtype == "intraparenchymal":
        return brain & (_blob_radius(bleed, X, Y) < bleed.size * env)
    if bleed.subtype == "intraventricular":
        for side, mask, vy, ay in ventricles:
            if side == bleed.width:
                # dependent part: the posterior end of the ventricle, up to a fluid level
                return mask & (vy > ay * (1.0 - 2.0 * bleed.size * env))
        return None
    if bleed.subtype == "subarachnoid":
        sector = _angle_diff(grid.theta, bleed.angle) < bleed.size * env
        mask = np.zeros(r.shape, bool)
        mask[brain] = sector[brain] & ((sulcal_w > 0.5) | (depth[brain] < _CSF_GAP))
        return mask
    raise ValueError(f"unknown subtype {bleed.subtype!r}")
