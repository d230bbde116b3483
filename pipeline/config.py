"""The schema of ``params.yaml``: validated once, typed, shared by every stage.

This module must stay free of TensorFlow/Keras/MLflow imports: a mistake in
``params.yaml`` has to fail in about a second, before any heavy import.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Collection
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

from pipeline import registry
from pipeline.errors import ConfigError, short_repr, shorten
from pipeline.hparams import Choice, Fixed, HParam, Range, parse_hparam
from pipeline.strict_yaml import load_yaml
from pipeline.time_budget import parse_duration

DEFAULT_PARAMS = Path("params.yaml")


class Section(BaseModel):
    """Every section forbids unknown keys so a typo never silently falls back to a default."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------- data
class DataConfig(Section):
    # a name in pipeline.registry.SOURCES (the code: pipeline/data/sources/)
    source: Annotated[str, AfterValidator(registry.SOURCES.check)] = "digits"
    keras_dataset: Literal["mnist", "fashion_mnist", "cifar10"] = "mnist"
    images_dir: str = "data/raw"
    image_size: tuple[Annotated[int, Field(ge=4, le=1024)], Annotated[int, Field(ge=4, le=1024)]] = (32, 32)
    color_mode: Literal["grayscale", "rgb"] = "grayscale"
    on_bad_image: Literal["error", "skip"] = "error"
    # A stratified subsample, for quick runs on large datasets (null keeps everything).
    max_samples: Annotated[int, Field(ge=20)] | None = None


class SplitConfig(Section):
    validation: Annotated[float, Field(gt=0.0, lt=0.5)] = 0.15
    test: Annotated[float, Field(gt=0.0, lt=0.5)] = 0.15


class PreprocessConfig(Section):
    # standardize: per-channel mean/std of the training split; minmax: per-channel min/max
    # of the training split to [0, 1]; none: raw pixel values.
    normalization: Literal["standardize", "minmax", "none"] = "standardize"


# ------------------------------------------------------------------ search space
INITIALIZERS = (
    "zeros",
    "random_normal",
    "random_uniform",
    "glorot_uniform",
    "glorot_normal",
    "he_normal",
    "he_uniform",
    "lecun_normal",
)
REGULARIZERS = ("none", "l1", "l2", "l1_l2")
OPTIMIZERS = ("sgd", "momentum", "nesterov", "rmsprop", "adam", "adamw")
# The registered names when this module was loaded (the checks themselves read the registries live).
LR_SCHEDULES = registry.SCHEDULES.names()
ARCHITECTURES = registry.ARCHITECTURES.names()
HEADS = ("gap", "flatten")


def _hp(kind: str, *, allowed: Collection[Any] | None = None, ge: float | None = None,
        le: float | None = None, gt: float | None = None, lt: float | None = None) -> Any:
    """An ``HParam`` field: a fixed value, ``{choices: [...]}`` or ``{min, max, ...}``.

    ``allowed`` is a tuple of values or a ``Registry`` (its names, as registered at validation time).
    """

    def validate(value: Any) -> HParam:
        return parse_hparam(value, kind=kind, allowed=allowed, ge=ge, le=le, gt=gt, lt=lt)

    # Dumps back to the params.yaml form (a scalar, {choices} or {min, max, ...}).
    return Annotated[HParam, BeforeValidator(validate), PlainSerializer(lambda hp: hp.describe())]


