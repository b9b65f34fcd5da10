"""One package per public dataset: its folder layout, label rule, metric, outputs and demo.

Generic steps (readers, preprocessing, models, the training loop, the predictor, metrics,
renderers) live in the layer packages; a task package wires them for one public dataset.

``TASKS`` maps each task's name to its title and the module holding its ``run_demo``.
"""

from __future__ import annotations

#: name -> (title, module with ``run_demo(out_dir, **options) -> dict``)
TASKS: dict[str, tuple[str, str]] = {
    "camelyon16": ("CAMELYON16: lymph-node metastases on whole slides", "cadx.tasks.camelyon16.demo"),
    "mil": ("Attention MIL: tumour regions from slide labels alone (CAMELYON16 cohort)",
            "cadx.tasks.camelyon16.mil_demo"),
    "seg": ("Segmentation: tumour pixels from the lesion polygons (CAMELYON16 cohort)",
            "cadx.tasks.camelyon16.seg_demo"),
    "derm": ("ISIC 2019 dermoscopy: melanoma, naevus, basal cell carcinoma", "cadx.tasks.isic2019.demo"),
    "ct": ("RSNA 2019 head CT: intracranial haemorrhage, five subtypes and any", "cadx.tasks.rsna_ich.demo"),
}
