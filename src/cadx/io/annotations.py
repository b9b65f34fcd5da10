"""ASAP XML annotations (CAMELYON16) in and out, and QuPath GeoJSON out.

CAMELYON16 lesion files are ASAP XML: ``Annotations/Annotation/Coordinates/Coordinate`` with
``Order``, ``X``, ``Y`` (float, level-0 pixels). Groups ``_0``, ``_1`` and ``Tumor`` outline
tumour; ``_2`` outlines non-tumour tissue inside a tumour region and is painted last, as 0.
XML is parsed with defusedxml (entity expansion and external entities are rejected), streamed,
and checked value by value (limits in :mod:`cadx.io.limits`).
"""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cadx.errors import AnnotationError
from cadx.io.atomic import atomic_path
from cadx.io.limits import input_limits, require_regular_file

#: ASAP groups that outline tumour (label 1).
TUMOR_GROUPS = frozenset({"_0", "_1", "Tumor", "tumor"})
#: ASAP groups that outline non-tumour holes inside tumour (label 0, painted last).
EXCLUSION_GROUPS = frozenset({"_2", "Exclusion", "exclusion"})

_GROUP_COLOURS = {"_0": "#F4FA58", "_1": "#F4FA58", "_2": "#64FE2E", "Tumor": "#F4FA58"}


@dataclass(frozen=True)
class Annotation:
    """One annotated polygon.

    Attributes
    ----------
    coords_xy : ndarray of float64, shape (N, 2)
        Vertices in level-0 pixels, ``(x, y)``, in ``Order``.
    group : str
        ASAP ``PartOfGroup`` (``_0``, ``_1``, ``_2``, ``Tumor`` ...).
    name : str
        ASAP ``Name``.
    kind : str
        ASAP ``Type`` (``Polygon``, ``Spline``, ``Dot`` ...).
    """

    coords_xy: np.ndarray
    group: str
    name: str = ""
    kind: str = "Polygon"

    @property
    def label(self) -> int:
        """1 for tumour groups, 0 for exclusions and anything else."""
        return 1 if self.group in TUMOR_GROUPS else 0

    @property
    def is_exclusion(self) -> bool:
        """True for ``_2``: non-tumour inside a tumour region."""
        return self.group in EXCLUSION_GROUPS

    @property
    def bbox_xy(self) -> tuple[float, float, float, float]:
        """``(x_min, y_min, x_max, y_max)`` in level-0 pixels."""
        x, y = self.coords_xy[:, 0], self.coords_xy[:, 1]
        return float(x.min()), float(y.min()), float(x.max()), float(y.max())


@dataclass(frozen=True)
class Detection:
    """A lesion detection: probability at a level-0 point (the CAMELYON16 ``prob,X,Y`` row)."""

    prob: float
    x: float
    y: float
    extra: dict[str, float] = field(default_factory=dict)


