"""Decode each raw image once, check it, optionally resize it, and store it under ``images/``.

Prepared images are loose encoded files (JPEG and PNG bytes are kept as they are unless resized;
a resized PNG stays PNG, anything else becomes JPEG at quality 95): every file is independently seekable, so a loader with many
workers reads them in parallel without a shared handle. A corrupt or undecodable image is
**skipped and counted**: it gets no manifest row, and its name and reason go to
``skipped_images.json`` beside the manifest and to a warning. So is an image larger than
``max_pixels`` (width x height read from its header, before anything is decoded): a decompression
bomb, a few KB that would decode to gigabytes.

Writing goes to ``images.partial/``, renamed onto ``images/`` only by :meth:`ImageStore.commit`,
so a killed preparation never leaves a half-filled ``images/`` that a manifest points into.
"""

from __future__ import annotations

import io
import shutil
import warnings
from pathlib import Path, PurePosixPath
from types import TracebackType

from PIL import Image, UnidentifiedImageError

from circle_repro.io import write_json

IMAGES_DIRNAME = "images"
SKIPPED_FILENAME = "skipped_images.json"
JPEG_QUALITY = 95
MAX_PIXELS = 64_000_000
"""The pixel limit of one raw image: 8000 x 8000 (192 MB decoded as RGB); Pillow's own limit is 89 million."""


class SkippedImagesWarning(UserWarning):
    """Some raw images could not be decoded and were left out of the prepared data set."""


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
    """

    def __init__(self, out_dir: str | Path, resize_short_side: int | None = None, max_pixels: int = MAX_PIXELS) -> None:
        if resize_short_side is not None and resize_short_side < 1:
            raise ValueError(f"resize_short_side must be a positive number of pixels, got {resize_short_side}")
        self.out_dir = Path(out_dir)
        self.resize_short_side = resize_short_side
        self.max_pixels = max_pixels
        self.staging = self.out_dir / f"{IMAGES_DIRNAME}.partial"
        self.skipped: list[dict[str, str]] = []
        self.stored = 0

    def __enter__(self) -> ImageStore:
        shutil.rmtree(self.staging, ignore_errors=True)
        self.staging.mkdir(parents=True)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if exc_type is not None:
            shutil.rmtree(self.staging, ignore_errors=True)

    def add(self, relative: str, data: bytes, source: str) -> str | None:
        """Store one encoded image as ``images/<relative>``; return its manifest path, or None if skipped.

        ``source`` names where the bytes came from (archive member, record index) for the skip list.
        """
        relative_path = PurePosixPath(relative)
        if relative_path.is_absolute() or ".." in relative_path.parts:
            raise ValueError(f"{source}: image path {relative!r} must be relative and stay inside images/")
        try:
            with Image.open(io.BytesIO(data)) as image:
                if image.width * image.height > self.max_pixels:
                    raise Image.DecompressionBombError(
                        f"{image.width} x {image.height} pixels is over the limit of {self.max_pixels}"
                    )
                image.load()
                stored = self._encode(image, data, relative_path)
        except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError, SyntaxError) as err:
            self.skipped.append({"source": source, "reason": f"{type(err).__name__}: {err}"})
            return None
        bytes_out, relative_path = stored
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
