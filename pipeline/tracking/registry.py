"""The MLflow Model Registry: model logging, versions, their tags and aliases.

Aliases, not the deprecated stages: ``challenger`` (the last registered model),
``champion`` (what ``predict`` serves by default) and ``previous-champion`` (where
``rollback`` goes). A version is found again by the SHA-256 of its architecture and
weights, so that registering an unchanged model reuses its version instead of adding one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.errors import TrackingError

CHALLENGER = "challenger"
CHAMPION = "champion"
PREVIOUS_CHAMPION = "previous-champion"
CONTENT_HASH_TAG = "model_content_sha256"
MODEL_ARTIFACT = "model"
# The data description travels in the MLmodel file (``metadata``) so that predict
# preprocesses images like the training data without the repository's data/processed.
DATA_METADATA_KEY = "data"
# ``raw`` (normalization inside the model) or ``normalized``; versions from before the
# self-contained models have no such key and took normalized arrays.
INPUT_METADATA_KEY = "input"
LEGACY_INPUT = "normalized"


@dataclass(frozen=True)
class Version:
    name: str
    version: str
    run_id: str | None
    source: str
    tags: dict[str, str]

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


def _client():  # noqa: ANN202 - mlflow.MlflowClient, imported lazily
    from mlflow import MlflowClient

    return MlflowClient()


def _version(mv: Any) -> Version:
    return Version(name=mv.name, version=str(mv.version), run_id=mv.run_id, source=mv.source,
                   tags=dict(mv.tags or {}))


def _quote(value: str) -> str:
    return "'" + value.replace("'", "\\'") + "'"


def registered_model_exists(name: str) -> bool:
    from mlflow.exceptions import MlflowException

    try:
        _client().get_registered_model(name)
    except MlflowException:
        return False
    return True


def find_version_by_hash(name: str, content_hash: str) -> Version | None:
    """The newest version of ``name`` tagged with this content hash (architecture and weights)."""
    if not registered_model_exists(name):
        return None
    found = _client().search_model_versions(
        f"name = {_quote(name)} and tags.{CONTENT_HASH_TAG} = {_quote(content_hash)}")
    found = sorted(found, key=lambda mv: int(mv.version), reverse=True)
    return _version(found[0]) if found else None


def served_model_requirements() -> list[str]:
    """What a served model needs, pinned to this environment (MLflow adds itself).

    Given up front because without it ``log_model`` infers them by loading the model in a fresh
    Python that imports TensorFlow: about 10 s of every registration on 2 cores, for the same answer.
    """
    from importlib.metadata import version

    return [f"{dist}=={version(dist)}" for dist in ("keras", "tensorflow")]


def register_keras_model(model: Any, *, name: str, run_id: str, input_shape: tuple[int, ...], num_classes: int,
                         content_hash: str, metadata: Mapping[str, Any], tags: Mapping[str, Any],
                         input_kind: str = LEGACY_INPUT, input_dtype: str = "float32") -> Version:
    """Log ``model`` into the run ``run_id`` with a signature and register it as a new version.

    ``input_kind``/``input_dtype``: what the model takes (``raw`` pixels as uint8 or float32, or
    ``normalized`` float32); the signature tells MLflow's serving and pyfunc the same.
    """
    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.models import infer_signature

    # A signature from arrays of the right shape and dtype; an input_example fails for image
    # batches in this MLflow version (see DESIGN.md), so none is logged.
    x = np.zeros((1, *input_shape), dtype=np.dtype(input_dtype))
    y = np.full((1, num_classes), 1.0 / num_classes, dtype=np.float32)
    signature = infer_signature(x, y)
    client = _client()
    try:
        client.get_run(run_id)
    except MlflowException:
        raise TrackingError(f"train run {run_id} is not in the MLflow store {client.tracking_uri}; "
                            "run `python -m pipeline train` (or `dvc repro`) again") from None
    all_tags = {k: str(v) for k, v in tags.items() if v is not None}
    all_tags[CONTENT_HASH_TAG] = content_hash
    try:
        with mlflow.start_run(run_id=run_id):
            info = mlflow.keras.log_model(model, name=MODEL_ARTIFACT, signature=signature,
                                          pip_requirements=served_model_requirements(),
                                          metadata={DATA_METADATA_KEY: dict(metadata),
                                                    INPUT_METADATA_KEY: input_kind})
        if not registered_model_exists(name):
            client.create_registered_model(name, description="CNN image classifier from the tuning pipeline; "
                                                             "aliases challenger / champion / previous-champion")
        mv = mlflow.register_model(info.model_uri, name, tags=all_tags)
    except MlflowException as error:
        raise TrackingError(f"cannot register model {name!r} in {client.tracking_uri}: {error.message}") from None
    return _version(mv)


def version_for_alias(name: str, alias: str) -> Version | None:
    """The version ``alias`` points at, or None when the alias (or the model) does not exist."""
    from mlflow.exceptions import MlflowException

    try:
        return _version(_client().get_model_version_by_alias(name, alias))
    except MlflowException:
        return None


def aliases(name: str) -> dict[str, str]:
    """``{alias: version}`` of a registered model ({} when it does not exist)."""
    from mlflow.exceptions import MlflowException

    try:
        model = _client().get_registered_model(name)
    except MlflowException:
        return {}
    return {alias: str(version) for alias, version in (model.aliases or {}).items()}


def set_alias(name: str, alias: str, version: str) -> None:
    _client().set_registered_model_alias(name, alias, version)


def set_version_tags(name: str, version: str, tags: Mapping[str, Any]) -> None:
    client = _client()
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, str(value))


def _model_info(uri: str) -> Any:
    from mlflow.exceptions import MlflowException
    from mlflow.models import get_model_info

    try:
        return get_model_info(uri)
    except MlflowException as error:
        raise TrackingError(_describe_missing(uri, error.message)) from None
    except OSError as error:
        raise TrackingError(f"model {uri}: cannot read it ({error})") from None


def _describe_missing(uri: str, detail: str) -> str:
    if uri.startswith("models:/"):
        name, _, ref = uri[len("models:/"):].partition("@")
        if ref:
            known = aliases(name)
            if not registered_model_exists(name):
                return f"model {uri}: no registered model named {name!r}; run `python -m pipeline register` first"
            listed = ", ".join(f"{a} (v{v})" for a, v in sorted(known.items())) or "none"
            return f"model {uri}: registered model {name!r} has no alias {ref!r}; its aliases: {listed}"
    return f"model {uri}: not found ({detail.splitlines()[0] if detail else 'unknown error'})"


def input_shape(uri: str) -> tuple[int, ...] | None:
    """The (H, W, C) of the model's input signature, or None when it has no tensor signature."""
    signature = _model_info(uri).signature
    if signature is None or signature.inputs is None:
        return None
    specs = signature.inputs.inputs
    if len(specs) != 1 or not hasattr(specs[0], "shape"):
        return None
    return tuple(int(d) for d in specs[0].shape[1:])


