"""The face data sets in their real layouts: the insightface RecordIO pack of
MS1MV2/MS1MV3 (``train.rec``, ``train.idx``, ``property``), the verification ``.bin`` packs, YouTube Faces
(``YouTubeFaces.tar.gz`` and the landmark file), IJB-C (``IJB_release.tar``) and insightface's MegaFace
test pack."""

from __future__ import annotations

import pickle
import tempfile
from itertools import combinations
from pathlib import Path

import numpy as np

from circle_repro.data.face_alignment import ARCFACE_DST
from circle_repro.data.formats.recordio import IRHeader, RecordIOWriter, write_property
from circle_repro.data.sources import Source
from circle_repro.rehearsal.archives import tar_tree
from circle_repro.rehearsal.images import encode_image
from circle_repro.rehearsal.scale import Scale, spread

PACK_FOLDERS = {"ms1mv2": "faces_emore", "ms1mv3": "ms1m-retinaface-t1"}
FOLDS = 10


def write_rec_pack(folder: Path, per_class: list[int], image_size: tuple[int, int], seed: int = 0) -> int:
    """An insightface training pack in ``folder``: record 0 ``[N + 1, N + 1 + C]``, images 1..N grouped by
    identity (scalar labels), one identity record ``[first, end)`` each, and ``property``; the number of images."""
    folder.mkdir(parents=True, exist_ok=True)
    images, classes = sum(per_class), len(per_class)
    height, width = image_size
    with RecordIOWriter(folder / "train.rec", folder / "train.idx") as writer:
        writer.write_record(0, IRHeader(2, [images + 1, images + 1 + classes], 0, 1))
        key, ranges = 1, []
        for class_id, count in enumerate(per_class):
            ranges.append((key, key + count))
            for _ in range(count):
                writer.write_record(key, IRHeader(0, float(class_id), key, 0), encode_image(seed + key, height, width))
                key += 1
        for offset, (first, end) in enumerate(ranges):
            writer.write_record(images + 1 + offset, IRHeader(2, [first, end], images + 1 + offset, 0))
    write_property(folder / "property", classes, height, width)
    return images


def write_ms1m(raw_dir: Path, source: Source, scale: Scale) -> int:
    """``raw_dir/faces_emore/`` (MS1MV2) or ``raw_dir/ms1m-retinaface-t1/`` (MS1MV3); the number of images."""
    counts = source.expected_counts
    classes = scale.classes(counts["classes"])
    per_class = spread(scale.images(counts["images"], classes), classes)
    return write_rec_pack(raw_dir / PACK_FOLDERS[source.name], per_class, source.image_size or (112, 112))