def read_asap_xml(path: str | Path, *, max_vertices: int | None = None) -> list[Annotation]:
    """Parse an ASAP XML file.

    The file is streamed (memory bounded by the annotations kept, never by the XML tree) and every
    value is checked, so a hostile or broken file ends in one :class:`AnnotationError` line.

    Parameters
    ----------
    path : str or Path
    max_vertices : int, optional
        Most ``Coordinate`` elements accepted in the file (default:
        ``input_limits().max_annotation_vertices``, environment ``CADX_MAX_ANNOTATION_VERTICES``).

    Returns
    -------
    list of Annotation
        In file order. Polygons with fewer than 3 vertices are kept only for ``Dot``/``PointSet``.

    Raises
    ------
    AnnotationError
        Missing or not a regular file (a named pipe would block), not XML, hostile XML (entities,
        DTDs), not ASAP (wrong root), a ``Coordinate`` without ``X``/``Y`` or with a value that is
        not a finite number (``Order="1e999"``, ``X="nan"``), more vertices than ``max_vertices``.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "a.xml"
    >>> _ = p.write_text('<ASAP_Annotations><Annotations><Annotation Name="a" PartOfGroup="_0" Type="Polygon">'
    ...                  '<Coordinates><Coordinate Order="1" X="10" Y="0"/><Coordinate Order="0" X="0" Y="0"/>'
    ...                  '<Coordinate Order="2" X="5" Y="8"/></Coordinates></Annotation></Annotations>'
    ...                  '</ASAP_Annotations>')
    >>> [(a.name, a.group, a.coords_xy.tolist()) for a in read_asap_xml(p)]
    [('a', '_0', [[0.0, 0.0], [10.0, 0.0], [5.0, 8.0]])]
    """
    import defusedxml.ElementTree as DET
    from defusedxml import DefusedXmlException

    path = require_regular_file(path, AnnotationError)
    limit = int(max_vertices) if max_vertices is not None else input_limits().max_annotation_vertices
    out: list[Annotation] = []
    stack: list[ET.Element] = []
    current: _Pending | None = None
    n_annotations = n_vertices = 0
    try:
        for event, elem in DET.iterparse(str(path), events=("start", "end"), forbid_dtd=True):
            if event == "start":
                if not stack and elem.tag != "ASAP_Annotations":
                    raise AnnotationError(
                        path, f"not ASAP XML: root element is <{elem.tag}>, expected <ASAP_Annotations>"
                    )
                if elem.tag == "Annotation":
                    current = _Pending(n_annotations, dict(elem.attrib), parent=current)
                    n_annotations += 1
                stack.append(elem)
                continue
            stack.pop()
            if elem.tag == "Coordinate" and current is not None:
                n_vertices += 1
                if n_vertices > limit:
                    raise AnnotationError(
                        path, f"more than {limit:,} vertices (CADX_MAX_ANNOTATION_VERTICES); not a lesion outline"
                    )
                current.add(elem.attrib, path)
            elif elem.tag == "Annotation" and current is not None:
                ann = current.finish(path)
                if ann is not None:
                    out.append(ann)
                current = current.parent
            if stack:  # drop what is parsed: memory stays flat in the file's size
                stack[-1].remove(elem)
    except DefusedXmlException as exc:
        raise AnnotationError(path, f"rejected hostile XML ({type(exc).__name__})") from None
    except ET.ParseError as exc:
        raise AnnotationError(path, f"not well-formed XML ({exc})") from None
    return out


class _Pending:
    """Vertices of one ``<Annotation>`` as they stream in (compact arrays, not Python tuples)."""

    def __init__(self, index: int, attrib: dict[str, str], *, parent: _Pending | None) -> None:
        self.index = index
        self.attrib = attrib
        self.parent = parent
        self.name = attrib.get("Name", f"Annotation {index}")
        self.order = array("d")
        self.xy = array("d")

    def _where(self) -> str:
        return f"annotation {self.index} ({self.name!r}), Coordinate {len(self.order)}"

    def add(self, attrib: dict[str, str], path: Path) -> None:
        values = []
        for key in ("Order", "X", "Y"):
            raw = attrib.get(key)
            if raw is None:
                if key == "Order":
                    values.append(float(len(self.order)))
                    continue
                raise AnnotationError(path, f"{self._where()}: no {key} attribute")
            try:
                v = float(raw)
            except ValueError:
                v = math.nan
            if not math.isfinite(v):
                raise AnnotationError(path, f"{self._where()}: {key}={_clip(raw)!r} is not a finite number")
            values.append(v)
        self.order.append(math.trunc(values[0]))
        self.xy.extend(values[1:])

    def finish(self, path: Path) -> Annotation | None:
        if not self.order:
            return None
        kind = self.attrib.get("Type", "Polygon")
        xy = np.frombuffer(self.xy, dtype=np.float64).reshape(-1, 2)
        xy = xy[np.argsort(np.frombuffer(self.order, dtype=np.float64), kind="stable")]
        if kind in ("Polygon", "Spline", "Rectangle") and len(xy) < 3:
            raise AnnotationError(
                path, f"annotation {self.index} ({self.name!r}): a polygon needs 3 vertices, has {len(xy)}"
            )
        return Annotation(xy, group=self.attrib.get("PartOfGroup", "None"), name=self.name, kind=kind)


def _clip(text: str, n: int = 40) -> str:
    """``text`` cut to ``n`` characters for a message."""
    return text if len(text) <= n else text[: n - 3] + "..."


