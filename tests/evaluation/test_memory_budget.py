"""The chunk budget bounds real memory: peak RSS of k-NN, retrieval and re-ID, measured in fresh processes.

n = 8,000 float32 features make a 256 MB similarity matrix; with a 16 MB budget the peak RSS
(VmHWM, reset just before the call) over the RSS before it must stay far below that matrix (< 96 MB: the budgeted block, its
boolean mask, the library's own buffers and allocator slack), while the results equal those of
the unbudgeted call (checked in the same process).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

N, DIM, BUDGET = 8_000, 32, 16 * 2**20
FULL_MATRIX_MB = N * N * 4 / 2**20

_SCRIPT = """
import json, sys
import numpy as np, torch
torch.set_num_threads(1)
workload, n, dim, budget = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
rng = np.random.default_rng(0)
x = rng.standard_normal((n, dim)).astype(np.float32)
labels = rng.integers(0, n // 5, n)
def status_mb(field):
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith(field + ":")) / 1024
if workload == "knn":
    from circle_repro.evaluation.knn import topk_cosine
    run = lambda b: topk_cosine(x, x, 10, exclude_self=True, max_chunk_bytes=b, backend="torch")[1].numpy().tolist()
elif workload == "retrieval":
    from circle_repro.evaluation.retrieval import retrieval_metrics
    run = lambda b: retrieval_metrics(x, labels, (1, 10, 100, 1000), max_chunk_bytes=b)
else:
    from circle_repro.evaluation.reid import evaluate
    cams = rng.integers(1, 7, n)
    q, g = slice(0, n // 4), slice(n // 4, n)
    def run(b):
        r = evaluate(x[q], labels[q], cams[q], x[g], labels[g], cams[g], max_chunk_bytes=b)
        return [float(r.mAP), float(r.mINP), [float(v) for v in r.cmc[:10]]]
small = run(2**20)  # warm-up with a tiny budget: imports, thread pools, allocator arenas
before = status_mb("VmRSS")
with open("/proc/self/clear_refs", "w") as fh:
    fh.write("5")  # reset the peak (VmHWM) to the current RSS: earlier peaks (imports) do not count
budgeted = run(budget)
peak = status_mb("VmHWM")
print(json.dumps({"increase_mb": peak - before, "same_as_tiny_budget": budgeted == small}))
"""


@pytest.mark.parametrize("workload", ["knn", "retrieval", "reid"])
def test_peak_memory_stays_near_the_budget_not_the_full_matrix(workload):
    done = subprocess.run(
        [sys.executable, "-c", _SCRIPT, workload, str(N), str(DIM), str(BUDGET)],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["same_as_tiny_budget"], "results must not depend on the budget"
    assert result["increase_mb"] < 96 < FULL_MATRIX_MB / 2, result
