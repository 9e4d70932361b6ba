import multiprocessing

from mlflow.tracking import MlflowClient

from circle_repro.engine.tracking import artifact_location, ensure_experiment, resolve_tracking_uri, tracking_uri


def test_relative_sqlite_uris_resolve_against_the_params_folder(tmp_path):
    assert resolve_tracking_uri("sqlite:///mlflow.db", tmp_path) == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    assert resolve_tracking_uri("sqlite:////abs/x.db", tmp_path) == "sqlite:////abs/x.db"
    assert resolve_tracking_uri("http://127.0.0.1:5000", tmp_path) == "http://127.0.0.1:5000"


def test_mlflow_tracking_uri_overrides_the_params_uri(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking_uri("sqlite:///mlflow.db", tmp_path) == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert tracking_uri("sqlite:///mlflow.db", tmp_path) == "http://127.0.0.1:5000"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///team.db")  # relative: against the params folder too
    assert tracking_uri("sqlite:///mlflow.db", tmp_path) == f"sqlite:///{tmp_path.resolve()}/team.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "")  # set but empty: the params' store
    assert tracking_uri("sqlite:///mlflow.db", tmp_path) == f"sqlite:///{tmp_path.resolve()}/mlflow.db"


def _create(uri: str) -> None:
    ensure_experiment(uri, "race")


def test_concurrent_jobs_create_one_store_and_one_experiment(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_create, args=(uri,)) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert [worker.exitcode for worker in workers] == [0, 0, 0, 0]
    experiment = MlflowClient(tracking_uri=uri).get_experiment_by_name("race")
    assert experiment.artifact_location == artifact_location(uri) == (tmp_path / "mlartifacts").as_uri()
