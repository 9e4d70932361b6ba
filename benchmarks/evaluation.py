"""Evaluation protocols at real sizes, each against a named baseline measured in the same run.

    python benchmarks/evaluation.py            # real sizes (a few minutes; MegaFace dominates)
    python benchmarks/evaluation.py --quick    # smaller sizes, well under a minute
    python benchmarks/evaluation.py --only reid,ijb

Random d=512 embeddings (the timings do not depend on what the features mean). Every
measurement runs in a fresh subprocess, so its peak RSS (``ru_maxrss``) is its own; peak RSS
includes the inputs the subprocess generated. Baselines:

* retrieval (Stanford Online Products: 60,502 test images of 11,316 classes, R@{1,10,100,1000},
  self excluded): ours is ``retrieval.retrieval_metrics`` (ranks only the top R_max, counts the
  rest); against it the matrix-product floor and a top-1000 search (``knn.topk_cosine`` with the
  faiss flat inner-product backend, and with the torch backend) followed by R@K, whose R@K are
  checked equal to ours;
* re-ID (Market-1501: 3,368 queries x 15,913 gallery): the matrix-product floor (the similarity
  matrix alone) and fast-reid's ``eval_market1501`` (full argsort, then a per-query Python loop)
  on a query subset, scaled up linearly;
* verification (LFW: 6,000 pairs, 10 folds): insightface's per-threshold loop over
  ``arange(0, 4, 0.01)``;
* IJB-C 1:1 (23,124 templates, 15,658,489 pairs of 3,531 gallery x 19,593 probe templates, 19,557
  genuine): insightface's chunked row-gather scoring on a pair subset scaled up, the dense
  matrix-product floor, and ``sklearn.metrics.roc_curve`` + the nearest-FPR rule (also checked
  for equality with ours);
* MegaFace (3,530 probes of 80 identities x 1,000,000 distractors): the matrix-product floor and a
  full-matrix numpy version (whole score matrix, max, partition), both on a distractor subset
  scaled up linearly.

Timings are wall-clock seconds on whatever machine runs this; compare ratios, not absolutes.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

REAL = dict(
    retrieval=dict(n=60502, n_classes=11316),
    reid=dict(n_q=3368, n_g=15913, n_ids=750, n_distractors=2798, loop_queries=300),
    verification=dict(n_pairs=6000, reps=200),
    ijb=dict(n_gallery=3531, n_probe=19593, n_pairs=15_658_489, n_genuine=19_557, gather_pairs=1_000_000),
    megaface=dict(n_probes=3530, n_ids=80, n_distractors=1_000_000, floor_distractors=100_000, full_distractors=20_000),
)
QUICK = dict(
    retrieval=dict(n=15000, n_classes=2829),
    reid=dict(n_q=842, n_g=3978, n_ids=188, n_distractors=700, loop_queries=100),
    verification=dict(n_pairs=6000, reps=50),
    ijb=dict(n_gallery=900, n_probe=4900, n_pairs=2_000_000, n_genuine=2_500, gather_pairs=200_000),
    megaface=dict(n_probes=3530, n_ids=80, n_distractors=50_000, floor_distractors=20_000, full_distractors=10_000),
)
DIM = 512


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(fn, repeat=1):
    best, out = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


# ---------------------------------------------------------------------------------------------
# retrieval k-NN


def retrieval_data(cfg, seed=0):
    """float32 embeddings around one random centre per class (about 5 images a class, as in SOP)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, cfg["n_classes"], cfg["n"])
    centres = rng.standard_normal((cfg["n_classes"], DIM), dtype=np.float32)
    return centres[labels] + 2.5 * rng.standard_normal((cfg["n"], DIM), dtype=np.float32), labels


KS = (1, 10, 100, 1000)


def recalls(indices, labels):
    """R@K for K in KS, from the (n, 1000) neighbour indices; lone queries left out, as ours does."""
    _, codes, counts = np.unique(labels, return_inverse=True, return_counts=True)
    hits = (labels[indices] == labels[:, None])[counts[codes] > 1]
    return {f"R@{K}": float(hits[:, :K].any(axis=1).mean()) for K in KS}


def child_retrieval_ours(cfg):
    from circle_repro.evaluation.retrieval import retrieval_metrics

    x, labels = retrieval_data(cfg)
    seconds, metrics = timed(lambda: retrieval_metrics(x, labels, KS))
    recall = {key: metrics[key] for key in (f"R@{K}" for K in KS)}
    with open(os.environ["KNN_RESULT_FILE"], "w") as fh:
        json.dump(recall, fh)
    note = " ".join(f"{key}={value:.4f}" for key, value in recall.items())
    return dict(seconds=seconds, note=f"retrieval_metrics (R@K, MAP@R, R-precision); {note}")