def fold_pairs(pairs: int) -> list[bool]:
    """``issame`` of ``pairs`` pairs in the official order: per fold, its matched pairs, then its mismatched ones."""
    per_fold = spread(pairs, FOLDS)
    return [k < n // 2 for n in per_fold for k in range(n)]


def write_verification_bin(path: Path, images: list[bytes], issame: list[bool], *, as_arrays: bool) -> Path:
    """A ``.bin`` pack: ``pickle.dump((images, issame))``, the images as raw JPEG bytes (insightface lfw2pack)
    or as the N x 1 uint8 arrays of ``cv2.imencode`` (cfp2pack, agedb2pack2)."""
    items = [np.frombuffer(image, dtype=np.uint8).reshape(-1, 1).copy() for image in images] if as_arrays else images
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        pickle.dump((items, issame), fh, protocol=pickle.HIGHEST_PROTOCOL)
    return path


def write_bin_set(raw_dir: Path, source: Source, scale: Scale) -> int:
    """``raw_dir/<name>.bin`` (lfw: bytes; cfp_fp, agedb_30: arrays), pairs in fold order; the number of images."""
    pairs = scale.count(source.expected_counts["pairs"], 2 * FOLDS)
    height, width = source.image_size or (112, 112)
    issame = fold_pairs(pairs)
    # a matched pair shows the same picture twice, a mismatched one two pictures
    images = [
        encode_image(70000 + 2 * i + (0 if same else j), height, width) for i, same in enumerate(issame) for j in (0, 1)
    ]
    write_verification_bin(raw_dir / f"{source.name}.bin", images, issame, as_arrays=source.name != "lfw")
    return len(images)


def face_landmarks(index: int, height: int, width: int) -> np.ndarray:
    """Five landmarks of a face in a ``height`` x ``width`` crop: the ArcFace template, sized to the crop,
    turned a little and shifted by ``index``."""
    angle = 0.05 * (index % 5 - 2)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    centred = (ARCFACE_DST - ARCFACE_DST.mean(axis=0)) * (0.8 * min(height, width) / 112)
    return np.round(centred @ rotation.T + [width / 2 + index % 3 - 1, height / 2], 3)


def _ytf_videos(source: Source, scale: Scale) -> list[tuple[str, int, int]]:
    """(person, video number, frames) of each video: at least two videos per person (for matched pairs)."""
    counts = source.expected_counts
    videos = scale.count(counts["videos"], 4)
    people = max(2, min(scale.count(counts["identities"]), videos // 2))
    frames = spread(scale.count(counts["frames"], videos), videos)
    return [(f"Person_{i % people:04d}", i // people, frames[i]) for i in range(videos)]


def _ytf_pairs(videos: list[tuple[str, int, int]], pairs: int) -> list[tuple[int, str, str, bool]]:
    ids = [f"{person}/{video}" for person, video, _ in videos]
    same = [(a, b) for a, b in combinations(ids, 2) if a.split("/")[0] == b.split("/")[0]]
    different = [(a, b) for a, b in combinations(ids, 2) if a.split("/")[0] != b.split("/")[0]]
    issame = fold_pairs(pairs)
    per_fold = spread(pairs, FOLDS)
    folds = [fold + 1 for fold, n in enumerate(per_fold) for _ in range(n)]
    rows, counters = [], {True: 0, False: 0}
    for fold, flag in zip(folds, issame, strict=True):
        pool = same if flag else different
        first, second = pool[counters[flag] % len(pool)]
        counters[flag] += 1
        rows.append((fold, first, second, flag))
    return rows


def write_ytf(raw_dir: Path, source: Source, scale: Scale) -> int:
    """``raw_dir/YouTubeFaces.tar.gz`` (``aligned_images_DB/`` and ``splits.txt``) and ``raw_dir/ytf_landmarks.txt``;
    the number of frames."""
    height, width = source.image_size or (240, 320)
    videos = _ytf_videos(source, scale)
    landmark_lines, seed = [], 0
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch) / "YouTubeFaces"
        for person, video, frames in videos:
            folder = root / "aligned_images_DB" / person / str(video)
            folder.mkdir(parents=True)
            for frame in range(frames):
                seed += 1
                name = f"aligned_detect_{video}.{frame + 1}.jpg"
                (folder / name).write_bytes(encode_image(90000 + seed, height, width))
                points = " ".join(f"{v:.3f}" for v in face_landmarks(seed, height, width).ravel())
                landmark_lines.append(f"{person}/{video}/{name} {points}\n")
        lines = ["split number, pair number, first name, second name, is same\n"]
        pairs = _ytf_pairs(videos, scale.count(source.expected_counts["pairs"], 2 * FOLDS))
        lines += [f"{fold}, {i + 1}, {a}, {b}, {int(same)}\n" for i, (fold, a, b, same) in enumerate(pairs)]
        (root / "splits.txt").write_text("".join(lines), encoding="ascii")
        (root / "meta_data").mkdir()
        tar_tree(root, raw_dir / "YouTubeFaces.tar.gz", "YouTubeFaces")
    (raw_dir / "ytf_landmarks.txt").write_text("".join(landmark_lines), encoding="ascii")
    return seed


def write_ijbc(raw_dir: Path, source: Source, scale: Scale) -> int:
    """``raw_dir/IJB_release.tar`` (``IJB_release/IJBC/loose_crop/<n>.jpg`` and the three meta files); two
    templates per identity, two images per media; the number of images."""
    counts = source.expected_counts
    height, width = source.image_size or (250, 250)
    images = scale.count(counts["images"], 8)
    templates = min(images // 2, scale.count(counts["templates"], 4)) // 2 * 2
    all_pairs = list(combinations(range(1, templates + 1), 2))
    genuine = [(a, b) for a, b in all_pairs if (a - 1) // 2 == (b - 1) // 2]
    impostor = [(a, b) for a, b in all_pairs if (a - 1) // 2 != (b - 1) // 2]
    wanted = min(len(all_pairs), scale.count(counts["template_pairs"], 2))
    n_genuine = min(len(genuine), max(1, round(wanted * counts["genuine_pairs"] / counts["template_pairs"])))
    pairs = [(a, b, 1) for a, b in genuine[:n_genuine]] + [(a, b, 0) for a, b in impostor[: max(1, wanted - n_genuine)]]
    tid_mid, five_points = [], []
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch) / "IJB_release" / "IJBC"
        (root / "loose_crop").mkdir(parents=True)
        (root / "meta").mkdir()
        for index in range(1, images + 1):
            template = (index - 1) % templates + 1
            media = 10 * template + (index - 1) // (2 * templates)
            (root / "loose_crop" / f"{index}.jpg").write_bytes(encode_image(110000 + index, height, width))
            coordinates = " ".join(f"{v:.3f}" for v in face_landmarks(index, height, width).ravel())
            tid_mid.append(f"{index}.jpg {template} {media}\n")
            five_points.append(f"{index}.jpg {coordinates} {0.5 + (index % 50) / 100:.6f}\n")
        (root / "meta" / "ijbc_face_tid_mid.txt").write_text("".join(tid_mid))
        (root / "meta" / "ijbc_name_5pts_score.txt").write_text("".join(five_points))
        (root / "meta" / "ijbc_template_pair_label.txt").write_text("".join(f"{a} {b} {c}\n" for a, b, c in pairs))
        tar_tree(root.parent, raw_dir / "IJB_release.tar", "IJB_release")
    return images


def write_megaface(raw_dir: Path, source: Source, scale: Scale) -> int:
    """insightface's MegaFace test pack in ``raw_dir``: ``facescrub_images/<identity>/<identity>_<n>.png`` probes,
    ``megaface_images/<a>/<b>/<photo>_<k>.jpg`` distractors, their ``*_lst`` lists and the two noise lists
    (a comment line and one entry each that names no listed image, as in the real lists); the number of images."""
    counts = source.expected_counts
    height, width = source.image_size or (112, 112)
    identities = scale.classes(counts["probe_identities"])
    probes = []
    for i, n in enumerate(spread(scale.images(counts["probe_images"], identities), identities)):
        name = f"Synthetic_Person_{i:03d}"
        probes += [f"{name}/{name}_{1000 + k}.png" for k in range(n)]
    distractors = [
        f"{k % 97}/{10000000 + k % 89}@N0{k % 7}/{3000000000 + k}_0.jpg"
        for k in range(scale.count(counts["distractor_images"], 2))
    ]
    for folder, lines, image_format in (("facescrub", probes, "PNG"), ("megaface", distractors, "JPEG")):
        for index, line in enumerate(lines):
            target = raw_dir / f"{folder}_images" / line
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(encode_image(130000 + 7 * index + len(folder), height, width, image_format=image_format))
        (raw_dir / f"{folder}_lst").write_text("".join(f"{line}\n" for line in lines))
    (raw_dir / "facescrub_noises.txt").write_text("# FaceScrub probes with wrong identity labels\nNobody_1.png\n")
    (raw_dir / "megaface_noises.txt").write_text(
        "# MegaFace distractors showing a FaceScrub identity\n1/1@N00/1_0.jpg\n"
    )
    return len(probes) + len(distractors)


__all__ = [
    "face_landmarks",
    "fold_pairs",
    "write_bin_set",
    "write_ijbc",
    "write_megaface",
    "write_ms1m",
    "write_rec_pack",
    "write_verification_bin",
    "write_ytf",
]