def data_metadata(uri: str) -> dict[str, Any] | None:
    """The data description logged with the model (class names, normalization, ...)."""
    metadata = _model_info(uri).metadata or {}
    value = metadata.get(DATA_METADATA_KEY)
    return dict(value) if isinstance(value, Mapping) else None


def input_kind(uri: str) -> str:
    """``raw`` or ``normalized``: what the model at ``uri`` takes (see ``INPUT_METADATA_KEY``)."""
    metadata = _model_info(uri).metadata or {}
    return str(metadata.get(INPUT_METADATA_KEY, LEGACY_INPUT))


def load_keras(uri: str) -> Any:
    """The Keras model behind a ``models:/`` or ``runs:/`` URI."""
    import mlflow
    from mlflow.exceptions import MlflowException

    _model_info(uri)  # a clear message for an unknown name, version or alias
    try:
        return mlflow.keras.load_model(uri)
    except MlflowException as error:
        raise TrackingError(_describe_missing(uri, error.message)) from None


MODEL_URI_SCHEMES = ("models:/", "runs:/")


def is_model_uri(uri: str) -> bool:
    """A registry or run model URI (``models:/<name>@<alias>``, ``models:/<name>/<version>``, ``runs:/...``)."""
    return uri.startswith(MODEL_URI_SCHEMES)


def champion_uri(model_name: str) -> str:
    return f"models:/{model_name}@champion"


MODEL_URI_FORMS = "models:/<name>@<alias>, models:/<name>/<version>, runs:/<run id>/model"
