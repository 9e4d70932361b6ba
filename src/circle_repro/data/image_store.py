"""Decode each raw image once, check it, optionally resize it, and store it under ``images/`` or in ``images.rec``.

Prepared images are encoded files (JPEG and PNG bytes are kept as they are unless resized; a resized
PNG stays PNG, anything else becomes JPEG at quality 95). A data set of up to :data:`PACK_THRESHOLD`
images stores them as loose files under ``images/``; a larger one writes them once into one RecordIO
pack, ``images.rec`` with its index ``images.idx`` (manifest path ``images.rec#<key>``), because
shared cluster file systems handle millions of small files badly. Either way every image is
independently seekable, so a loader with many workers reads them in parallel without a shared
handle. A corrupt or undecodable image is **skipped and counted**: it gets no manifest row, and its
name and reason go to ``skipped_images.json`` beside the manifest and to a warning. So is an image
of more pixels than the process's limit (width x height read from its header, before anything is
decoded; :func:`pixel_limit`, set per data set by its preparation): a decompression bomb, a few KB that
would decode to gigabytes.

Writing goes to ``images.partial/``, moved into place only by :meth:`ImageStore.commit`, so a killed
preparation never leaves a half-filled ``images/`` or pack that a manifest points into.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from types import TracebackType

from PIL import Image, UnidentifiedImageError

from circle_repro.data.formats.recordio import IRHeader, RecordIOWriter
from circle_repro.data.image_reader import INDEX_SUFFIX, pack_member
from circle_repro.io import write_json
from circle_repro.progress import Progress

IMAGES_DIRNAME = "images"
PACK_FILENAME = "images.rec"
PACK_INDEX_FILENAME = "images" + INDEX_SUFFIX
PACK_THRESHOLD = 100_000
"""Data sets with more images than this store them in one pack instead of loose files."""
SKIPPED_FILENAME = "skipped_images.json"
JPEG_QUALITY = 95
MAX_PIXELS = 64_000_000
"""The default pixel limit of one raw image: 8000 x 8000 (192 MB decoded as RGB); Pillow's own is 89 million."""
UNDECODABLE = (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError, SyntaxError)
"""What opening or decoding a raw image raises when the image is to be skipped and counted."""


class SkippedImagesWarning(UserWarning):
    """Some raw images could not be decoded and were left out of the prepared data set."""


@contextlib.contextmanager
def pixel_limit(max_pixels: int) -> Iterator[None]:
    """Inside: the process's pixel limit of one image (Pillow's ``Image.MAX_IMAGE_PIXELS``, every thread's)
    is ``max_pixels``; outside, what it was."""
    if max_pixels < 1:
        raise ValueError(f"a pixel limit must be a positive number of pixels, got {max_pixels}")
    previous = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = max_pixels
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = previous


@contextlib.contextmanager
def open_raw_image(data: bytes) -> Iterator[Image.Image]:
    """Open an encoded image; ``Image.DecompressionBombError``, before anything is decoded, when its width x
    height is over the process's pixel limit (:func:`pixel_limit`; Pillow by itself refuses only twice that)."""
    with Image.open(io.BytesIO(data)) as image:
        limit = Image.MAX_IMAGE_PIXELS
        if limit is not None and image.width * image.height > limit:
            raise Image.DecompressionBombError(f"{image.width} x {image.height} pixels is over the limit of {limit}")
        yield image


def _resized(image: Image.Image, short_side: int | None) -> Image.Image:
    if short_side is None or min(image.size) == short_side:
        return image
    scale = short_side / min(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.BILINEAR)


