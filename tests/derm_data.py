"""A tiny ISIC 2019-layout folder for dermoscopy tests (no network, fixed seed).

Each image is a lesion disc on a skin-coloured background; the class sets the lesion's colour and
size, so a small network can tell them apart after colour constancy (a solid-colour image would
become plain grey under Shades-of-Gray).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

ALL_COLUMNS = ("MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC", "UNK")
#: class -> (lesion RGB, radius as a fraction of the side)
LOOKS = {"MEL": ((40, 25, 35), 0.38), "NV": ((150, 95, 60), 0.18), "BCC": ((235, 120, 165), 0.28),
         "AK": ((200, 60, 50), 0.3), "BKL": ((110, 110, 40), 0.3), "DF": ((90, 60, 120), 0.2),
         "VASC": ((200, 20, 40), 0.15), "SCC": ((240, 240, 200), 0.3)}


def lesion_image(cls: str, size_px: int, rng: np.random.Generator) -> np.ndarray:
    """``(size_px, size_px, 3)`` uint8: a disc of the class's colour, jittered position and skin tone."""
    colour, radius = LOOKS[cls]
    yy, xx = np.mgrid[0:size_px, 0:size_px] / size_px
    cy, cx = 0.5 + rng.uniform(-0.08, 0.08, 2)
    disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= radius ** 2
    skin = np.array([215, 170, 145]) + rng.integers(-15, 16, 3)
    img = np.where(disc[..., None], np.array(colour), skin) + rng.normal(0, 4, (size_px, size_px, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def make_isic_folder(root: Path, *, n_per_class: int = 4, size_px: int = 64,
                     classes: tuple[str, ...] = ("MEL", "NV", "BCC"), revisit_every: int = 3,
                     bom: bool = False, seed: int = 0) -> Path:
    """Write ``root`` in the ISIC 2019 training layout; every ``revisit_every``-th lesion has two images.

    Returns
    -------
    Path
        ``root``.
    """
    from PIL import Image

    rng = np.random.default_rng(seed)
    images = root / "ISIC_2019_Training_Input"
    images.mkdir(parents=True, exist_ok=True)
    gt = ["image," + ",".join(ALL_COLUMNS)]
    meta = ["image,age_approx,anatom_site_general,lesion_id,sex"]
    number = lesion = 0
    for cls in classes:
        made = 0
        while made < n_per_class:
            lesion += 1
            for _ in range(2 if lesion % revisit_every == 0 and made + 2 <= n_per_class else 1):
                name = f"ISIC_{number:07d}"
                number += 1
                made += 1
                Image.fromarray(lesion_image(cls, size_px, rng)).save(images / f"{name}.jpg", quality=95)
                gt.append(name + "," + ",".join("1.0" if c == cls else "0.0" for c in ALL_COLUMNS))
                meta.append(f"{name},50.0,back,IL_{lesion:07d},female")
    encoding = "utf-8-sig" if bom else "utf-8"
    (root / "ISIC_2019_Training_GroundTruth.csv").write_text("\n".join(gt) + "\n", encoding=encoding)
    (root / "ISIC_2019_Training_Metadata.csv").write_text("\n".join(meta) + "\n", encoding=encoding)
    return root


def make_class_folders(root: Path, *, n_per_class: int = 3, size_px: int = 48,
                       classes: tuple[str, ...] = ("MEL", "NV"), seed: int = 0) -> Path:
    """Write ``root/<class>/img_<i>.png``."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for cls in classes:
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(n_per_class):
            Image.fromarray(lesion_image(cls, size_px, rng)).save(root / cls / f"img_{i}.png")
    return root
