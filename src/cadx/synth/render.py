"""Render H&E-like pixels of a :class:`~cadx.synth.layout.SlideLayout` at any position and level.

Stains are mixed in optical density (Beer-Lambert): ``RGB = 255 * exp(-(H * h_od + E * e_od))``,
so centre-to-centre stain differences look like real ones. Nuclei are placed on jittered
lattices by a coordinate hash (Worley-style), so the same nucleus appears at every level and in
every tile that sees it, and any region renders independently of the others.

- Normal lymph node: dense small round dark lymphocytes, density varying (follicles), pink stroma
  with sparse elongated fibroblast nuclei.
- Tumour (inside lesion outlines, outside ``_2`` holes): larger, crowded, darker, irregular
  nuclei with more cytoplasm; how different from normal is set by ``tumor_contrast``.
"""

from __future__ import annotations

import functools

import numpy as np

from cadx.preprocessing.masks import rasterize_polygons
from cadx.synth.layout import SlideLayout

_U64 = np.uint64


def _hash01(ix: np.ndarray, iy: np.ndarray, seed: int) -> np.ndarray:
    """Deterministic uniform [0, 1) values for integer lattice points (splitmix64-style)."""
    with np.errstate(over="ignore"):
        ix, iy = np.broadcast_arrays(np.asarray(ix, np.int64), np.asarray(iy, np.int64))
        h = ix.astype(_U64) * _U64(0x9E3779B97F4A7C15)
        h ^= iy.astype(_U64) * _U64(0xC2B2AE3D27D4EB4F)
        h ^= _U64((seed * 0x165667B19E3779F9) & 0xFFFFFFFFFFFFFFFF)
        h ^= h >> _U64(33)
        h *= _U64(0xFF51AFD7ED558CCD)
        h ^= h >> _U64(33)
        h *= _U64(0xC4CEB9FE1A85EC53)
        h ^= h >> _U64(33)
    return (h >> _U64(11)).astype(np.float64) * (1.0 / 2**53)


def value_noise(xs: np.ndarray, ys: np.ndarray, scale_px: float, seed: int) -> np.ndarray:
    """Smooth noise in [0, 1] on a lattice of spacing ``scale_px`` (level-0 px).

    ``xs`` (W,) and ``ys`` (H,) are level-0 pixel-centre coordinates; returns (H, W) float32.
    """
    gx, gy = xs / scale_px, ys / scale_px
    ix0, iy0 = np.floor(gx).astype(np.int64), np.floor(gy).astype(np.int64)
    fx, fy = gx - ix0, gy - iy0
    fx = fx * fx * (3 - 2 * fx)
    fy = fy * fy * (3 - 2 * fy)
    bx, by = ix0.min(), iy0.min()
    n_lattice = (ix0.max() - bx + 2) * (iy0.max() - by + 2)
    if n_lattice > 4 * len(xs) * len(ys):
        # Coarse sampling of fine noise (low pyramid levels): hash only the corners in use, so
        # memory stays bounded by the output size, not by the region's area in level-0 pixels.
        def corner(dx: int, dy: int) -> np.ndarray:
            return _hash01((ix0 + dx)[None, :], (iy0 + dy)[:, None], seed).astype(np.float32)

        v00, v01, v10, v11 = corner(0, 0), corner(1, 0), corner(0, 1), corner(1, 1)
    else:
        lx = np.arange(bx, ix0.max() + 2)
        ly = np.arange(by, iy0.max() + 2)
        lattice = _hash01(lx[None, :], ly[:, None], seed).astype(np.float32)
        cx, cy = ix0 - bx, iy0 - by
        v00 = lattice[cy[:, None], cx[None, :]]
        v01 = lattice[cy[:, None], cx[None, :] + 1]
        v10 = lattice[cy[:, None] + 1, cx[None, :]]
        v11 = lattice[cy[:, None] + 1, cx[None, :] + 1]
    fx32, fy32 = fx.astype(np.float32)[None, :], fy.astype(np.float32)[:, None]
    top = v00 + (v01 - v00) * fx32
    bottom = v10 + (v11 - v10) * fx32
    return top + (bottom - top) * fy32