class _SearchSpaceSection(Section):
    """What KerasTuner searches. Each key is fixed (a scalar) or searched.

    Learning-rate schedules declare their own knobs (``pipeline.registry.Knob``): they are keys here too,
    after ``lr_schedule``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)


class _SearchSpaceKeys(_SearchSpaceSection):
    """The search_space keys other than the schedules' knobs."""

    # architecture family and size (the guide's "model selection"); families: pipeline.registry.ARCHITECTURES
    architecture: _hp("str", allowed=registry.ARCHITECTURES) = Choice(("plain", "vgg", "resnet", "separable"))
    blocks: _hp("int", ge=1, le=8) = Range(1, 3, step=1)
    filters: _hp("int", ge=1, le=1024) = Choice((16, 32))
    kernel_size: _hp("int", ge=1, le=11) = Choice((3, 5))
    head: _hp("str", allowed=HEADS) = Choice(("gap", "flatten"))
    dense_units: _hp("int", ge=0, le=4096) = Choice((32, 64))
    activation: _hp("str", allowed=("relu", "elu", "gelu", "tanh", "swish")) = Fixed("relu")
    # weight initialization (section 2.1.1)
    init: _hp("str", allowed=INITIALIZERS) = Choice(("zeros", "random_normal", "glorot_uniform", "he_normal"))
    init_stddev: _hp("float", gt=0.0, le=10.0) = Fixed(0.05)
    # regularization (section 2.1.2)
    regularizer: _hp("str", allowed=REGULARIZERS) = Choice(("none", "l1", "l2", "l1_l2"))
    reg_strength: _hp("float", gt=0.0, le=1.0) = Range(1e-5, 1e-2, sampling="log")
    dropout: _hp("float", ge=0.0, lt=1.0) = Range(0.0, 0.5, step=0.25)
    batch_norm: _hp("bool") = Choice((True, False))
    weight_decay: _hp("float", ge=0.0, le=1.0) = Range(1e-5, 1e-2, sampling="log")
    # optimizers (section 2.3) and learning rate (section 2.2)
    optimizer: _hp("str", allowed=OPTIMIZERS) = Choice(("sgd", "momentum", "nesterov", "rmsprop", "adam", "adamw"))
    momentum: _hp("float", ge=0.0, lt=1.0) = Fixed(0.9)
    learning_rate: _hp("float", gt=0.0, le=10.0) = Range(1e-4, 1e-1, sampling="log")
    # schedules: pipeline.registry.SCHEDULES (built-ins in pipeline/lr_schedules.py); their knobs follow here
    lr_schedule: _hp("str", allowed=registry.SCHEDULES) = Choice(LR_SCHEDULES)
    # data augmentation (section 2.1.2: more diverse data against overfitting); active in
    # training only. Sizes are fractions of the image (translate, zoom) or degrees (rotate),
    # so the same values fit 8x8 digits and 224x224 photos.
    augment_translate: _hp("float", ge=0.0, le=0.5) = Fixed(0.0)
    augment_rotate: _hp("float", ge=0.0, le=180.0) = Fixed(0.0)
    augment_zoom: _hp("float", ge=0.0, lt=1.0) = Fixed(0.0)
    augment_flip: _hp("bool") = Fixed(False)  # horizontal; not for digits or text
    # loss and batch
    label_smoothing: _hp("float", ge=0.0, lt=1.0) = Fixed(0.0)
    batch_size: _hp("int", ge=1, le=65536) = Choice((32, 64))


def _knob_field(knob: registry.Knob) -> tuple[Any, Any]:
    annotation = Annotated[HParam, BeforeValidator(knob.parse), PlainSerializer(lambda hp: hp.describe())]
    return annotation, knob.parse(knob.default)


def _with_schedule_knobs(keys: type[Section]) -> type[Section]:
    """``keys`` with every registered schedule's knobs inserted after ``lr_schedule`` (schema order is the
    order of the hyperparameters in KerasTuner and of the trial parameters in MLflow)."""
    fields: dict[str, Any] = {}
    knobs = registry.schedule_knobs()
    clash = sorted(set(knobs) & set(keys.model_fields))
    if clash:
        raise ValueError(f"lr_schedule knob(s) {', '.join(clash)} are search_space keys already")
    for name, info in keys.model_fields.items():
        fields[name] = (info.annotation, info)
        if name == "lr_schedule":
            fields.update({knob.name: _knob_field(knob) for knob in knobs.values()})
    return create_model("SearchSpaceConfig", __base__=_SearchSpaceSection, __doc__=_SearchSpaceSection.__doc__,
                        __module__=__name__, **fields)


SearchSpaceConfig = _with_schedule_knobs(_SearchSpaceKeys)