class ImageStore:
    """Collect the images of one prepared data set; use as a context manager, then ``commit()``.

    ``resize_short_side`` rescales every image so its shorter side has that many pixels
    (aspect kept); ``None`` stores the original bytes untouched after checking they decode.
    ``pack`` writes the images into ``images.rec`` instead of loose files (see :func:`packs`).
    ``progress`` counts every image offered to :meth:`add`.
    """

    def __init__(
        self,
        out_dir: str | Path,
        resize_short_side: int | None = None,
        pack: bool = False,
        progress: Progress | None = None,
    ) -> None:
        if resize_short_side is not None and resize_short_side < 1:
            raise ValueError(f"resize_short_side must be a positive number of pixels, got {resize_short_side}")
        self.out_dir = Path(out_dir)
        self.resize_short_side = resize_short_side
        self.pack = pack
        self.staging = self.out_dir / f"{IMAGES_DIRNAME}.partial"
        self.skipped: list[dict[str, str]] = []
        self.stored = 0
        self._writer: RecordIOWriter | None = None
        self.progress = progress

    def __enter__(self) -> ImageStore:
        shutil.rmtree(self.staging, ignore_errors=True)
        self.staging.mkdir(parents=True)
        if self.pack:
            self._writer = RecordIOWriter(self.staging / PACK_FILENAME, self.staging / PACK_INDEX_FILENAME).__enter__()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is not None:
            self._close_pack(exc_type, exc, tb)
            shutil.rmtree(self.staging, ignore_errors=True)

    def _close_pack(self, *exc: object) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.__exit__(*exc)

    def add(self, relative: str, data: bytes, source: str) -> str | None:
        """Store one encoded image as ``images/<relative>``; return its manifest path, or None if skipped.

        ``source`` names where the bytes came from (archive member, record index) for the skip list.
        """
        if self.progress is not None:
            self.progress.update()
        relative_path = PurePosixPath(relative)
        if relative_path.is_absolute() or ".." in relative_path.parts:
            raise ValueError(f"{source}: image path {relative!r} must be relative and stay inside images/")
        try:
            with open_raw_image(data) as image:
                image.load()
                stored = self._encode(image, data, relative_path)
        except UNDECODABLE as err:
            self.skipped.append({"source": source, "reason": f"{type(err).__name__}: {err}"})
            return None
        bytes_out, relative_path = stored
        if self._writer is not None:
            key = self.stored
            self._writer.write_record(key, IRHeader(0, 0.0, key, 0), bytes_out)
            self.stored += 1
            return pack_member(PACK_FILENAME, key)
        target = self.staging.joinpath(*relative_path.parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(bytes_out)
        self.stored += 1
        return (PurePosixPath(IMAGES_DIRNAME) / relative_path).as_posix()

    def _encode(self, image: Image.Image, data: bytes, relative: PurePosixPath) -> tuple[bytes, PurePosixPath]:
        resized = _resized(image, self.resize_short_side)
        if resized is image and image.format in ("JPEG", "PNG"):
            return data, relative
        buffer = io.BytesIO()
        if image.format == "PNG":  # lossless stays lossless
            resized.save(buffer, format="PNG")
            return buffer.getvalue(), relative.with_suffix(".png")
        resized.convert("RGB").save(buffer, format="JPEG", quality=JPEG_QUALITY)
        return buffer.getvalue(), relative.with_suffix(".jpg")

    def commit(self) -> int:
        """Move the staged images into place and record the skipped ones; return the skip count."""
        if self.stored == 0:
            raise ValueError(
                f"{self.out_dir}: no image could be decoded ({len(self.skipped)} skipped); "
                "check that the raw files are the data set's images"
            )
        final = self.out_dir / IMAGES_DIRNAME
        shutil.rmtree(final, ignore_errors=True)
        for name in (PACK_FILENAME, PACK_INDEX_FILENAME):
            (self.out_dir / name).unlink(missing_ok=True)
        if self.pack:
            self._close_pack(None, None, None)
            for name in (PACK_FILENAME, PACK_INDEX_FILENAME):
                (self.staging / name).rename(self.out_dir / name)
            self.staging.rmdir()
        else:
            self.staging.rename(final)
        skipped_file = self.out_dir / SKIPPED_FILENAME
        if self.skipped:
            write_json(skipped_file, self.skipped)
            warnings.warn(
                f"{self.out_dir}: {len(self.skipped)} image(s) could not be decoded and were left out "
                f"(first: {self.skipped[0]['source']}: {self.skipped[0]['reason']}); list in {skipped_file}",
                SkippedImagesWarning,
                stacklevel=2,
            )
        else:
            skipped_file.unlink(missing_ok=True)
        return len(self.skipped)


def packs(images: int) -> bool:
    """Whether a data set of ``images`` images is stored in a pack (more than :data:`PACK_THRESHOLD`)."""
    return images > PACK_THRESHOLD
