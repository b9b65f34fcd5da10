"""The main job on built-in data (``make demo``).

Until the patch classifier lands, the demo runs the whole-slide foundation end to end on a
generated CAMELYON-style tumour slide: slide -> tissue mask -> tiles (with tumour fractions from
the ASAP annotations) -> a thumbnail with the tissue outline and the tile grid, with counts and
timings printed and saved as ``summary.json``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path


from cadx.io.annotations import read_asap_xml
from cadx.io.coords_h5 import write_coords_h5
from cadx.io.slide import open_slide
from cadx.preprocessing.masks import rasterize_polygons
from cadx.synth.cohort import generate_cohort
from cadx.wsi.preview import write_mask_preview, write_tiling_preview
from cadx.wsi.tiling import tile_slide


def run_demo(out_dir: str | Path, *, seed: int = 2026, size_px: int = 8192) -> dict:
    """Run the demo and return its summary (also written to ``out_dir/summary.json``)."""
    out = Path(out_dir)
    t0 = time.perf_counter()
    print(f"cadx demo: generating a CAMELYON-style tumour slide ({size_px} px, seed {seed}) ...")
    slides = generate_cohort(out / "cohort", n_tumor=1, n_normal=0, size_px=size_px, seed=seed)
    t_synth = time.perf_counter() - t0
    synth = slides[0]
    anns = read_asap_xml(synth.annotation_path)
    with open_slide(synth.path) as slide:
        t1 = time.perf_counter()
        result = tile_slide(slide, target_mpp=0.5, tile_size_px=256, min_tissue=0.5, annotations=anns,
                            annotations_path=synth.annotation_path)
        t_tile = time.perf_counter() - t1
        h5 = write_coords_h5(out / "tiles" / f"{slide.name}.h5", result.coords_xy, result.attrs, result.arrays)
        mask_png = write_mask_preview(out / f"{slide.name}_tissue.png", slide, result.tissue)
        grid_png = write_tiling_preview(out / f"{slide.name}_tiles.png", slide, result)
        truth = rasterize_polygons([(p, 1) for p in synth.layout.tissue_xy], result.tissue.mask.shape,
                                   downsample=result.tissue.mpp / slide.mpp).astype(bool)
        info = slide.info()
    iou = float((truth & result.tissue.mask).sum() / max((truth | result.tissue.mask).sum(), 1))
    tumor = result.arrays["tumor_fraction_center"]
    summary = {
        "slide": str(synth.path), "levels": info["level_count"], "dimensions": info["level_dimensions"][0],
        "mpp": info["mpp_x"], "lesions": [(les.size_class, round(les.diameter_um)) for les in synth.layout.lesions],
        "tissue_mm2": round(result.tissue.area_um2 / 1e6, 3), "tissue_iou_vs_truth": round(iou, 4),
        "tiles": int(len(result.coords_xy)), "tumor_tiles_center_ge_0.5": int((tumor >= 0.5).sum()),
        "tile_level": result.plan.level, "tile_mpp": round(result.plan.effective_mpp, 4),
        "seconds": {"synthesise": round(t_synth, 2), "mask_and_tiles": round(t_tile, 3),
                    **{k: round(v, 3) for k, v in result.seconds.items()}},
        "outputs": {"coords": str(h5), "tissue_png": str(mask_png), "tiles_png": str(grid_png)},
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"  slide      {synth.path}  {info['level_dimensions'][0][0]}x{info['level_dimensions'][0][1]} px, "
          f"{info['level_count']} levels, {info['mpp_x']:.3f} um/px")
    print(f"  lesions    {', '.join(f'{c} {d} um' for c, d in summary['lesions'])}")
    print(f"  tissue     {summary['tissue_mm2']} mm2, IoU vs generator truth {iou:.3f}")
    print(f"  tiles      {summary['tiles']} at {summary['tile_mpp']} um/px (level {result.plan.level}), "
          f"{summary['tumor_tiles_center_ge_0.5']} with tumour in the centre")
    print(f"  timings    synthesise {t_synth:.1f} s, mask + grid + labels {t_tile:.2f} s")
    print(f"  wrote      {h5}, {mask_png}, {grid_png}, {out / 'summary.json'}")
    return summary