def _top1000(cfg, backend):
    from circle_repro.evaluation.knn import topk_cosine

    x, labels = retrieval_data(cfg)
    seconds, (_, indices) = timed(lambda: topk_cosine(x, x, KS[-1], exclude_self=True, backend=backend))
    with open(os.environ["KNN_RESULT_FILE"]) as fh:
        ours = json.load(fh)
    same = recalls(indices.numpy(), labels) == ours
    return dict(seconds=seconds, note=f"top-1000 search then R@K; same R@K as ours: {same}")


def child_retrieval_torch_top1000(cfg):
    return _top1000(cfg, "torch")


def child_retrieval_faiss(cfg):
    import faiss

    result = _top1000(cfg, "faiss")
    result["note"] = f"faiss {faiss.__version__} flat IP; {result['note']}"
    return result


def child_retrieval_floor(cfg):
    import torch
    import torch.nn.functional as F

    x, _ = retrieval_data(cfg)
    x = F.normalize(torch.from_numpy(x), dim=1)
    rows = max(1, (256 << 20) // (4 * len(x)))

    def product():
        for start in range(0, len(x), rows):
            x[start : start + rows] @ x.T

    seconds, _ = timed(product)
    return dict(seconds=seconds, note="Q @ Q.T in 256 MiB chunks, no top-k")


# ---------------------------------------------------------------------------------------------
# re-ID


def reid_data(cfg, seed=0):
    rng = np.random.default_rng(seed)
    n_q, n_g = cfg["n_q"], cfg["n_g"]
    q_pids = rng.integers(1, cfg["n_ids"] + 1, n_q)
    g_pids = np.r_[
        rng.integers(1, cfg["n_ids"] + 1, n_g - cfg["n_distractors"]), np.zeros(cfg["n_distractors"], dtype=np.int64)
    ]
    return (
        rng.standard_normal((n_q, DIM), dtype=np.float32),
        q_pids,
        rng.integers(0, 6, n_q),
        rng.standard_normal((n_g, DIM), dtype=np.float32),
        g_pids,
        rng.integers(0, 6, n_g),
    )


def fastreid_loop(distmat, q_pids, g_pids, q_cams, g_cams, max_rank=50):
    """fast-reid's eval_market1501 as published: full argsort, then one Python iteration per query."""
    indices = np.argsort(distmat, axis=1)
    matches = (g_pids[indices] == q_pids[:, None]).astype(np.int32)
    all_cmc, all_ap, all_inp = [], [], []
    for i in range(len(q_pids)):
        order = indices[i]
        keep = ~((g_pids[order] == q_pids[i]) & (g_cams[order] == q_cams[i]))
        raw = matches[i][keep]
        if not raw.any():
            continue
        cmc = raw.cumsum()
        last = np.flatnonzero(raw)[-1]
        all_inp.append(cmc[last] / (last + 1.0))
        cmc[cmc > 1] = 1
        all_cmc.append(cmc[:max_rank])
        precision = raw.cumsum() / np.arange(1, len(raw) + 1)
        all_ap.append((precision * raw).sum() / raw.sum())
    return np.mean(all_cmc, axis=0), np.mean(all_ap), np.mean(all_inp)


def child_reid_ours(cfg):
    from circle_repro.evaluation.reid import evaluate

    data = reid_data(cfg)
    seconds, result = timed(lambda: evaluate(*data), repeat=2)
    return dict(seconds=seconds, note=f"mAP={result.mAP:.5f} R1={result.cmc[0]:.5f}")


def child_reid_floor(cfg):
    import torch
    import torch.nn.functional as F

    q, _, _, g, _, _ = reid_data(cfg)
    q, g = F.normalize(torch.from_numpy(q), dim=1), F.normalize(torch.from_numpy(g), dim=1)
    rows = max(1, (256 << 20) // (4 * len(g)))

    def product():
        for start in range(0, len(q), rows):
            q[start : start + rows] @ g.T

    seconds, _ = timed(product, repeat=2)
    return dict(seconds=seconds, note="Q @ G.T in 256 MiB chunks")


def child_reid_loop(cfg):
    import torch
    import torch.nn.functional as F

    from circle_repro.evaluation.reid import evaluate

    q_feats, q_pids, q_cams, g_feats, g_pids, g_cams = reid_data(cfg)
    k = cfg["loop_queries"]
    q = F.normalize(torch.from_numpy(q_feats[:k]), dim=1)
    g = F.normalize(torch.from_numpy(g_feats), dim=1)
    seconds, (_, m_ap, m_inp) = timed(
        lambda: fastreid_loop((1 - q @ g.T).numpy(), q_pids[:k], g_pids, q_cams[:k], g_cams)
    )
    ours = evaluate(q_feats[:k], q_pids[:k], q_cams[:k], g_feats, g_pids, g_cams)
    agree = max(abs(ours.mAP - m_ap), abs(ours.mINP - m_inp))
    return dict(
        seconds=seconds * cfg["n_q"] / k, note=f"{k} queries x{cfg['n_q'] / k:.1f}; |d mAP|,|d mINP| <= {agree:.1e}"
    )


# ---------------------------------------------------------------------------------------------
# verification


def verification_data(cfg, seed=0):
    rng = np.random.default_rng(seed)
    n = cfg["n_pairs"]
    issame = np.resize(np.repeat([True, False], 300), n)  # LFW's layout: 300 same, then 300 different
    a = rng.standard_normal((n, DIM))
    b = np.where(issame[:, None], 0.4 * a, 0) + rng.standard_normal((n, DIM))
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    b /= np.linalg.norm(b, axis=1, keepdims=True)
    return np.sum(np.square(a - b), 1), issame


def child_verification_ours(cfg):
    from circle_repro.evaluation.verification import kfold_accuracy, val_at_far

    dist, issame = verification_data(cfg)
    times = []
    for _ in range(cfg["reps"]):
        start = time.perf_counter()
        mean, std = kfold_accuracy(dist, issame, score_type="distance")
        times.append(time.perf_counter() - start)
    val_seconds, (_val, _, _) = timed(lambda: val_at_far(dist, issame, 1e-3, score_type="distance"), repeat=5)
    return dict(seconds=float(np.median(times)), note=f"acc={mean:.5f}+-{std:.5f}; VAL@1e-3 {val_seconds * 1e3:.1f} ms")


def child_verification_loop(cfg):
    from sklearn.model_selection import KFold

    dist, issame = verification_data(cfg)
    thresholds = np.arange(0, 4, 0.01)

    def accuracy(t, d, y):
        predict = np.less(d, t)
        tp = np.sum(np.logical_and(predict, y))
        tn = np.sum(np.logical_and(~predict, ~y))
        return float(tp + tn) / d.size

    def loop():
        accuracies = []
        for train, test in KFold(n_splits=10, shuffle=False).split(np.arange(len(dist))):
            train_acc = [accuracy(t, dist[train], issame[train]) for t in thresholds]
            accuracies.append(accuracy(thresholds[int(np.argmax(train_acc))], dist[test], issame[test]))
        return np.mean(accuracies), np.std(accuracies)

    seconds, (mean, std) = timed(loop, repeat=3)
    return dict(seconds=seconds, note=f"acc={mean:.5f}+-{std:.5f}")


# ---------------------------------------------------------------------------------------------
# IJB-C


def ijb_data(cfg, seed=0):
    """Unit template features (float32), int32 pair ids (gallery x probe), sparse genuine labels."""
    rng = np.random.default_rng(seed)
    n_templates = cfg["n_gallery"] + cfg["n_probe"]
    feats = rng.standard_normal((n_templates, DIM), dtype=np.float32)
    feats /= np.linalg.norm(feats, axis=1, keepdims=True)
    templates = np.arange(n_templates, dtype=np.int64) * 7 + 1
    n = cfg["n_pairs"]
    t1 = (rng.integers(0, cfg["n_gallery"], n, dtype=np.int32) * 7 + 1).astype(np.int32, copy=False)
    t2 = (rng.integers(cfg["n_gallery"], n_templates, n, dtype=np.int32) * 7 + 1).astype(np.int32, copy=False)
    labels = np.zeros(n, dtype=bool)
    labels[rng.integers(0, n, cfg["n_genuine"])] = True
    return templates, feats, t1, t2, labels


def child_ijb_ours(cfg):
    from circle_repro.evaluation.ijb import score_pairs, tar_at_far_ijb

    templates, feats, t1, t2, labels = ijb_data(cfg)
    data_rss = peak_rss_mb()
    score_seconds, scores = timed(lambda: score_pairs(templates, feats, t1, t2))
    tar_seconds, tars = timed(lambda: tar_at_far_ijb(scores, labels))
    np.save(os.environ["IJB_TARS_FILE"], np.array(list(tars.values())))
    return dict(
        seconds=score_seconds + tar_seconds,
        note=f"scores {score_seconds:.2f} s + TAR {tar_seconds:.2f} s; inputs {data_rss:.0f} MB RSS",
    )


def child_ijb_sklearn(cfg):
    from sklearn.metrics import roc_curve

    from circle_repro.evaluation.ijb import IJB_FARS, score_pairs

    templates, feats, t1, t2, labels = ijb_data(cfg)
    scores = score_pairs(templates, feats, t1, t2)
    del t1, t2

    def insightface_rule():
        fpr, tpr, _ = roc_curve(labels, scores)
        fpr, tpr = np.flipud(fpr), np.flipud(tpr)
        return [float(tpr[min(zip(abs(fpr - x), range(len(fpr)), strict=True))[1]]) for x in IJB_FARS]

    seconds, tars = timed(insightface_rule)
    ours = np.load(os.environ["IJB_TARS_FILE"])
    return dict(seconds=seconds, note=f"TAR only; equal to ours: {list(ours) == tars}")


def child_ijb_gather(cfg):
    templates, feats, t1, t2, _ = ijb_data(cfg)
    k = cfg["gather_pairs"]
    row_of = np.zeros(int(templates.max()) + 1, dtype=np.int64)
    row_of[templates] = np.arange(len(templates))

    def insightface_verification():
        score = np.zeros(k)
        for start in range(0, k, 100_000):  # eval_ijbc.py's batchsize
            part = slice(start, min(start + 100_000, k))
            score[part] = np.sum(feats[row_of[t1[part]]] * feats[row_of[t2[part]]], -1)
        return score

    seconds, _ = timed(insightface_verification)
    return dict(seconds=seconds * cfg["n_pairs"] / k, note=f"{k:,} pairs x{cfg['n_pairs'] / k:.1f}; scores only")


def child_ijb_floor(cfg):
    _, feats, _, _, _ = ijb_data(cfg)
    gallery, probe = feats[: cfg["n_gallery"]], feats[cfg["n_gallery"] :]
    rows = max(1, (64 << 20) // (4 * len(probe)))

    def product():
        for start in range(0, len(gallery), rows):
            gallery[start : start + rows] @ probe.T

    seconds, _ = timed(product)
    return dict(seconds=seconds, note="gallery x probe similarities, no pair lookup, no TAR")


# ---------------------------------------------------------------------------------------------
# MegaFace


def megaface_data(cfg, n_distractors, seed=0):
    rng = np.random.default_rng(seed)
    ids = np.sort(rng.integers(0, cfg["n_ids"], cfg["n_probes"]))
    probes = rng.standard_normal((cfg["n_probes"], DIM), dtype=np.float32)
    distractors = rng.standard_normal((n_distractors, DIM), dtype=np.float32)
    probe_noisy = rng.random(cfg["n_probes"]) < 0.01
    distractor_noisy = rng.random(n_distractors) < 0.01
    return probes, ids, distractors, probe_noisy, distractor_noisy


def child_megaface_ours(cfg):
    from circle_repro.evaluation.megaface import evaluate

    probes, ids, distractors, probe_noisy, distractor_noisy = megaface_data(cfg, cfg["n_distractors"])
    data_rss = peak_rss_mb()
    seconds, result = timed(
        lambda: evaluate(probes, ids, distractors, probe_noisy=probe_noisy, distractor_noisy=distractor_noisy)
    )
    return dict(
        seconds=seconds, note=f"rank1={result.rank1:.4f} TAR@1e-6={result.tar:.4f}; inputs {data_rss:.0f} MB RSS"
    )


def child_megaface_floor(cfg):
    probes, _, distractors, _, _ = megaface_data(cfg, cfg["floor_distractors"])
    probes /= np.linalg.norm(probes, axis=1, keepdims=True)
    distractors /= np.linalg.norm(distractors, axis=1, keepdims=True)
    columns = max(1, (256 << 20) // (len(probes) * 9 + 2 * DIM * 4))

    def product():
        for start in range(0, len(distractors), columns):
            probes @ distractors[start : start + columns].T

    seconds, _ = timed(product)
    scale = cfg["n_distractors"] / cfg["floor_distractors"]
    return dict(seconds=seconds * scale, note=f"{cfg['floor_distractors']:,} distractors x{scale:.0f}")


def child_megaface_full(cfg):
    probes, ids, distractors, _, _ = megaface_data(cfg, cfg["full_distractors"])
    probes /= np.linalg.norm(probes, axis=1, keepdims=True)
    distractors /= np.linalg.norm(distractors, axis=1, keepdims=True)

    def full_matrix():
        scores = probes @ distractors.T
        best = scores.max(axis=1)
        keep = max(1, int(1e-6 * scores.size)) + 1
        top = np.partition(scores.ravel(), scores.size - keep)[-keep:]
        genuine = probes @ probes.T
        return best, top.min(), genuine[ids[:, None] == ids[None, :]]

    seconds, _ = timed(full_matrix)
    scale = cfg["n_distractors"] / cfg["full_distractors"]
    return dict(
        seconds=seconds * scale, note=f"{cfg['full_distractors']:,} distractors x{scale:.0f}; holds the full matrix"
    )


# ---------------------------------------------------------------------------------------------

WORKLOADS = {
    "retrieval": (
        "SOP R@{1,10,100,1000}",
        child_retrieval_ours,
        [
            ("matmul floor", child_retrieval_floor),
            ("faiss top-1000", child_retrieval_faiss),
            ("torch top-1000", child_retrieval_torch_top1000),
        ],
    ),
    "reid": (
        "Market-1501 re-ID",
        child_reid_ours,
        [("matmul floor", child_reid_floor), ("fast-reid per-query loop", child_reid_loop)],
    ),
    "verification": (
        "LFW 10-fold accuracy",
        child_verification_ours,
        [("insightface per-threshold loop", child_verification_loop)],
    ),
    "ijb": (
        "IJB-C scores + TAR@FAR",
        child_ijb_ours,
        [
            ("matmul floor", child_ijb_floor),
            ("insightface row gather", child_ijb_gather),
            ("sklearn roc_curve rule", child_ijb_sklearn),
        ],
    ),
    "megaface": (
        "MegaFace rank-1 + TAR",
        child_megaface_ours,
        [("matmul floor", child_megaface_floor), ("full-matrix numpy", child_megaface_full)],
    ),
}


def run_child(name: str, quick: bool, env: dict) -> dict:
    command = [sys.executable, __file__, "--child", name] + (["--quick"] if quick else [])
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"{name} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller sizes")
    parser.add_argument("--only", default=",".join(WORKLOADS), help="comma-separated workloads")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    sizes = QUICK if args.quick else REAL

    if args.child:
        workload = next(w for w in WORKLOADS if args.child.startswith(w))
        result = globals()[f"child_{args.child}"](sizes[workload])
        result["peak_rss_mb"] = peak_rss_mb()
        print(json.dumps(result))
        return

    scratch = os.environ.get("TMPDIR", "/tmp")
    env = dict(
        os.environ,
        IJB_TARS_FILE=os.path.join(scratch, f"ijb_tars_{os.getpid()}.npy"),
        KNN_RESULT_FILE=os.path.join(scratch, f"knn_result_{os.getpid()}.npz"),
    )
    print(f"{'quick' if args.quick else 'real'} sizes; cpus={os.cpu_count()}; python {sys.version.split()[0]}")
    header = f"{'workload':<24} {'variant':<32} {'seconds':>9} {'base/ours':>9} {'peak RSS MB':>12}  note"
    print(header)
    print("-" * len(header))
    for key in args.only.split(","):
        title, ours_fn, baselines = WORKLOADS[key]
        ours = run_child(ours_fn.__name__.removeprefix("child_"), args.quick, env)
        print(
            f"{title:<24} {'ours':<32} {ours['seconds']:>9.4f} {1:>9.2f} {ours['peak_rss_mb']:>12.0f}  {ours['note']}",
            flush=True,
        )
        for label, fn in baselines:
            base = run_child(fn.__name__.removeprefix("child_"), args.quick, env)
            ratio = base["seconds"] / ours["seconds"]
            print(
                f"{'':<24} {label:<32} {base['seconds']:>9.4f} {ratio:>9.2f} {base['peak_rss_mb']:>12.0f}  {base['note']}",
                flush=True,
            )
    for name in ("IJB_TARS_FILE", "KNN_RESULT_FILE"):
        if os.path.exists(env[name]):
            os.remove(env[name])


if __name__ == "__main__":
    main()