def _nuclei(
    xs: np.ndarray,
    ys: np.ndarray,
    ds: float,
    *,
    cell_px: float,
    seed: int,
    presence: np.ndarray,
    radius_px: tuple[float, float],
    elongation: tuple[float, float],
    density_h: tuple[float, float],
    irregularity: np.ndarray | float = 0.0,
) -> np.ndarray:
    """Haematoxylin density of nuclei on one jittered lattice, (H, W) float32.

    ``presence`` (H, W) in [0, 1] is the chance a nucleus exists in the cell under each pixel
    (evaluated at the pixel, so lattices follow region boundaries). When nuclei are smaller than
    an output pixel, the expected density is returned instead (no aliasing at coarse levels).
    """
    r_mean = 0.5 * (radius_px[0] + radius_px[1])
    if ds > 1.2 * r_mean:
        area = np.pi * r_mean**2 / cell_px**2
        return (presence * min(area, 1.0) * 0.5 * (density_h[0] + density_h[1])).astype(np.float32)
    gx, gy = xs / cell_px, ys / cell_px
    ix, iy = np.floor(gx).astype(np.int64), np.floor(gy).astype(np.int64)
    bx, by = ix.min() - 1, iy.min() - 1
    lx = np.arange(bx, ix.max() + 2)
    ly = np.arange(by, iy.max() + 2)
    LX, LY = lx[None, :], ly[:, None]
    exists_u, off_x, off_y, rad_u, ang_u, h_u, el_u = (
        _hash01(LX, LY, seed * 8 + k).astype(np.float32) for k in range(7)
    )
    cx_all = ((LX + off_x) * cell_px).astype(np.float32)
    cy_all = ((LY + off_y) * cell_px).astype(np.float32)
    rad_all = (radius_px[0] + (radius_px[1] - radius_px[0]) * rad_u).astype(np.float32)
    el = (elongation[0] + (elongation[1] - elongation[0]) * el_u).astype(np.float32)
    ang = (ang_u * np.pi).astype(np.float32)
    cos_el, sin_el = np.cos(ang) / el, np.sin(ang) / el
    cos_el2, sin_el2 = cos_el * el * el, sin_el * el * el
    hden_all = (density_h[0] + (density_h[1] - density_h[0]) * h_u).astype(np.float32)
    xs32, ys32 = xs.astype(np.float32)[None, :], ys.astype(np.float32)[:, None]
    soft = np.float32(max(ds, 1.5))
    out = np.zeros((len(ys), len(xs)), np.float32)
    # Nuclei are at most half a cell in radius, so only the own cell and the three neighbours
    # towards the pixel's quadrant can cover it; the choice is separable by row and by column.
    col = ix - bx
    row = iy - by
    side_c = np.where(gx - ix < 0.5, -1, 1)
    side_r = np.where(gy - iy < 0.5, -1, 1)
    irr = 1.0 + irregularity if np.ndim(irregularity) else None
    for rsel in (row, row + side_r):
        for csel in (col, col + side_c):

            def take(a: np.ndarray, rsel: np.ndarray = rsel, csel: np.ndarray = csel) -> np.ndarray:
                return a.take(rsel, axis=0).take(csel, axis=1)

            exists = take(exists_u) < presence
            if not exists.any():
                continue
            ddx = xs32 - take(cx_all)
            ddy = ys32 - take(cy_all)
            u = ddx * take(cos_el) + ddy * take(sin_el)
            v = ddy * take(cos_el2) - ddx * take(sin_el2)
            dist = np.sqrt(u * u + v * v)
            rad = take(rad_all)
            if irr is not None:
                rad = rad * irr
            cov = np.clip((rad - dist) / soft + 0.5, 0.0, 1.0) * take(hden_all)
            cov[~exists] = 0.0
            np.maximum(out, cov, out=out)
    return out


