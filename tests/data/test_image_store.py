"""ImageStore: decode-checked, optionally resized images staged then committed atomically."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from circle_repro.data.image_store import SKIPPED_FILENAME, ImageStore, SkippedImagesWarning, pixel_limit
from tests.fixtures.formats import make_jpeg, make_png_bomb


def _png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.arange(width * height, dtype=np.uint8).reshape(height, width)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_original_bytes_are_kept_when_not_resized(tmp_path):
    jpeg = make_jpeg(0)
    with ImageStore(tmp_path) as store:
        path = store.add("1/a.jpg", jpeg, "raw/a.jpg")
        assert store.commit() == 0
    assert path == "images/1/a.jpg"
    assert (tmp_path / path).read_bytes() == jpeg
    assert not (tmp_path / "images.partial").exists()
    assert not (tmp_path / SKIPPED_FILENAME).exists()


def test_resize_keeps_aspect_and_format(tmp_path):
    with ImageStore(tmp_path, resize_short_side=10) as store:
        png = store.add("x/a.png", _png(40, 20), "a")
        jpg = store.add("x/b.jpg", make_jpeg(1, size=30), "b")
        store.commit()
    with Image.open(tmp_path / png) as image:
        assert (image.format, image.size) == ("PNG", (20, 10))
    with Image.open(tmp_path / jpg) as image:
        assert (image.format, image.size) == ("JPEG", (10, 10))


def test_corrupt_image_is_skipped_counted_and_listed(tmp_path):
    truncated = make_jpeg(2)[:40]
    with ImageStore(tmp_path) as store:
        assert store.add("1/good.jpg", make_jpeg(3), "good") == "images/1/good.jpg"
        assert store.add("1/bad.jpg", truncated, "raw/bad.jpg") is None
        assert store.add("1/text.jpg", b"not an image", "raw/text.jpg") is None
        with pytest.warns(SkippedImagesWarning, match="2 image"):
            assert store.commit() == 2
    skipped = json.loads((tmp_path / SKIPPED_FILENAME).read_text())
    assert [entry["source"] for entry in skipped] == ["raw/bad.jpg", "raw/text.jpg"]
    assert not (tmp_path / "images/1/bad.jpg").exists()


def test_failure_inside_the_block_leaves_no_images(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "old.png").write_bytes(_png(2, 2))
    with pytest.raises(RuntimeError), ImageStore(tmp_path) as store:
        store.add("1/a.jpg", make_jpeg(0), "a")
        raise RuntimeError("killed")
    assert not (tmp_path / "images.partial").exists()
    assert (tmp_path / "images" / "old.png").exists()  # the previous preparation is untouched


def test_nothing_decodable_is_an_error(tmp_path):
    with ImageStore(tmp_path) as store:
        store.add("a.jpg", b"junk", "a")
        with pytest.raises(ValueError, match="no image could be decoded"):
            store.commit()


def test_paths_escaping_images_are_refused(tmp_path):
    with ImageStore(tmp_path) as store, pytest.raises(ValueError, match="stay inside images"):
        store.add("../evil.jpg", make_jpeg(0), "evil")


@pytest.mark.parametrize("side", [12_000, 20_000])  # under and over Pillow's own error limit (2 x 89.5 M pixels)
def test_decompression_bombs_are_skipped_and_counted_before_decoding(tmp_path, side):
    with ImageStore(tmp_path) as store:
        assert store.add("1/good.png", _png(4, 4), "good") == "images/1/good.png"
        assert store.add("1/bomb.png", make_png_bomb(side, side), "raw/bomb.png") is None
        with pytest.warns(SkippedImagesWarning, match="1 image"):
            assert store.commit() == 1
    [entry] = json.loads((tmp_path / SKIPPED_FILENAME).read_text())
    assert entry["source"] == "raw/bomb.png" and entry["reason"].startswith("DecompressionBombError")
    assert not (tmp_path / "images/1/bomb.png").exists()


def test_the_pixel_limit_counts_width_times_height(tmp_path):
    process_limit = Image.MAX_IMAGE_PIXELS
    with pixel_limit(100), ImageStore(tmp_path) as store:
        assert store.add("a.png", _png(10, 10), "at the limit") == "images/a.png"
        with pytest.warns(Image.DecompressionBombWarning):  # Pillow's own warning; its error comes at 200
            assert store.add("b.png", _png(11, 10), "over the limit") is None
        with pytest.warns(SkippedImagesWarning, match="11 x 10 pixels is over the limit of 100"):
            store.commit()
    assert process_limit == Image.MAX_IMAGE_PIXELS