def check_within(annotations: Sequence[Annotation], size_wh: Sequence[int], *, path: str | Path) -> None:
    """Raise :class:`AnnotationError` if any vertex lies outside a slide of ``size_wh`` (level 0).

    A margin of one pixel is allowed for rounding in annotation tools.
    """
    w, h = size_wh
    for ann in annotations:
        x0, y0, x1, y1 = ann.bbox_xy
        if x0 < -1 or y0 < -1 or x1 > w + 1 or y1 > h + 1:
            raise AnnotationError(
                path,
                f"{ann.name!r} ({ann.group}) reaches ({x0:.0f}, {y0:.0f})-({x1:.0f}, {y1:.0f}), outside the "
                f"slide ({w}x{h} px at level 0): is this the annotation of another slide?",
            )


def polygons_in_paint_order(annotations: Iterable[Annotation]) -> list[tuple[np.ndarray, int]]:
    """``(coords_xy, label)`` pairs with exclusions (``_2``) last, ready for rasterisation."""
    anns = [a for a in annotations if a.kind not in ("Dot", "PointSet") and len(a.coords_xy) >= 3]
    ordered = [a for a in anns if not a.is_exclusion] + [a for a in anns if a.is_exclusion]
    return [(a.coords_xy, a.label) for a in ordered]


def write_asap_xml(
    path: str | Path,
    annotations: Sequence[Annotation] = (),
    *,
    detections: Sequence[Detection] = (),
    detection_group: str = "detections",
) -> Path:
    """Write polygons and/or point detections as ASAP XML (atomic).

    Detections become ``Dot`` annotations named by their probability, in group ``detection_group``.
    """
    root = ET.Element("ASAP_Annotations")
    anns_el = ET.SubElement(root, "Annotations")
    groups: dict[str, None] = {}
    for i, ann in enumerate(annotations):
        el = ET.SubElement(
            anns_el,
            "Annotation",
            Name=ann.name or f"Annotation {i}",
            Type=ann.kind,
            PartOfGroup=ann.group,
            Color=_GROUP_COLOURS.get(ann.group, "#F4FA58"),
        )
        _coords_el(el, ann.coords_xy)
        groups[ann.group] = None
    for i, det in enumerate(detections):
        el = ET.SubElement(anns_el, "Annotation", Name=f"p={det.prob:.4f} #{i}", Type="Dot",
                           PartOfGroup=detection_group, Color="#FF0000")
        _coords_el(el, np.array([[det.x, det.y]]))
        groups[detection_group] = None
    groups_el = ET.SubElement(root, "AnnotationGroups")
    for g in groups:
        gel = ET.SubElement(groups_el, "Group", Name=g, PartOfGroup="None", Color=_GROUP_COLOURS.get(g, "#FF0000"))
        ET.SubElement(gel, "Attributes")
    ET.indent(root, space="\t")
    with atomic_path(path) as tmp:
        ET.ElementTree(root).write(tmp, encoding="utf-8", xml_declaration=True)
    return Path(path)


def write_geojson(
    path: str | Path,
    annotations: Sequence[Annotation] = (),
    *,
    detections: Sequence[Detection] = (),
) -> Path:
    """Write polygons and detections as a QuPath-compatible GeoJSON FeatureCollection (atomic).

    Coordinates are level-0 pixels, as QuPath expects. Each polygon's ring is closed; ``_2``
    exclusions are separate features of class ``Exclusion`` (QuPath has no group concept).
    """
    features = []
    for ann in annotations:
        ring = ann.coords_xy.tolist()
        if ring[0] != ring[-1]:
            ring.append(ring[0])
        cls = "Exclusion" if ann.is_exclusion else ("Tumor" if ann.label else ann.group)
        features.append(
            {
                "type": "Feature",
                "geometry": {"type": "Polygon", "coordinates": [ring]},
                "properties": {
                    "objectType": "annotation",
                    "name": ann.name,
                    "classification": {"name": cls},
                    "asap_group": ann.group,
                },
            }
        )
    for det in detections:
        features.append(
            {
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": [det.x, det.y]},
                "properties": {
                    "objectType": "annotation",
                    "name": f"p={det.prob:.4f}",
                    "classification": {"name": "Tumor detection"},
                    "probability": det.prob,
                    **det.extra,
                },
            }
        )
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return Path(path)


def _coords_el(parent: ET.Element, coords_xy: np.ndarray) -> None:
    coords_el = ET.SubElement(parent, "Coordinates")
    for order, (x, y) in enumerate(coords_xy):
        ET.SubElement(coords_el, "Coordinate", Order=str(order), X=f"{x:.4f}", Y=f"{y:.4f}")
