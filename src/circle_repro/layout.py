"""File names inside a run folder, shared by the steps that write and read them."""

WEIGHTS_FILENAME = "model.pth"  # state dict only, loadable with torch.load(weights_only=True)
INITIAL_WEIGHTS_FILENAME = "model_init.pth"  # the seeded weights before training: the untrained reference
TRAIN_RECORD_FILENAME = "train.json"  # resolved config, MLflow run id, timings
HISTORY_FILENAME = "history.csv"  # per-iteration training loss and batch s_p / s_n
METRICS_FILENAME = "metrics.json"  # evaluation result of the run
SIMILARITIES_FILENAME = "similarities.npz"  # sampled test s_p / s_n for the report's figures
PER_QUERY_FILENAME = "per_query.npz"  # per test query / pair: `ids` plus one array per metric it averages to

CHECKPOINTS_KEPT = (
    2  # mmengine checkpoints a run keeps in work/: the newest, and the one before in case it is unreadable
)