# ------------------------------------------------------------------------ stages
def _state_folder(value: str) -> str:
    """A folder the search may own: it deletes its project there when ``tune.resume`` is false."""
    if not value.strip() or Path(value).expanduser().resolve() in (Path("/"), Path.home()):
        raise ValueError("must be a folder of its own for the tuner's state (e.g. .tuner), not / or your home")
    return value


def _host(value: str) -> str:
    import ipaddress
    import re

    try:
        ipaddress.ip_address(value)
        return value
    except ValueError:
        pass
    label = r"[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?"
    if not re.fullmatch(rf"(?=.{{1,253}}$){label}(\.{label})*", value):
        raise ValueError("allowed: a host name or an IP address such as 127.0.0.1 (the port is tune.chief_port)")
    return value


# A wall-clock budget: null (none) or seconds; params.yaml may write 90, 90s, 45m, 2h or 1h30m.
TimeBudgetField = Annotated[float | None, BeforeValidator(parse_duration)]


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty or blank")
    return value


class TuneConfig(Section):
    # a name in pipeline.registry.TUNERS (the code: pipeline/tuning/tuners.py)
    tuner: Annotated[str, AfterValidator(registry.TUNERS.check)] = "bohb"
    objective: Literal["val_accuracy", "val_loss"] = "val_accuracy"
    max_epochs: Annotated[int, Field(ge=1, le=10000)] = 9
    factor: Annotated[int, Field(ge=2, le=100)] = 3
    hyperband_iterations: Annotated[int, Field(ge=1, le=100)] = 1
    # random/bayesian only: how many trials, each trained for max_epochs.
    max_trials: Annotated[int, Field(ge=1, le=100000)] = 20
    # bayesian only: random trials before the Gaussian process takes over (KerasTuner's own
    # default, 3 per searched hyperparameter, would spend a small budget on random trials alone).
    bayesian_initial_points: Annotated[int, Field(ge=1, le=10000)] = 5
    early_stopping_patience: Annotated[int, Field(ge=0, le=1000)] = 3
    # Stop the search when this many trials in a row fail (KerasTuner's own limit).
    max_consecutive_failed_trials: Annotated[int, Field(ge=1, le=1000)] = 5
    resume: bool = True
    # Where KerasTuner keeps its state; persisted across `dvc repro` so a search resumes.
    directory: Annotated[str, AfterValidator(_state_folder)] = ".tuner"
    # Start a fresh process after this many trials (0: never). TensorFlow keeps ~8 MB per built
    # model that clear_session() does not return; a fresh process resumes from the tuner state.
    trials_per_process: Annotated[int, Field(ge=0, le=100000)] = 20
    workers: Annotated[int, Field(ge=1, le=256)] = 1
    # a host name, an IPv4 or an IPv6 address (no scheme, no port: that is chief_port)
    chief_address: Annotated[str, AfterValidator(_host)] = "127.0.0.1"
    chief_port: Annotated[int, Field(ge=1, le=65535)] = 8000
    # Keras' per-batch progress bars; off by default, the stage prints a line per trial.
    keras_verbose: bool = False
    # Configurations every tuner tries first (as Ray Tune's points_to_evaluate), each a mapping of
    # search-space keys to values; keys left out, fixed, or outside the space are drawn as usual.
    initial_points: list[dict[str, Any]] = []
    # Wall-clock budget of one `tune` run (Optuna's timeout): no trial starts once it is spent, and no epoch
    # that would end past it; the cut trial is scored on what it reached. Each rerun gets it anew.
    time_budget: TimeBudgetField = None
    # What Hyperband's low rungs save on: fewer epochs (`epochs`), or fewer epochs on as large a share of the
    # training set (`data`: a rung at a third of max_epochs trains on the first third of one seeded
    # permutation; a continued trial sees a superset), or `data` from 20,000 training images (`auto`).
    # Part of what a trial means: changing it starts another search.
    fidelity: Literal["epochs", "data", "auto"] = "epochs"


