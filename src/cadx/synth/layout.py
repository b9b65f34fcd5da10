"""Random geometry of a synthetic CAMELYON-style slide: tissue, lesions, stain, artefacts.

Everything a renderer needs, drawn once from a seed; the pixels are then a pure function of the
layout and a level-0 position, so any level and any tile can be rendered independently.
Lengths are level-0 pixels unless the name says ``_um``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: CAMELYON16 Radboud scanner resolution.
CAMELYON_MPP = 0.243

#: Lesion size classes by largest diameter (um), as in the CAMELYON16/17 pN staging.
ITC_MAX_UM = 200.0
MICRO_MAX_UM = 2000.0

# Ruifrok & Johnston optical-density vectors, the reference H&E stains.
_H_OD = np.array([0.650, 0.704, 0.286])
_E_OD = np.array([0.072, 0.990, 0.105])


@dataclass(frozen=True)
class Lesion:
    """A tumour region: outline, non-tumour holes (ASAP ``_2``), size class."""

    outline_xy: np.ndarray
    holes_xy: tuple[np.ndarray, ...]
    diameter_um: float
    group: str = "_0"

    @property
    def size_class(self) -> str:
        """``ITC`` (< 200 um), ``Micro`` (< 2 mm) or ``Macro``."""
        if self.diameter_um < ITC_MAX_UM:
            return "ITC"
        return "Micro" if self.diameter_um < MICRO_MAX_UM else "Macro"


@dataclass(frozen=True)
class PenStroke:
    """A marker line on the glass: polyline vertices, width, optical density of the ink."""

    points_xy: np.ndarray
    width_px: float
    od_rgb: np.ndarray


@dataclass(frozen=True)
class Stain:
    """Per-slide stain: H and E optical-density vectors and concentrations."""

    h_od: np.ndarray
    e_od: np.ndarray
    h_scale: float
    e_scale: float
    glass_rgb: tuple[int, int, int]


@dataclass(frozen=True)
class SlideLayout:
    """Everything needed to render a synthetic slide at any level.

    Attributes
    ----------
    size_wh : (int, int)
        Level-0 size.
    mpp : float
        Level-0 microns per pixel.
    seed : int
    centre : str
        Staining centre ("A" or "B"), which sets the stain family.
    tissue_xy : tuple of ndarray
        Tissue section outlines.
    lesions : tuple of Lesion
        Empty for a normal slide.
    tumor_contrast : float
        0 makes tumour look like normal lymph node, 1 gives the full tumour appearance.
    """

    size_wh: tuple[int, int]
    mpp: float
    seed: int
    centre: str
    stain: Stain
    tissue_xy: tuple[np.ndarray, ...]
    lesions: tuple[Lesion, ...] = ()
    pens: tuple[PenStroke, ...] = ()
    border_px: int = 0
    blur_ellipses: tuple[tuple[float, float, float, float], ...] = ()
    blur_sigma_px: float = 6.0
    tumor_contrast: float = 0.6
    extras: dict[str, float] = field(default_factory=dict)

    @property
    def is_tumor(self) -> bool:
        return bool(self.lesions)

    def tumor_polygons(self) -> list[tuple[np.ndarray, int]]:
        """Lesion outlines (1) then holes (0), in paint order."""
        outs = [(les.outline_xy, 1) for les in self.lesions]
        holes = [(h, 0) for les in self.lesions for h in les.holes_xy]
        return outs + holes


def blob(
    rng: np.random.Generator,
    center_xy: tuple[float, float],
    radius_px: float,
    *,
    roughness: float = 0.15,
    aspect: float = 1.0,
    n_vertices: int = 96,
) -> np.ndarray:
    """A star-shaped random outline: radius modulated by a few low harmonics.

    Returns an (n_vertices, 2) float array of level-0 ``(x, y)``; every vertex lies within
    ``radius_px * (1 + roughness) * max(aspect, 1/aspect)`` of the centre.
    """
    theta = np.linspace(0, 2 * np.pi, n_vertices, endpoint=False)
    r = np.ones_like(theta)
    for k in range(2, 7):
        amp = roughness * rng.uniform(0.3, 1.0) / (k - 1)
        r += amp * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    r = np.clip(r, 0.35, None) * radius_px
    rot = rng.uniform(0, np.pi)
    x = r * np.cos(theta) * np.sqrt(aspect)
    y = r * np.sin(theta) / np.sqrt(aspect)
    xr = x * np.cos(rot) - y * np.sin(rot)
    yr = x * np.sin(rot) + y * np.cos(rot)
    return np.stack([xr + center_xy[0], yr + center_xy[1]], axis=1)


def make_stain(rng: np.random.Generator, centre: str) -> Stain:
    """Stain of one slide: centre B is bluer haematoxylin, more magenta eosin, darker overall."""
    h, e = _H_OD.copy(), _E_OD.copy()
    if centre == "B":
        h = h + np.array([0.10, 0.06, -0.06])
        e = e + np.array([0.08, -0.12, 0.10])
    h = h + rng.normal(0, 0.03, 3)
    e = e + rng.normal(0, 0.03, 3)
    h_scale = rng.uniform(0.85, 1.1) * (1.15 if centre == "B" else 1.0)
    e_scale = rng.uniform(0.8, 1.15) * (1.2 if centre == "B" else 1.0)
    glass = tuple(int(v) for v in rng.integers(236, 248, 3))
    return Stain(h_od=np.clip(h, 0.02, None), e_od=np.clip(e, 0.02, None), h_scale=h_scale, e_scale=e_scale,
                 glass_rgb=glass)  # type: ignore[arg-type]


def make_layout(
    *,
    size_wh: tuple[int, int],
    seed: int,
    tumor: bool,
    centre: str = "A",
    mpp: float = CAMELYON_MPP,
    tumor_contrast: float = 0.6,
    artefacts: bool = True,
    max_lesions: int = 4,
    max_lesion_um: float | None = None,
) -> SlideLayout:
    """Draw a slide layout.

    Parameters
    ----------
    size_wh : (int, int)
        Level-0 size in pixels.
    seed : int
        Everything (geometry, stain, texture) follows from it.
    tumor : bool
        Whether to place lesions.
    centre : {"A", "B"}
        Staining centre.
    tumor_contrast : float
        0..1, how different tumour looks from normal lymph node.
    artefacts : bool
        Add pen marks, a black scanner border and blurred patches (each with some probability).
    max_lesions : int
        Upper bound on lesions per tumour slide.
    max_lesion_um : float, optional
        Cap on lesion diameters: small micro-metastases make detection (and FROC) harder.

    Returns
    -------
    SlideLayout
    """
    rng = np.random.default_rng(seed)
    w, h = size_wh
    short = min(w, h)
    # Tissue: one to three lymph-node sections filling the slide's middle.
    n_pieces = int(rng.integers(1, 4)) if short >= 3000 else 1
    tissue = []
    centres = []
    for _ in range(n_pieces):
        radius = short * rng.uniform(0.22, 0.3) / (1.0 + 0.35 * (n_pieces - 1))
        for _ in range(200):
            cx = rng.uniform(radius * 1.35, w - radius * 1.35)
            cy = rng.uniform(radius * 1.35, h - radius * 1.35)
            # Separate sections: blobs reach 1.3 radii at most; keep a gap of glass between them.
            if all(np.hypot(cx - px, cy - py) > (radius + pr) * 1.4 for px, py, pr in centres):
                break
        else:
            if centres:  # no room for another separate section
                break
        centres.append((cx, cy, radius))
        tissue.append(blob(rng, (cx, cy), radius, roughness=0.18, aspect=rng.uniform(0.75, 1.33), n_vertices=160))
    n_pieces = len(tissue)

    lesions: list[Lesion] = []
    if tumor:
        n_les = int(rng.integers(1, max_lesions + 1))
        for i in range(n_les):
            piece = int(rng.integers(0, n_pieces))
            cx, cy, pr = centres[piece]
            inner = _inner_radius(tissue[piece], (cx, cy))
            # The first lesion is never an ITC, so every tumour slide has a scorable lesion.
            cls = rng.choice(["ITC", "Micro", "Macro"], p=[0.0, 0.55, 0.45] if i == 0 else [0.4, 0.4, 0.2])
            lo_um, hi_um = {"ITC": (60, 190), "Micro": (250, 1900), "Macro": (2100, 4000)}[cls]
            diameter_um = rng.uniform(lo_um, hi_um)
            if max_lesion_um is not None and diameter_um > max_lesion_um:
                diameter_um = rng.uniform(0.6 * max_lesion_um, max_lesion_um)
            max_diam_px = 1.2 * inner  # keep it inside the section
            radius_px = min(diameter_um / mpp / 2, max_diam_px / 2)
            dist = rng.uniform(0, max(inner - radius_px * 1.3, 0))
            ang = rng.uniform(0, 2 * np.pi)
            lc = (cx + dist * np.cos(ang), cy + dist * np.sin(ang))
            outline = blob(rng, lc, radius_px, roughness=0.3, aspect=rng.uniform(0.7, 1.4), n_vertices=64)
            d_um = _max_diameter(outline) * mpp
            if max_lesion_um is not None and d_um > max_lesion_um:  # shrink about the centre to the cap
                outline = (outline - np.asarray(lc)) * (max_lesion_um / d_um) + np.asarray(lc)
                d_um = _max_diameter(outline) * mpp
            holes: list[np.ndarray] = []
            if d_um > 800:
                for _ in range(int(rng.integers(1, 3))):
                    hr = radius_px * rng.uniform(0.1, 0.2)
                    ha = rng.uniform(0, 2 * np.pi)
                    hd = rng.uniform(0, 0.4) * radius_px
                    holes.append(blob(rng, (lc[0] + hd * np.cos(ha), lc[1] + hd * np.sin(ha)), hr,
                                      roughness=0.1, n_vertices=32))
            lesions.append(Lesion(outline, tuple(holes), d_um, group="_0" if i == 0 else str(rng.choice(["_0", "_1"]))))

    pens: list[PenStroke] = []
    border = 0
    blurs: list[tuple[float, float, float, float]] = []
    if artefacts:
        top = min(float(p[:, 1].min()) for p in tissue)
        width = max(8.0, 0.006 * short)
        if rng.random() < 0.5 and top > 0.03 * h + 4 * width:
            # Marker on the glass above the tissue (kept off it: tissue truth stays exact).
            colour = rng.choice(["green", "blue", "black"])
            od = {"green": np.array([1.4, 0.3, 1.2]), "blue": np.array([1.5, 0.9, 0.2]),
                  "black": np.array([2.2, 2.2, 2.2])}[colour]
            y_line = rng.uniform(0.015 * h + width, top - 0.015 * h - 2 * width)
            xs = np.linspace(0.15 * w, 0.85 * w, 24)
            ys = y_line + 0.01 * h * np.sin(np.linspace(0, rng.uniform(2, 5), 24))
            pens.append(PenStroke(np.stack([xs, ys], 1), width_px=width, od_rgb=od))
        if rng.random() < 0.4:
            border = int(max(8, 0.01 * short))
        if rng.random() < 0.4:
            cx, cy, pr = centres[int(rng.integers(0, n_pieces))]
            blurs.append((cx + rng.uniform(-0.4, 0.4) * pr, cy + rng.uniform(-0.4, 0.4) * pr,
                          0.25 * pr, 0.18 * pr))
    return SlideLayout(
        size_wh=(int(w), int(h)),
        mpp=float(mpp),
        seed=int(seed),
        centre=centre,
        stain=make_stain(rng, centre),
        tissue_xy=tuple(tissue),
        lesions=tuple(lesions),
        pens=tuple(pens),
        border_px=border,
        blur_ellipses=tuple(blurs),
        tumor_contrast=float(tumor_contrast),
    )


def _inner_radius(outline: np.ndarray, center_xy: tuple[float, float]) -> float:
    return float(np.hypot(outline[:, 0] - center_xy[0], outline[:, 1] - center_xy[1]).min())


def _max_diameter(outline: np.ndarray) -> float:
    d = outline[:, None, :] - outline[None, :, :]
    return float(np.sqrt((d**2).sum(-1)).max())