def render_region(layout: SlideLayout, x0: int, y0: int, width: int, height: int, ds: float) -> np.ndarray:
    """RGB pixels of the region whose top-left is level-0 ``(x0, y0)``, one pixel per ``ds``.

    Returns
    -------
    ndarray of uint8, shape (height, width, 3)
    """
    blur_px = layout.blur_sigma_px / ds
    if layout.blur_ellipses and blur_px >= 0.7 and _touches_blur(layout, x0, y0, width, height, ds):
        m = int(np.ceil(3 * blur_px))
        big = _render(layout, x0 - m * ds, y0 - m * ds, width + 2 * m, height + 2 * m, ds)
        from scipy.ndimage import gaussian_filter

        blurred = gaussian_filter(big.astype(np.float32), sigma=(blur_px, blur_px, 0))
        xs = x0 - m * ds + (np.arange(width + 2 * m) + 0.5) * ds
        ys = y0 - m * ds + (np.arange(height + 2 * m) + 0.5) * ds
        inside = np.zeros(big.shape[:2], bool)
        for cx, cy, rx, ry in layout.blur_ellipses:
            inside |= ((xs[None, :] - cx) / rx) ** 2 + ((ys[:, None] - cy) / ry) ** 2 <= 1
        big = np.where(inside[:, :, None], blurred.round().clip(0, 255).astype(np.uint8), big)
        return big[m : m + height, m : m + width]
    return _render(layout, x0, y0, width, height, ds)


def _touches_blur(layout: SlideLayout, x0: float, y0: float, w: int, h: int, ds: float) -> bool:
    x1, y1 = x0 + w * ds, y0 + h * ds
    return any(cx + rx >= x0 and cx - rx <= x1 and cy + ry >= y0 and cy - ry <= y1
               for cx, cy, rx, ry in layout.blur_ellipses)


def _bbox_hits(polys: tuple[np.ndarray, ...] | list[np.ndarray], x0: float, y0: float, x1: float, y1: float) -> bool:
    return any(p[:, 0].max() >= x0 and p[:, 0].min() <= x1 and p[:, 1].max() >= y0 and p[:, 1].min() <= y1
               for p in polys)