class TrainConfig(Section):
    epochs: Annotated[int, Field(ge=1, le=10000)] = 20
    # null (default): train all `epochs` and keep the last weights, where the annealing schedules
    # end; a number stops after that many epochs without improvement and keeps the best epoch
    # (on a small validation split that picks a lucky epoch more often than a better model).
    early_stopping_patience: Annotated[int, Field(ge=0, le=1000)] | None = None
    # The final model averages the search's `configurations` best distinct configurations, each
    # retrained for `epochs` with `seeds` seeds (seed, seed+1, ...): seeds average out the luck
    # of one initialization without trusting a second configuration that only a small
    # validation split ranks close to the first.
    configurations: Annotated[int, Field(ge=1, le=20)] = 1
    seeds: Annotated[int, Field(ge=1, le=20)] = 3
    # When validation cannot tell the search's best configuration from the best of tune.initial_points
    # (it leads by less than the validation noise), the final model averages both, each with `seeds`
    # seeds: a lead that small is the luck of the validation images as often as a better model.
    hedge_initial_point: bool = True
    # Members whose retrained validation score is more than this below the best member's are
    # left out of the average (a weak member drags an average down); never less than the validation
    # set's own noise (pipeline.objective.noise_allowance), or the average keeps only the luckiest.
    ensemble_margin: Annotated[float, Field(ge=0.0, le=1.0)] = 0.01
    # A retrained configuration whose validation score falls short of the search's by more
    # than this (or than the validation set's noise, if larger) is replaced by the trial's own
    # checkpoint, with a warning and a run tag.
    reproduce_tolerance: Annotated[float, Field(ge=0.0, le=1.0)] = 0.01
    # Wall-clock budget of one `train` run: the model training when it runs out ends at its next
    # epoch end and no further one starts (the first always trains); null = none.
    time_budget: TimeBudgetField = None


class RegisterConfig(Section):
    model_name: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9_.\- ]+$")] = "digits-cnn"
    # The gate for alias `challenger`: a model below it is registered without an alias.
    min_accuracy: Annotated[float, Field(ge=0.0, le=1.0)] = 0.5
    require_beat_baseline: bool = True  # test accuracy above evaluate's best scikit-learn baseline


class PromoteConfig(Section):
    # The challenger must beat the champion's test accuracy by at least this much.
    min_improvement: Annotated[float, Field(ge=0.0, le=1.0)] = 0.0
    min_accuracy: Annotated[float, Field(ge=0.0, le=1.0)] = 0.5


class ReportConfig(Section):
    # Below this many finished trials per choice a verdict says "not enough trials".
    min_trials_per_choice: Annotated[int, Field(ge=1, le=1000)] = 3
    top_trials: Annotated[int, Field(ge=1, le=100)] = 5


# The ablation's default variants: both sides of each of the guide's questions, so that whatever the
# best configuration is, changing one value answers it (a value equal to the best's own is skipped).
# An inner tuple is "the first of these that differs from the best's own": one run answers the question
# whichever side the best configuration is on.
DEFAULT_ABLATIONS: dict[str, tuple[Any, ...]] = {
    "init": ("zeros", ("glorot_uniform", "he_normal")),
    "optimizer": (("momentum", "adamw"),),
    "lr_schedule": (("constant", "cosine"),),
    "architecture": ("plain",),
    "regularizer": (("none", "l2"),),
    "dropout": ((0.0, 0.25),),
}
# The guide's claim "a schedule or an adaptive optimizer beats plain SGD at a constant rate" is about
# two keys at once: a named baseline changes both (the other values stay the best configuration's).
DEFAULT_BASELINES: dict[str, dict[str, Any]] = {"plain_sgd": {"optimizer": "sgd", "lr_schedule": "constant"}}


def _search_space_value(key: Any, item: Any) -> Any:
    """``item`` checked (and typed) by search_space ``key``'s own rule, whatever the search's choices are."""
    if key not in SearchSpaceConfig.model_fields:
        raise ValueError(f"{short_repr(key)}: not a search_space key; allowed: "
                         f"{', '.join(SearchSpaceConfig.model_fields)}")
    if isinstance(item, (dict, list, tuple)):
        raise ValueError(f"{key}: {short_repr(item)} is not a single value")
    try:
        return SearchSpaceConfig.model_validate({key: item}).model_dump(mode="python")[key]
    except ValidationError as error:
        raise ValueError(f"{key}: {error.errors()[0]['msg'].removeprefix('Value error, ')}") from None


