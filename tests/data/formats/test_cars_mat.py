import numpy as np
import pytest
from fixtures.formats import CARS_CLASS_NAMES, build_cars_annos
from fixtures.retrieval import devkit_annos
from scipy.io import loadmat, savemat

from circle_repro.data.annotations import AnnotationError
from circle_repro.data.formats.cars_mat import (
    ANNOTATION_FIELDS,
    CarsMatError,
    CarsRecord,
    read_cars_annos,
    read_class_names,
    read_devkit_annos,
    read_devkit_class_count,
)


def test_fixture_has_the_real_layout(tmp_path):
    path = tmp_path / "cars_annos.mat"
    build_cars_annos(path)
    mat = loadmat(path)
    assert mat["annotations"].shape == (1, 8)
    assert mat["annotations"].dtype.names == ANNOTATION_FIELDS
    assert mat["class_names"].shape == (1, 4)
    assert mat["__header__"].startswith(b"MATLAB 5.0 MAT-file")


def test_parse_records_in_file_order(tmp_path):
    path = tmp_path / "cars_annos.mat"
    rows = build_cars_annos(path, images_per_class=2)
    records = read_cars_annos(path)
    assert len(records) == len(rows) == 8
    assert records[0] == CarsRecord("car_ims/000001.jpg", (11, 21, 201, 101), 1, "AM General Hummer SUV 2000", False)
    assert [r.class_id for r in records] == [1, 1, 2, 2, 3, 3, 4, 4]
    assert [r.test for r in records] == [False, True] * 4
    assert [r.relative_im_path for r in records] == [f"car_ims/{i:06d}.jpg" for i in range(1, 9)]
    assert {r.class_name for r in records} == set(CARS_CLASS_NAMES)
    assert read_class_names(path) == list(CARS_CLASS_NAMES)
    assert all(isinstance(v, int) for r in records for v in r.bbox)


@pytest.mark.parametrize("field", ["class", "relative_im_path", "bbox_y2"])
def test_missing_field_is_named(tmp_path, field):
    path = tmp_path / "cars_annos.mat"
    build_cars_annos(path, drop_field=field)
    with pytest.raises(CarsMatError, match=rf"cars_annos.mat: annotations lack the field\(s\) \['{field}'\]"):
        read_cars_annos(path)


def test_missing_variable_is_named(tmp_path):
    path = tmp_path / "cars_meta.mat"
    savemat(path, {"class_names": np.array(["a"], dtype=object)})
    with pytest.raises(CarsMatError, match="'annotations' is missing"):
        read_cars_annos(path)


def test_class_outside_class_names(tmp_path):
    path = tmp_path / "cars_annos.mat"
    build_cars_annos(path, class_override=5)
    with pytest.raises(CarsMatError, match=r"car_ims/000001.jpg\) has class 5, outside 1..4"):
        read_cars_annos(path)


def test_not_a_mat_file(tmp_path):
    path = tmp_path / "cars_annos.mat"
    path.write_bytes(b"<html>404 Not Found</html>")
    with pytest.raises(CarsMatError, match=r"cars_annos.mat"):
        read_cars_annos(path)


def test_a_cars_mat_error_is_an_annotation_error():
    assert issubclass(CarsMatError, AnnotationError)


def test_devkit_annotations_in_file_order(tmp_path):
    path = tmp_path / "cars_train_annos.mat"
    path.write_bytes(devkit_annos([("00001.jpg", 14), ("00002.jpg", 3)]))
    assert read_devkit_annos(path, "devkit/cars_train_annos.mat", 196) == [("00001.jpg", 14), ("00002.jpg", 3)]


def test_unlabelled_devkit_test_annotations_point_to_the_labelled_file(tmp_path):
    path = tmp_path / "cars_test_annos.mat"
    path.write_bytes(devkit_annos([("00001.jpg", 1)], with_class=False))
    with pytest.raises(CarsMatError, match=r"shown: annotations lack the field\(s\) \['class'\].*use cars_test_"):
        read_devkit_annos(path, "shown", 196)


def test_devkit_class_count_and_bad_class(tmp_path):
    meta = tmp_path / "cars_meta.mat"
    savemat(meta, {"class_names": np.array([["a", "b", "c"]], dtype=object)})
    assert read_devkit_class_count(meta, "devkit/cars_meta.mat") == 3
    annos = tmp_path / "annos.mat"
    annos.write_bytes(devkit_annos([("00001.jpg", 4)]))
    with pytest.raises(CarsMatError, match=r"annos: annotations\[0\] \(00001.jpg\) has class 4, outside 1..3"):
        read_devkit_annos(annos, "annos", 3)
    with pytest.raises(CarsMatError, match=r"devkit/cars_meta.mat: the variable 'class_names' is missing"):
        read_devkit_class_count(annos, "devkit/cars_meta.mat")