def _render(layout: SlideLayout, x0: float, y0: float, width: int, height: int, ds: float) -> np.ndarray:
    seed = layout.seed
    xs = x0 + (np.arange(width) + 0.5) * ds
    ys = y0 + (np.arange(height) + 0.5) * ds
    x1, y1 = x0 + width * ds, y0 + height * ds
    glass = np.array(layout.stain.glass_rgb, np.float32)
    od = np.zeros((height, width, 3), np.float32)

    if _bbox_hits(layout.tissue_xy, x0, y0, x1, y1):
        tissue = rasterize_polygons([(p, 1) for p in layout.tissue_xy], (height, width),
                                    downsample=ds, origin_xy=(x0, y0)).astype(bool)
    else:
        tissue = np.zeros((height, width), bool)
    if tissue.any():
        tumor = np.zeros((height, width), np.float32)
        outlines = [les.outline_xy for les in layout.lesions]
        if outlines and _bbox_hits(outlines, x0, y0, x1, y1):
            tumor = rasterize_polygons(layout.tumor_polygons(), (height, width), downsample=ds,
                                       origin_xy=(x0, y0)).astype(np.float32)
            tumor *= tissue
        c = layout.tumor_contrast
        follicle = value_noise(xs, ys, 350.0, seed + 11)
        patch = value_noise(xs, ys, 90.0, seed + 12)
        fine = value_noise(xs, ys, 6.0, seed + 13)
        stroma = np.clip((patch - 0.62) * 4.0, 0, 1) * (1 - tumor)  # pink stroma/sinus islands

        # Germinal centres / histiocyte clusters: larger, paler nuclei in normal tissue, the classic
        # tumour mimic (false positives in CAMELYON16). Present on every slide, tumour or not.
        mimic = np.clip((value_noise(xs, ys, 260.0, seed + 14) - 0.68) * 6.0, 0, 1) * (1 - tumor) * (1 - stroma)
        lymph_p = (np.clip(0.35 + 0.55 * follicle, 0, 1) * (1 - 0.8 * stroma) * (1 - (0.3 + 0.6 * c) * tumor)
                   * (1 - 0.6 * mimic))
        h = _nuclei(xs, ys, ds, cell_px=22.0, seed=seed + 1, presence=lymph_p * tissue,
                    radius_px=(5.0, 7.5), elongation=(1.0, 1.15), density_h=(1.3, 1.9))
        fib_p = 0.5 * stroma * tissue
        h = np.maximum(h, _nuclei(xs, ys, ds, cell_px=40.0, seed=seed + 2, presence=fib_p,
                                  radius_px=(4.0, 6.0), elongation=(2.2, 3.2), density_h=(1.0, 1.5)))
        if mimic.any():
            h = np.maximum(h, _nuclei(xs, ys, ds, cell_px=34.0, seed=seed + 4, presence=0.55 * mimic,
                                      radius_px=(6.0, 10.0), elongation=(1.0, 1.3), density_h=(1.1, 1.6)))
        if tumor.any():
            r_lo, r_hi = 6.0 + 5.0 * c, 8.0 + 9.0 * c
            irregular = (fine - 0.5) * (0.2 + 0.5 * c)
            tum_h = _nuclei(xs, ys, ds, cell_px=34.0, seed=seed + 3, presence=(0.6 + 0.3 * c) * tumor,
                            radius_px=(r_lo, r_hi), elongation=(1.05, 1.1 + 0.5 * c),
                            density_h=(1.4 + 0.3 * c, 1.8 + 0.5 * c), irregularity=irregular)
            h = np.maximum(h, tum_h * (0.85 + 0.3 * fine))
        texture = 0.9 + 0.2 * fine
        eosin = (0.28 + 0.18 * patch + 0.25 * stroma + 0.12 * c * tumor) * texture
        hema = (0.10 + 0.05 * follicle) + h
        s = layout.stain
        od += tissue[:, :, None] * (hema[:, :, None] * s.h_scale * s.h_od + eosin[:, :, None] * s.e_scale * s.e_od)

    for pen in layout.pens:
        pad = pen.width_px
        if _bbox_hits([pen.points_xy], x0 - pad, y0 - pad, x1 + pad, y1 + pad):
            dist = _distance_to_polyline(xs, ys, pen.points_xy)
            ink = np.clip((pen.width_px / 2 - dist) / max(ds, 1.0) + 0.5, 0, 1)
            od += ink[:, :, None] * pen.od_rgb[None, None, :].astype(np.float32)

    rgb = glass[None, None, :] * np.exp(-od) + _sensor_noise(seed, int(x0), int(y0), height, width)
    if layout.border_px:
        b = layout.border_px
        w0, h0 = layout.size_wh
        edge = (xs[None, :] < b) | (xs[None, :] > w0 - b) | (ys[:, None] < b) | (ys[:, None] > h0 - b)
        rgb = np.where(edge[:, :, None], np.float32(12.0), rgb)
    return rgb.round().clip(0, 255).astype(np.uint8)


@functools.lru_cache(maxsize=4)
def _noise_bank(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 2.0, (1024, 1024, 1)).astype(np.float32)


def _sensor_noise(seed: int, x0: int, y0: int, height: int, width: int) -> np.ndarray:
    """Grey pixel noise (sd 2 levels) cut from a cached bank at a position hashed from the tile."""
    bank = _noise_bank(seed)
    if height > bank.shape[0] or width > bank.shape[1]:
        return np.random.default_rng([seed, x0 & 0x7FFFFFFF, y0 & 0x7FFFFFFF]).normal(
            0, 2.0, (height, width, 1)).astype(np.float32)
    u = _hash01(np.array([x0]), np.array([y0]), seed)[0]
    r = int(u * (bank.shape[0] - height + 1))
    c = int((u * 7919) % 1 * (bank.shape[1] - width + 1))
    return bank[r : r + height, c : c + width]


def _distance_to_polyline(xs: np.ndarray, ys: np.ndarray, pts: np.ndarray) -> np.ndarray:
    px, py = xs[None, :].astype(np.float32), ys[:, None].astype(np.float32)
    best = np.full((len(ys), len(xs)), np.inf, np.float32)
    for (ax, ay), (bx, by) in zip(pts[:-1], pts[1:], strict=False):
        vx, vy = bx - ax, by - ay
        t = np.clip(((px - ax) * vx + (py - ay) * vy) / (vx * vx + vy * vy + 1e-9), 0, 1)
        d = np.hypot(px - (ax + t * vx), py - (ay + t * vy))
        np.minimum(best, d, out=best)
    return best