class RateGridConfig(Section):
    """``ablate.learning_rates``: the rates each side of a comparison is tried at, per optimizer family."""

    adaptive: tuple[float, ...] = (1e-3, 3e-3, 1e-2)  # adam, adamw, rmsprop
    sgd: tuple[float, ...] = (1e-2, 3e-2, 1e-1)  # sgd, momentum, nesterov

    @field_validator("adaptive", "sgd", mode="before")
    @classmethod
    def _a_small_ascending_grid(cls, value: Any) -> Any:
        if not isinstance(value, (list, tuple)) or not 1 <= len(value) <= 7:
            raise ValueError("expected a list of 1 to 7 learning rates, e.g. [0.001, 0.003, 0.01]")
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v <= 10 for v in value):
            raise ValueError(f"{short_repr(value)}: every rate must be a number in (0, 10]")
        if list(value) != sorted(set(value)):
            raise ValueError(f"{short_repr(value)}: rates must be distinct and ascending")
        return tuple(float(v) for v in value)


class AblateConfig(Section):
    """Controlled ablations of the best configuration (stage ``ablate``)."""

    enabled: bool = True  # false: the stage writes an empty result and the report uses the search's evidence
    # verdict runs per variant, seed-matched with the best's; the power rule may add up to max_seeds
    seeds: Annotated[int, Field(ge=2, le=1000)] = 3
    max_seeds: Annotated[int, Field(ge=2, le=1000)] = 5
    # seeds are added (up to max_seeds) until a difference of min_effect is found with this probability
    power: Annotated[float, Field(ge=0.5, le=0.99)] = 0.8
    # each side at its own best learning rate from learning_rates (a nuisance hyperparameter); false: every
    # run at the best configuration's rate
    retune_rate: bool = True
    learning_rates: RateGridConfig = RateGridConfig()
    rate_seeds: Annotated[int, Field(ge=1, le=100)] = 1  # selection runs per rate (seeds of their own)
    # epochs of a selection run; null: ablate.epochs
    rate_epochs: Annotated[int, Field(ge=1, le=10000)] | None = 10
    # per run; null: train.epochs (the final training budget)
    epochs: Annotated[int, Field(ge=1, le=10000)] | None = 8
    # A variant is called better or worse only when the paired test says so *and* its mean effect
    # on validation accuracy is at least this large.
    min_effect: Annotated[float, Field(ge=0.0, le=1.0)] = 0.02
    # Processes that train the runs, each with its share of the cores (1: in the stage's own
    # process). Many small networks train faster side by side than with TensorFlow's threads.
    workers: Annotated[int, Field(ge=1, le=64)] = 2
    # Wall clock for one ablate run (45m, 2h, 90s, seconds; null: none). No run is cut short (that would
    # bias its comparison): the plan is sized up front from the search's seconds per epoch, comparisons
    # that do not fit are left out (named), and seeds for power are added only where they fit.
    time_budget: TimeBudgetField = None
    # search_space key -> values to try in place of the best configuration's own ([] skips the key)
    dimensions: dict[str, tuple[Any, ...]] = DEFAULT_ABLATIONS
    # name -> {search_space key: value, ...}: variants that change several keys together ({} for none)
    baselines: dict[str, dict[str, Any]] = DEFAULT_BASELINES

    @field_validator("dimensions", mode="before")
    @classmethod
    def _values_fit_their_keys(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            raise ValueError("expected a mapping of search_space keys to lists of values, e.g. {init: [zeros]}")
        checked = {}
        for key, values in value.items():
            if not isinstance(values, (list, tuple)):
                raise ValueError(f"{key}: expected a list of values, e.g. [{short_repr(values)}]")
            # an item is a value, or a list of values of which the first that differs from the best's runs
            checked[key] = tuple(tuple(_search_space_value(key, v) for v in item) if isinstance(item, (list, tuple))
                                 else _search_space_value(key, item) for item in values)
            if any(isinstance(item, tuple) and len(item) < 2 for item in checked[key]):
                raise ValueError(f"{key}: a list inside the list needs two or more values (one of them runs)")
        return checked

    @field_validator("baselines", mode="before")
    @classmethod
    def _baselines_fit_the_space(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            raise ValueError("expected a mapping of names to {search_space key: value}, e.g. "
                             "{plain_sgd: {optimizer: sgd, lr_schedule: constant}}")
        checked = {}
        for name, changes in value.items():
            if not isinstance(changes, dict) or not changes:
                raise ValueError(f"{short_repr(name)}: expected a non-empty mapping of search_space keys to values")
            checked[str(name)] = {key: _search_space_value(key, item) for key, item in changes.items()}
        return checked

    @model_validator(mode="after")
    def _budget_and_nuisance(self) -> AblateConfig:
        if self.max_seeds < self.seeds:
            raise ValueError(f"max_seeds ({self.max_seeds}) is below seeds ({self.seeds}); allowed: max_seeds >= seeds")
        named = "learning_rate" in self.dimensions or any("learning_rate" in c for c in self.baselines.values())
        if self.retune_rate and named:
            raise ValueError("learning_rate is re-tuned for every variant (retune_rate: true), so it cannot be an "
                             "ablated dimension or a baseline's change; allowed: remove it, or retune_rate: false")
        return self


class MlflowConfig(Section):
    # The tracking store's settings (the section keeps its name for existing params.yaml files).
    # a name in pipeline.registry.TRACKING_BACKENDS (the code: pipeline/tracking/, see pipeline.tracking.api)
    backend: Annotated[str, AfterValidator(registry.TRACKING_BACKENDS.check)] = "mlflow"
    experiment: Annotated[str, AfterValidator(_not_blank)] = "cnn-tuning"
    # null: sqlite file mlflow.db at the repository root (MLFLOW_TRACKING_URI overrides).
    tracking_uri: str | None = None
    # How long a tracking server may stay unreachable (retries included) before a search stops
    # with one clear line; finished trials are kept and a rerun resumes. MLflow's own default
    # (7 retries x 120 s) would leave a search silent for a quarter of an hour.
    outage_seconds: Annotated[int, Field(ge=5, le=3600)] = 60


# How the CNNs compute (pipeline.model.precision): auto = mixed_float16 where every GPU has tensor
# cores, float32 elsewhere; the other values are Keras dtype policies, taken as given.
Precision = Literal["auto", "float32", "mixed_float16", "mixed_bfloat16"]


with warnings.catch_warnings():
    # `register` is a stage name; it shadows only ABCMeta.register on the class, not on instances.
    warnings.filterwarnings("ignore", message='Field name "register"')

    class Params(Section):
        seed: Annotated[int, Field(ge=0, le=2**31 - 1)] = 42
        precision: Precision = "auto"
        data: DataConfig = DataConfig()
        split: SplitConfig = SplitConfig()
        preprocess: PreprocessConfig = PreprocessConfig()
        search_space: SearchSpaceConfig = SearchSpaceConfig()
        tune: TuneConfig = TuneConfig()
        train: TrainConfig = TrainConfig()
        register: RegisterConfig = RegisterConfig()
        promote: PromoteConfig = PromoteConfig()
        report: ReportConfig = ReportConfig()
        ablate: AblateConfig = AblateConfig()
        mlflow: MlflowConfig = MlflowConfig()

        @model_validator(mode="after")
        def _split_leaves_training_data(self) -> Params:
            if self.split.validation + self.split.test >= 0.8:
                raise ValueError(
                    f"split.validation + split.test = {self.split.validation + self.split.test:g} "
                    "leaves too little training data; allowed: a sum below 0.8"
                )
            return self

        @model_validator(mode="after")
        def _initial_points_fit_the_space(self) -> Params:
            for index, point in enumerate(self.tune.initial_points):
                for key in point:
                    if key not in SearchSpaceConfig.model_fields:
                        raise ValueError(f"tune.initial_points[{index}].{short_repr(key)}: not a search_space key; "
                                         f"allowed: {', '.join(SearchSpaceConfig.model_fields)}")
            return self


# ------------------------------------------------------------------------ loading
def _describe_allowed_keys(loc: tuple[Any, ...]) -> str:
    """Field names allowed at the parent of ``loc`` (for 'unknown key' messages)."""
    model: Any = Params
    for part in loc[:-1]:
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return ""
        model = field.annotation
    fields = getattr(model, "model_fields", None)
    return ", ".join(fields) if fields else ""


def format_validation_error(error: ValidationError, source: str) -> list[str]:
    """One line per problem: ``params.yaml: tune.factor: <what> (got <value>)``."""
    lines = []
    for item in error.errors():
        loc = tuple(item["loc"])
        path = ".".join(str(p) for p in loc) or "(top level)"
        kind = item["type"]
        if kind == "extra_forbidden":
            allowed = _describe_allowed_keys(loc)
            message = f"unknown key; allowed keys: {allowed}" if allowed else "unknown key"
        else:
            message = shorten(item["msg"].removeprefix("Value error, "), 300)
        got = item.get("input")
        # Bounded: the input may be a huge string or an expanded alias structure.
        shown = "" if kind == "missing" or isinstance(got, dict) else f" (got {short_repr(got)})"
        lines.append(f"{source}: {path}: {message}{shown}")
    return lines


def parse_params(raw: Any, source: str = "params.yaml") -> Params:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError([f"{source}: the top level must be a mapping of sections, got {type(raw).__name__}"])
    try:
        return Params.model_validate(raw)
    except ValidationError as error:
        raise ConfigError(format_validation_error(error, source)) from None


# A params file is a few kB; this bound only stops a wrong file (a dataset, a log) early.
MAX_PARAMS_BYTES = 10 * 1024 * 1024


def _read_text(path: Path) -> str:
    """The file's text; a byte that is not UTF-8 (even in a comment) is named by its offset."""
    try:
        if path.stat().st_size > MAX_PARAMS_BYTES:
            raise ConfigError(f"{path}: {path.stat().st_size:,} bytes; allowed: at most {MAX_PARAMS_BYTES:,}")
        data = path.read_bytes()
    except OSError as error:
        raise ConfigError(f"{path}: cannot read it ({error.strerror})") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise ConfigError(f"{path}: byte {error.start} (line {line}) is 0x{data[error.start]:02x}, not UTF-8; "
                          "allowed: a UTF-8 text file") from None


def load_params(path: str | Path = DEFAULT_PARAMS, overrides: dict[str, Any] | None = None) -> Params:
    """Read and validate ``params.yaml``; ``overrides`` maps dotted keys to values."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError([f"{path}: file not found (run from the repository root or pass --params)"])
    raw = load_yaml(_read_text(path), str(path))
    if raw is None:
        # An empty file is valid (DVC may create one), but say so: a wrong --params would look the same.
        print(f"note: {path} is empty: using the defaults", file=sys.stderr)
    for dotted, value in (overrides or {}).items():
        raw = _set_dotted(raw or {}, dotted, value)
    return parse_params(raw, source=str(path))


def _set_dotted(raw: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    node = raw
    *parents, leaf = dotted.split(".")
    for part in parents:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[leaf] = value
    return raw


def parse_override(text: str) -> tuple[str, Any]:
    """``key.path=value`` with a YAML value, as in ``dvc exp run -S``."""
    key, sep, value = text.partition("=")
    key = key.strip()
    shown = f"-S {shorten(text)!r}"
    if not sep or not key:
        raise ConfigError([f"{shown}: expected KEY=VALUE, e.g. tune.max_epochs=3"])
    if not all(key.split(".")):
        raise ConfigError([f"{shown}: {shorten(key)!r} has an empty part; allowed: dotted keys like tune.max_epochs"])
    try:
        return key, load_yaml(value, shown, root=key)
    except ConfigError as error:
        # The strict loader's message, said about the override instead of a file.
        raise ConfigError([line.replace(f"{shown}: not valid YAML", f"{shown}: the value is not valid YAML")
                           for line in error.lines]) from None


__all__ = [
    "Choice",
    "ConfigError",
    "Fixed",
    "HParam",
    "Params",
    "Range",
    "load_params",
    "parse_override",
    "parse_params",
]
