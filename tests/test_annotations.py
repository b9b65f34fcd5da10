from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cadx.errors import AnnotationError
from cadx.io.annotations import (
    Annotation,
    Detection,
    check_within,
    polygons_in_paint_order,
    read_asap_xml,
    write_asap_xml,
    write_geojson,
)
from cadx.preprocessing.masks import rasterize_polygons

ASAP = """<?xml version="1.0"?>
<ASAP_Annotations>
  <Annotations>
    <Annotation Name="Annotation 1" Type="Polygon" PartOfGroup="_2" Color="#64FE2E">
      <Coordinates>
        <Coordinate Order="2" X="60" Y="60" /><Coordinate Order="0" X="40" Y="40" />
        <Coordinate Order="1" X="60" Y="40" /><Coordinate Order="3" X="40" Y="60" />
      </Coordinates>
    </Annotation>
    <Annotation Name="Annotation 0" Type="Polygon" PartOfGroup="_0" Color="#F4FA58">
      <Coordinates>
        <Coordinate Order="0" X="0" Y="0" /><Coordinate Order="1" X="100" Y="0" />
        <Coordinate Order="2" X="100.0" Y="100.0" /><Coordinate Order="3" X="0" Y="100" />
      </Coordinates>
    </Annotation>
    <Annotation Name="Annotation 2" Type="Polygon" PartOfGroup="Tumor" Color="#F4FA58">
      <Coordinates>
        <Coordinate Order="0" X="200" Y="200" /><Coordinate Order="1" X="210" Y="200" />
        <Coordinate Order="2" X="210" Y="210" /><Coordinate Order="3" X="200" Y="210" />
      </Coordinates>
    </Annotation>
  </Annotations>
  <AnnotationGroups><Group Name="_0" PartOfGroup="None" Color="#ff0000"><Attributes /></Group></AnnotationGroups>
</ASAP_Annotations>
"""


def test_read_asap_orders_vertices_and_paints_holes_last(tmp_path: Path):
    p = tmp_path / "tumor_001.xml"
    p.write_text(ASAP)
    anns = read_asap_xml(p)
    assert [a.group for a in anns] == ["_2", "_0", "Tumor"]
    assert anns[0].coords_xy.tolist() == [[40, 40], [60, 40], [60, 60], [40, 60]]
    # Even though the _2 hole comes first in the file, it is painted last.
    m = rasterize_polygons(polygons_in_paint_order(anns), (300, 300))
    assert m.sum() == 100 * 100 - 20 * 20 + 10 * 10


def test_asap_round_trip_and_detections(tmp_path: Path):
    p = tmp_path / "in.xml"
    p.write_text(ASAP)
    anns = read_asap_xml(p)
    out = write_asap_xml(tmp_path / "out.xml", anns, detections=[Detection(0.9, 12.5, 30.0)])
    again = read_asap_xml(out)
    assert [a.group for a in again] == ["_2", "_0", "Tumor", "detections"]
    np.testing.assert_allclose(again[1].coords_xy, anns[1].coords_xy)
    assert again[3].kind == "Dot" and again[3].coords_xy.tolist() == [[12.5, 30.0]]


def test_geojson_export(tmp_path: Path):
    p = tmp_path / "in.xml"
    p.write_text(ASAP)
    out = write_geojson(tmp_path / "a.geojson", read_asap_xml(p), detections=[Detection(0.5, 1, 2)])
    fc = json.loads(out.read_text())
    kinds = [(f["geometry"]["type"], f["properties"]["classification"]["name"]) for f in fc["features"]]
    assert kinds == [("Polygon", "Exclusion"), ("Polygon", "Tumor"), ("Polygon", "Tumor"), ("Point", "Tumor detection")]
    ring = fc["features"][1]["geometry"]["coordinates"][0]
    assert ring[0] == ring[-1] and len(ring) == 5


BOMB = """<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>
<ASAP_Annotations><Annotations>&lol2;</Annotations></ASAP_Annotations>"""
XXE = """<?xml version="1.0"?>
<!DOCTYPE foo [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<ASAP_Annotations><Annotations>&xxe;</Annotations></ASAP_Annotations>"""


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (BOMB, "hostile"),
        (XXE, "hostile"),
        ("<html><body/></html>", "not ASAP"),
        ("<ASAP_Annotations><Annotations>", "not well-formed"),
        ('<ASAP_Annotations><Annotations><Annotation><Coordinates><Coordinate Order="0" X="a" Y="1"/>'
         "</Coordinates></Annotation></Annotations></ASAP_Annotations>", "Coordinate 0: X='a' is not a finite number"),
    ],
)
def test_bad_xml_rejected_with_the_file_named(tmp_path: Path, text: str, message: str):
    p = tmp_path / "bad.xml"
    p.write_text(text)
    with pytest.raises(AnnotationError, match=message) as err:
        read_asap_xml(p)
    assert "bad.xml" in str(err.value)


def test_coordinates_outside_the_slide_rejected():
    ann = Annotation(np.array([[0, 0], [5000, 0], [5000, 10]], float), group="_0", name="far")
    with pytest.raises(AnnotationError, match="outside the slide"):
        check_within([ann], (4096, 4096), path="x.xml")
    check_within([ann], (6000, 6000), path="x.xml")
