"""Draw dermoscopy-like pictures of melanoma (MEL), naevi (NV) and basal cell carcinoma (BCC).

A lesion is drawn once, in its own frame (units of its mean radius, on a square raster covering
``[-SPAN, SPAN]``), as premultiplied colour and opacity; each photograph of it (a *view*) warps that
layer by a rotation, scale and shift and lays it on freshly drawn skin under a view's own light,
colour cast, hairs, bubbles and dermoscope vignette. Two views of one lesion therefore show the same
lesion, differently.

A lesion is drawn with one of the :data:`LOOKS` (dermoscopy's textbook criteria), its features
scaled by a ``strength`` in 0..1:

- ``"naevus"``: near-symmetric outline with a soft edge, one brown, regular reticular network
  fading towards the rim (or none).
- ``"melanoma"``: asymmetric, irregular notched border cut off sharply, several colours (light and
  dark brown, black, blue-grey), atypical network (wide, uneven, broken), irregular dots and
  globules, blue-white veil, white regression areas; more of each with strength.
- ``"atypical"``: the melanoma drawing at low strength: a few colours, some asymmetry, an
  irregular network, rarely a veil. Both atypical naevi and early melanomas are drawn with it,
  from the same strength range, so those cases cannot be told apart (as in the clinic, where
  only histology can).
- ``"dermal"``: pink, faintly brown dermal naevus with a few comma vessels.
- ``"amelanotic"``: pink melanoma with dotted vessels, irregular dots and a faint brown rim.
- ``"bcc"``: pink translucent, little pigment, arborising red vessels, ulceration crusts, shiny
  white areas; ``"pigmented_bcc"`` adds blue-grey ovoid nests.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Half-width of the lesion frame's raster, in lesion radii.
SPAN = 1.8
#: How a lesion can look (see the module docstring).
LOOKS = ("naevus", "atypical", "melanoma", "dermal", "amelanotic", "bcc", "pigmented_bcc")

_BROWNS = np.array([[0.66, 0.46, 0.31], [0.50, 0.32, 0.20], [0.33, 0.19, 0.12]], np.float32)
_BLACK = np.array([0.12, 0.08, 0.08], np.float32)
_BLUE_GREY = np.array([0.36, 0.40, 0.50], np.float32)
_VEIL = np.array([0.52, 0.58, 0.70], np.float32)
_WHITE = np.array([0.93, 0.90, 0.90], np.float32)
_PINK = np.array([0.93, 0.62, 0.62], np.float32)
_RED = np.array([0.72, 0.10, 0.16], np.float32)
_CRUST = np.array([0.50, 0.18, 0.10], np.float32)


@dataclass(frozen=True)
class LesionLayer:
    """A lesion in its own frame: ``colour`` premultiplied by ``alpha``, on an ``(L, L)`` raster.

    Attributes
    ----------
    colour : numpy.ndarray
        ``(L, L, 3)`` float32, colour times opacity.
    alpha : numpy.ndarray
        ``(L, L)`` float32 opacity in [0, 1].
    """

    colour: np.ndarray
    alpha: np.ndarray


def smooth_noise(rng: np.random.Generator, shape_hw: tuple[int, int], cells: int) -> np.ndarray:
    """Smooth random field, about ``cells`` bumps across, zero mean, unit standard deviation (float32)."""
    from PIL import Image

    h, w = shape_hw
    grid = rng.standard_normal((cells + 2, cells + 2)).astype(np.float32)
    field = np.asarray(Image.fromarray(grid, mode="F").resize((w, h), Image.Resampling.BICUBIC))
    return (field - field.mean()) / max(float(field.std()), 1e-6)


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def _mix(base: np.ndarray, colour: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """``base`` (H, W, 3) moved towards ``colour`` (3,) or (H, W, 3) by ``weight`` (H, W) in [0, 1]."""
    w = weight[:, :, None]
    return base * (1 - w) + colour * w


def _worley_edges(u: np.ndarray, v: np.ndarray, cell: float, jitter: float, rng: np.random.Generator) -> np.ndarray:
    """Distance to the nearest cell wall of a jittered-lattice Voronoi pattern (F2 - F1), in cells."""
    table = (jitter * (rng.random((2, 64 * 64)) - 0.5) + 0.5).astype(np.float32)
    x, y = u / cell, v / cell
    ix, iy = np.floor(x), np.floor(y)
    fx, fy = (x - ix).astype(np.float32), (y - iy).astype(np.float32)
    ix, iy = ix.astype(np.int32), iy.astype(np.int32)
    f1 = np.full(u.shape, np.inf, np.float32)
    f2 = np.full(u.shape, np.inf, np.float32)
    for dj in (-1, 0, 1):
        row = ((iy + dj) & 63) * 64
        for di in (-1, 0, 1):
            idx = row + ((ix + di) & 63)
            d = (table[0].take(idx) + (di - fx)) ** 2 + (table[1].take(idx) + (dj - fy)) ** 2
            np.minimum(f2, np.maximum(f1, d), out=f2)
            np.minimum(f1, d, out=f1)
    return np.sqrt(f2) - np.sqrt(f1)


def _draw_mask(size: int, draw_fn, *, supersample: int = 2) -> np.ndarray:
    """Draw with PIL at ``supersample`` x resolution on an ``(size, size)`` canvas; return [0, 1] float32."""
    from PIL import Image, ImageDraw

    big = Image.new("L", (size * supersample, size * supersample), 0)
    draw_fn(ImageDraw.Draw(big), supersample)
    small = big.resize((size, size), Image.Resampling.BOX)
    return np.asarray(small, np.float32) / 255.0


def _vessel_tree(rng: np.random.Generator, start: np.ndarray, angle: float, length: float, width: float,
                 depth: int, segments: list[tuple[np.ndarray, np.ndarray, float]]) -> None:
    """Arborising vessel: a wavy trunk that forks into thinner, shorter branches."""
    pts = [start]
    for _ in range(4):
        angle += rng.normal(0, 0.35)
        pts.append(pts[-1] + length / 4 * np.array([np.cos(angle), np.sin(angle)]))
    for a, b in zip(pts[:-1], pts[1:], strict=True):
        segments.append((a, b, width))
    if depth > 0:
        for side in (-1, 1):
            fork = pts[int(rng.integers(2, 5))]
            _vessel_tree(rng, fork, angle + side * rng.uniform(0.4, 1.0), length * rng.uniform(0.5, 0.7),
                         max(width * 0.65, 0.6), depth - 1, segments)


def draw_lesion(look: str, rng: np.random.Generator, *, size_px: int, strength: float) -> LesionLayer:
    """Draw one lesion in its frame on a ``(size_px, size_px)`` raster (see the module docstring).

    Parameters
    ----------
    look : str
        One of :data:`LOOKS`.
    rng : numpy.random.Generator
        All randomness of the lesion (its shape, colours, structures).
    size_px : int
        Raster side; the lesion's mean radius is ``size_px / (2 * SPAN)`` px.
    strength : float
        0..1: how strongly the look's features show (asymmetry, colours, veil, network
        irregularity; vessels and ulceration for BCC).

    Returns
    -------
    LesionLayer
    """
    n = int(size_px)
    axis = (np.arange(n, dtype=np.float32) + 0.5) * (2 * SPAN / n) - SPAN
    u, v = np.meshgrid(axis, axis)
    rho = np.hypot(u, v)
    phi = np.arctan2(v, u)
    s = float(strength)
    if look not in LOOKS:
        raise ValueError(f"unknown look {look!r}; one of {LOOKS}")
    malignant_look = look in ("melanoma", "atypical")
    pink = look in ("bcc", "pigmented_bcc", "dermal", "amelanotic")

    # Outline: radius as a Fourier series in the angle; low orders make asymmetry, high orders notches.
    if malignant_look:
        amps = [rng.uniform(0.04, 0.10 + 0.22 * s) for _ in range(3)]
        amps += [rng.uniform(0, 0.02 + 0.07 * s) for _ in range(9)]
    else:
        amps = [rng.uniform(0, 0.04), rng.uniform(0.0, 0.14)] + [rng.uniform(0, 0.012) for _ in range(10)]
    angles = np.linspace(-np.pi, np.pi, 2049, dtype=np.float32)
    table = np.ones_like(angles)
    for k, a in enumerate(amps, start=1):
        table += a * np.cos(k * angles + rng.uniform(0, 2 * np.pi))
    table = np.clip(table, 0.45, SPAN / 1.12)
    radius = table[np.rint((phi + np.pi) * (2048 / (2 * np.pi))).astype(np.int32)]
    q = rho / radius  # 0 at the centre, 1 on the border
    sharp = rng.uniform(0.03, 0.10) if malignant_look else rng.uniform(0.10, 0.22)
    body = _smoothstep((1 - q) / sharp)

    field_a = smooth_noise(rng, (n, n), 6)
    field_b = smooth_noise(rng, (n, n), 9)
    tilt = np.cos(phi - rng.uniform(0, 2 * np.pi)) * q  # one side differs from the other
    colour = np.empty((n, n, 3), np.float32)

    if pink:
        pink_rgb = _PINK * rng.uniform(0.92, 1.04)
        colour[:] = pink_rgb
        alpha = body * rng.uniform(0.40, 0.55 + 0.2 * s)
        if look == "amelanotic":  # a faint brown rim of pigment, irregular dotted vessels
            colour = _mix(colour, _BROWNS[0], np.clip(0.3 + 0.3 * field_a, 0, 1) * q)
        if look == "dermal":  # dermal naevus: faint brown, a few comma vessels
            colour = _mix(colour, _BROWNS[0], np.full((n, n), rng.uniform(0.2, 0.5), np.float32))
            alpha = alpha * rng.uniform(1.0, 1.5)
    else:
        if malignant_look:
            # Several colours: light to dark brown and black by one field, blue-grey by another.
            level = np.clip(0.9 + 0.55 * field_a + (0.3 + 0.9 * s) * tilt + 0.5 * s, 0, 2.99)
            lo = np.floor(level).astype(np.int64)
            frac = (level - lo)[:, :, None]
            palette = np.concatenate([_BROWNS, _BLACK[None]], axis=0)
            colour[:] = palette[lo] * (1 - frac) + palette[np.minimum(lo + 1, 3)] * frac
            blue = _smoothstep((field_b - (1.6 - 1.4 * s)) / 0.6) * (q < 0.95)
            colour = _mix(colour, _BLUE_GREY, blue * rng.uniform(0.5, 0.9))
            alpha = body * np.clip(0.85 + 0.1 * field_a, 0.5, 1.0)
        else:
            shade = _BROWNS[0] * (1 - (w := rng.uniform(0.0, 0.8))) + _BROWNS[1] * w
            colour[:] = shade
            colour = colour * (1 + 0.04 * field_a[:, :, None]) * (1 - 0.12 * (1 - q)[:, :, None])
            alpha = body * rng.uniform(0.75, 0.92)
        # Pigment network: Voronoi cell walls; regular for naevi, wide, uneven and broken for melanoma.
        if rng.random() < (0.9 if malignant_look else 0.75):
            cell = rng.uniform(0.13, 0.19)
            if malignant_look:
                stretch = 1 + 0.4 * s * field_b
                warp = 0.02 + 0.08 * s
                edges = _worley_edges(u * stretch + warp * field_a, v * stretch + warp * field_b, cell, 0.9, rng)
                width = 0.14 + 0.16 * s * np.clip(1 + field_a, 0, 2)
                where = field_b > -0.6 + 0.4 * s  # broken: present in patches, ends abruptly
                dark = _BLACK
            else:
                edges = _worley_edges(u + 0.02 * field_a, v + 0.02 * field_b, cell, 0.5, rng)
                width = rng.uniform(0.10, 0.16)
                where = _smoothstep((1.0 - q) / 0.35)  # fades towards the rim
                dark = _BROWNS[2]
            line = _smoothstep(1 - edges / width)
            colour = _mix(colour, dark, line * where * rng.uniform(0.35, 0.6))
        if malignant_look:
            # Blue-white veil and white regression areas.
            if rng.random() < 0.15 + 0.75 * s:
                veil = _smoothstep((field_b + 0.2 * tilt - (1.2 - 1.2 * s)) / 0.9) * _smoothstep((0.95 - q) / 0.2)
                colour = _mix(colour, _VEIL, veil * rng.uniform(0.55, 0.8))
            if rng.random() < 0.5 * s:
                white = _smoothstep((-field_a - 1.0) / 0.4) * (q < 0.85)
                colour = _mix(colour, _WHITE, white * 0.7)

    premult = colour * alpha[:, :, None]

    def paint(mask: np.ndarray, paint_colour: np.ndarray) -> None:
        """Lay ``paint_colour`` over the lesion with opacity ``mask`` (premultiplied "over")."""
        nonlocal premult, alpha
        premult = premult * (1 - mask[:, :, None]) + paint_colour * mask[:, :, None]
        alpha = alpha * (1 - mask) + mask

    scale = n / (2 * SPAN)  # raster px per lesion radius

    def to_px(p: np.ndarray) -> tuple[float, float]:
        return float((p[0] + SPAN) * scale), float((p[1] + SPAN) * scale)

    def inside_point() -> np.ndarray:
        ang, r = rng.uniform(0, 2 * np.pi), 0.75 * np.sqrt(rng.random())
        return np.array([r * np.cos(ang), r * np.sin(ang)])

    if pink:
        segments: list[tuple[np.ndarray, np.ndarray, float]] = []
        if look in ("bcc", "pigmented_bcc"):
            for _ in range(int(rng.integers(2, 4 + int(4 * s)))):
                _vessel_tree(rng, inside_point(), rng.uniform(0, 2 * np.pi), rng.uniform(0.5, 0.9),
                             rng.uniform(1.6, 2.6) * n / 200, 2, segments)
        else:  # comma (NV) or dotted (MEL) vessels: short, unbranched
            for _ in range(int(rng.integers(3, 10))):
                a = inside_point()
                b = a + rng.normal(0, 0.06 if look == "amelanotic" else 0.12, 2)
                segments.append((a, b, rng.uniform(1.0, 1.8) * n / 200))

        def draw_vessels(draw, k):
            for a, b, w in segments:
                ax, ay = to_px(a)
                bx, by = to_px(b)
                draw.line([(ax * k, ay * k), (bx * k, by * k)], fill=255, width=max(1, round(w * k)))

        paint(_draw_mask(n, draw_vessels) * rng.uniform(0.55 + 0.3 * s, 0.95) * body, _RED)
    if look in ("bcc", "pigmented_bcc"):
        if rng.random() < 0.3 + 0.5 * s:  # ulceration: a dark red-brown crust
            c = inside_point() * 0.6
            ulcer = _smoothstep((field_a * 0.6 - np.hypot(u - c[0], v - c[1]) * 3 + 0.9) / 0.3)
            paint(ulcer * 0.9, _CRUST)
        if rng.random() < 0.5:  # shiny white structures
            shiny = _smoothstep((field_b - 1.0) / 0.3) * body
            paint(shiny * 0.5, _WHITE)
    if malignant_look or look == "pigmented_bcc":
        # Irregular dots and globules (MEL, atypical NV) or blue-grey ovoid nests (pigmented BCC).
        nests = look == "pigmented_bcc"
        count = int(rng.integers(3, 8)) if nests else int(rng.integers(0, 4 + int(14 * s)))
        side = rng.uniform(0, 2 * np.pi)
        dots = []
        for _ in range(count):
            ang = side + rng.normal(0, 1.2 if not nests else 3.0)
            r = rng.uniform(0.3, 0.95) if not nests else 0.7 * np.sqrt(rng.random())
            size = rng.uniform(0.06, 0.18) if nests else rng.uniform(0.02, 0.07)
            dots.append((r * np.cos(ang), r * np.sin(ang), size))

        def draw_dots(draw, k):
            for x, y, size in dots:
                cx, cy = to_px(np.array([x, y]))
                rad = size * scale * k
                draw.ellipse([cx * k - rad, cy * k - rad * 0.7, cx * k + rad, cy * k + rad * 0.7], fill=255)

        dotmask = _draw_mask(n, draw_dots) * (0.95 if not nests else rng.uniform(0.6, 0.9))
        paint(dotmask, _BLUE_GREY if nests else (_BLACK + _BROWNS[2]) / 2)
    return LesionLayer(colour=premult.astype(np.float32), alpha=np.clip(alpha, 0, 1).astype(np.float32))


@dataclass(frozen=True)
class View:
    """How one photograph of a lesion is taken.

    Attributes
    ----------
    shape_hw : tuple of int
        Picture rows and columns.
    centre_rc : tuple of float
        Lesion centre in the picture, (row, col) px.
    radius_px : float
        Lesion mean radius in the picture, px.
    angle : float
        Lesion rotation, radians.
    dermoscope : bool
        Black vignette of a contact dermoscope's round field of view.
    """

    shape_hw: tuple[int, int]
    centre_rc: tuple[float, float]
    radius_px: float
    angle: float
    dermoscope: bool


def warp_layer(layer: LesionLayer, view: View) -> tuple[np.ndarray, np.ndarray]:
    """The lesion layer as seen in ``view``: ``(H, W, 3)`` premultiplied colour and ``(H, W)`` opacity."""
    from PIL import Image

    n = layer.alpha.shape[0]
    h, w = view.shape_hw
    k = n / (2 * SPAN) / view.radius_px  # raster px per picture px
    cos, sin = np.cos(view.angle) * k, np.sin(view.angle) * k
    cy, cx = view.centre_rc
    # Output (x, y) -> input (a x + b y + c, d x + e y + f): rotate about the centre, scale, shift.
    coeffs = (cos, sin, n / 2 - cos * cx - sin * cy, -sin, cos, n / 2 + sin * cx - cos * cy)
    planes = [layer.colour[:, :, i] for i in range(3)] + [layer.alpha]
    out = [np.asarray(Image.fromarray(np.ascontiguousarray(p), mode="F").transform(
        (w, h), Image.Transform.AFFINE, coeffs, resample=Image.Resampling.BILINEAR, fillcolor=0.0)) for p in planes]
    return np.stack(out[:3], axis=2), out[3]


def _curve_points(rng: np.random.Generator, h: int, w: int, k: int) -> list[tuple[float, float]]:
    """A gently curved strand (quadratic Bezier) crossing part of the picture, in ``k`` x px."""
    p0 = np.array([rng.uniform(-0.1, 1.1) * w, rng.uniform(-0.1, 1.1) * h])
    ang = rng.uniform(0, 2 * np.pi)
    length = rng.uniform(0.3, 1.0) * max(h, w)
    p2 = p0 + length * np.array([np.cos(ang), np.sin(ang)])
    p1 = (p0 + p2) / 2 + rng.normal(0, 0.15 * length, 2)
    t = np.linspace(0, 1, 24)[:, None]
    pts = (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2
    return [(float(x) * k, float(y) * k) for x, y in pts]


def render_view(layer: LesionLayer, view: View, rng: np.random.Generator, *, skin_rgb: np.ndarray,
                artefacts: bool = True) -> np.ndarray:
    """Photograph ``layer`` as ``view`` on skin of colour ``skin_rgb`` (3,) in [0, 1]; ``(H, W, 3)`` uint8.

    ``rng`` draws what belongs to this photograph: skin texture, hairs and air bubbles (if
    ``artefacts``), uneven light, the light's colour cast, sensor noise.
    """
    from PIL import Image, ImageDraw

    h, w = view.shape_hw
    # Skin: the patient's tone, patches of redness, uneven pigmentation and fine texture.
    base = np.asarray(skin_rgb, np.float32)
    redness = np.clip(0.08 * smooth_noise(rng, (h, w), 5) + 0.04, 0, 1)[:, :, None]
    shade = (1 + 0.04 * smooth_noise(rng, (h, w), 4)) * (1 + 0.02 * smooth_noise(rng, (h, w), max(4, w // 6)))
    premult, alpha = warp_layer(layer, view)
    img = base + (np.array([0.88, 0.52, 0.48], np.float32) - base) * redness
    img *= (shade * (1 - alpha))[:, :, None]
    img += premult

    if artefacts:
        n_hairs = int(rng.integers(1, 9)) if rng.random() < 0.45 else 0
        if n_hairs:
            big = Image.new("L", (w * 2, h * 2), 0)
            draw = ImageDraw.Draw(big)
            for _ in range(n_hairs):
                draw.line(_curve_points(rng, h, w, 2), fill=255, width=int(rng.integers(2, 6)))
            hair = np.asarray(big.resize((w, h), Image.Resampling.BOX), np.float32) * (0.9 / 255.0)
            img = _mix(img, np.array([0.10, 0.07, 0.05], np.float32), hair)
        if rng.random() < 0.3:  # air bubbles in the immersion fluid: bright rims and a highlight
            rim = Image.new("L", (w * 2, h * 2), 0)
            draw = ImageDraw.Draw(rim)
            for _ in range(int(rng.integers(1, 6))):
                r = rng.uniform(0.015, 0.08) * w * 2
                x, y = rng.uniform(0, 2 * w), rng.uniform(0, 2 * h)
                draw.ellipse([x - r, y - r, x + r, y + r], outline=255, width=max(2, int(r / 8)))
                draw.ellipse([x - r * 0.5, y - r * 0.6, x - r * 0.3, y - r * 0.4], fill=255)
            ring = np.asarray(rim.resize((w, h), Image.Resampling.BOX), np.float32) * (0.6 / 255.0)
            img = _mix(img, np.ones(3, np.float32), ring)

    # Uneven light (a gradient and a fall-off towards the edges), the light's colour, the vignette.
    rr = ((np.arange(h, dtype=np.float32) + 0.5) / h - 0.5)[:, None]
    cc = ((np.arange(w, dtype=np.float32) + 0.5) / w - 0.5)[None, :]
    ang = rng.uniform(0, 2 * np.pi)
    light = 1 + rng.uniform(0, 0.25) * (np.cos(ang) * cc + np.sin(ang) * rr) - rng.uniform(0, 0.35) * (rr**2 + cc**2)
    light *= np.float32(rng.uniform(0.85, 1.1))
    cast = np.exp(rng.normal(0, 0.04, 3)).astype(np.float32)
    cast /= cast.mean()
    inside = None
    if view.dermoscope:
        radius = rng.uniform(0.47, 0.62) * min(h, w)
        cy, cx = (0.5 + rng.normal(0, 0.02, 2)) * (h, w)
        inside = _smoothstep((radius - np.hypot((rr + 0.5) * h - cy, (cc + 0.5) * w - cx)) / rng.uniform(3, 10))
        light = light * inside
    img *= light[:, :, None]
    img *= cast
    if inside is not None:
        img += ((1 - inside) * np.float32(rng.uniform(0, 0.03)))[:, :, None]
    img += rng.standard_normal(img.shape, dtype=np.float32) * np.float32(rng.uniform(0.005, 0.02))
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)
