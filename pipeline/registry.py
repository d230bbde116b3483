"""One registry per kind of pluggable thing: learning-rate schedules, tuners, data sources, architectures,
tracking backends.

A name is declared once, with what it needs, in a ``Registry``; everything else reads it:
``pipeline.config`` validates ``params.yaml`` against the registered names (and adds each schedule's
knobs to ``search_space``), the model, the tuner factory, the data stage, the report and the ablation
look entries up by name. An unknown name fails with the list of known ones.

This module is plain Python: validation runs before TensorFlow loads, so a declaration carries no
TensorFlow object. A kind whose code needs TensorFlow or KerasTuner (tuners, architectures) or a
data library (sources) is declared here and *implemented* in its folder, which binds the code to the
declared name with ``Registry.implement``; ``tests/test_registries.py`` checks that every declared
name is implemented and nothing undeclared is. See DESIGN.md, "How to add each kind".
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from pipeline.errors import ConfigError, shorten
from pipeline.hparams import HParam, Kind, parse_hparam

# Modules outside the repository that register entries, comma-separated (``PIPELINE_PLUGINS=my_schedules``):
# imported before the first registry is read, so before params.yaml is validated.
PLUGINS_VARIABLE = "PIPELINE_PLUGINS"
_plugins_loaded = False


def load_plugins() -> None:
    """Import the modules ``$PIPELINE_PLUGINS`` names, once; a module that cannot be imported is one line."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True  # first: a plugin reads the registries while it registers
    for module in filter(None, (part.strip() for part in os.environ.get(PLUGINS_VARIABLE, "").split(","))):
        try:
            importlib.import_module(module)
        except Exception as error:  # noqa: BLE001 - whatever a user's module raises, it did not register
            raise ConfigError(f"{PLUGINS_VARIABLE}: cannot import {module!r} ({type(error).__name__}: "
                              f"{shorten(str(error), 200)}); allowed: importable module names, comma-separated"
                              ) from None


class Named(Protocol):
    name: str


T = TypeVar("T", bound=Named)


class UnknownNameError(ValueError):
    """A name no entry of a registry declares; the message lists the known ones on one line."""


class Registry(Generic[T]):
    """Entries of one kind by name, in registration order.

    ``key`` is where params.yaml names an entry (``tune.tuner``): a lookup's error starts with it.
    Iterating or ``in`` reads the registry as it is now, so a check built from a registry sees later
    registrations.
    """

    def __init__(self, kind: str, key: str, builtins: str | None = None) -> None:
        self.kind = kind
        self.key = key
        # a foundation module that registers the built-in entries, imported on first use (so that
        # whoever reads the registry sees them, whatever it imported first)
        self._builtins = builtins
        self._entries: dict[str, T] = {}
        self._implementations: dict[str, Any] = {}

    def _load_builtins(self) -> dict[str, T]:
        if self._builtins is not None:
            module, self._builtins = self._builtins, None
            importlib.import_module(module)
        return self._entries

    def _load(self) -> dict[str, T]:
        """The entries, once the built-ins and the plugins have registered theirs (reads go through here)."""
        self._load_builtins()
        load_plugins()
        return self._entries

    def register(self, entry: T) -> T:
        """Declare ``entry`` under ``entry.name``; a second declaration of a name is a programming error."""
        if not isinstance(entry.name, str) or not entry.name:
            raise ValueError(f"{self.kind}: a name must be a non-empty string, got {entry.name!r}")
        if entry.name in self._load_builtins():  # built-ins first: they keep their order
            raise ValueError(f"{self.kind} {entry.name!r} is registered twice")
        self._entries[entry.name] = entry
        return entry

    def unregister(self, name: str) -> None:
        """Remove ``name`` (tests that register a temporary entry clean up with this)."""
        self._entries.pop(name, None)
        self._implementations.pop(name, None)

    def names(self) -> tuple[str, ...]:
        return tuple(self._load())

    def unknown(self, name: Any = None) -> UnknownNameError:
        """The one-line error: ``tune.tuner: unknown tuner 'x'; allowed: bohb, ...`` (just ``unknown tuner;
        allowed: ...`` without a name: a validation message names the key and the value already)."""
        shown = "" if name is None else f"{self.key}: unknown {self.kind} {name!r}"
        return UnknownNameError(f"{shown or f'unknown {self.kind}'}; allowed: {', '.join(self._load())}")

    def get(self, name: str) -> T:
        try:
            return self._load()[name]
        except (KeyError, TypeError):
            raise self.unknown(name) from None

    def check(self, name: Any) -> str:
        """``name`` if registered, else the one-line error (a pydantic validator's ValueError)."""
        if not isinstance(name, str) or name not in self._load():
            raise self.unknown()  # pydantic's message adds "(got 'x')"
        return name

    def implement(self, name: str, implementation: Any) -> Any:
        """Bind the code of the declared ``name`` (a class, a function, an object); returns it unchanged."""
        self.get(name)  # only a declared name can be implemented
        self._implementations[name] = implementation  # a reloaded module rebinds it
        return implementation

    def implementation(self, name: str) -> Any:
        self.get(name)
        try:
            return self._implementations[name]
        except KeyError:
            raise LookupError(f"{self.kind} {name!r} is declared but not implemented: import the module that "
                              f"calls implement({name!r}, ...) before using it") from None

    def implemented(self) -> tuple[str, ...]:
        return tuple(self._implementations)

    def __contains__(self, name: object) -> bool:
        return name in self._load()

    def __iter__(self) -> Iterator[str]:
        return iter(tuple(self._load()))

    def __len__(self) -> int:
        return len(self._load())

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self._load())})"


# ------------------------------------------------------------------------ what the kinds declare
@dataclass(frozen=True)
class Knob:
    """A ``search_space`` key that an entry adds (a schedule's decay rate): its type, bounds and default.

    ``default`` is written as in params.yaml (a value, ``{choices: [...]}`` or ``{min, max}``).
    """

    name: str
    kind: Kind
    default: Any
    ge: float | None = None
    le: float | None = None
    gt: float | None = None
    lt: float | None = None
    allowed: tuple[Any, ...] | None = None

    def parse(self, value: Any) -> HParam:
        return parse_hparam(value, kind=self.kind, allowed=self.allowed, ge=self.ge, le=self.le, gt=self.gt,
                            lt=self.lt)


# rate(values, epoch, total_epochs) -> learning rate; ``values`` holds learning_rate and the knobs
RateFunction = Callable[[Mapping[str, Any], float, float], float]


@dataclass(frozen=True)
class Schedule:
    """A learning-rate schedule: a pure function of the (fractional) epoch, and the knobs it reads."""

    name: str
    rate: RateFunction
    knobs: tuple[Knob, ...] = ()
    # True: it anneals over the run's total epochs, which the caller must then know.
    needs_total: bool = False
    doc: str = ""


@dataclass(frozen=True)
class TunerKind:
    """A search algorithm; ``reads`` are the ``tune`` keys it uses (the others are ignored by it)."""

    name: str
    reads: tuple[str, ...]
    # Hyperband's brackets decide the epochs of each trial (else each trial runs tune.max_epochs).
    hyperband_family: bool = False
    doc: str = ""


@dataclass(frozen=True)
class SourceKind:
    """A data source; ``reads`` are the ``data`` keys it uses besides ``source``."""

    name: str
    reads: tuple[str, ...] = ()
    doc: str = ""


@dataclass(frozen=True)
class ArchitectureKind:
    """An architecture family: how one down-sampling block is built (``pipeline.model.architectures``)."""

    name: str
    doc: str = ""


@dataclass(frozen=True)
class TrackingBackend:
    """A tracking store behind ``pipeline.tracking.api.Tracker`` (``mlflow.backend``; MLflow built in)."""

    name: str
    doc: str = ""


SCHEDULES: Registry[Schedule] = Registry("lr_schedule", "search_space.lr_schedule", builtins="pipeline.lr_schedules")
TUNERS: Registry[TunerKind] = Registry("tuner", "tune.tuner")
SOURCES: Registry[SourceKind] = Registry("data source", "data.source")
ARCHITECTURES: Registry[ArchitectureKind] = Registry("architecture", "search_space.architecture")
TRACKING_BACKENDS: Registry[TrackingBackend] = Registry("tracking backend", "mlflow.backend")


def schedule_knobs(registry: Registry[Schedule] = SCHEDULES) -> dict[str, Knob]:
    """Every registered schedule's knobs by name, first declaration order; a knob shared by several
    schedules (``cosine_floor``) must be declared the same way by each."""
    knobs: dict[str, Knob] = {}
    for name in registry:
        for knob in registry.get(name).knobs:
            if knobs.setdefault(knob.name, knob) != knob:
                raise ValueError(f"lr_schedule {name!r} declares knob {knob.name!r} unlike another schedule does")
    return knobs


def knob_users(registry: Registry[Schedule] = SCHEDULES) -> dict[str, frozenset[str]]:
    """knob -> the schedules that read it (the report and the ablation use it: a knob acts only there)."""
    users: dict[str, set[str]] = {}
    for name in registry:
        for knob in registry.get(name).knobs:
            users.setdefault(knob.name, set()).add(name)
    return {knob: frozenset(names) for knob, names in users.items()}


# --------------------------------------------------------- built-in declarations (code in the folders)
_HYPERBAND_KEYS = ("objective", "max_epochs", "factor", "hyperband_iterations")
_TRIAL_KEYS = ("objective", "max_epochs", "max_trials")
for _tuner in (
    TunerKind("bohb", (*_HYPERBAND_KEYS, "initial_points"), hyperband_family=True,
              doc="Hyperband brackets, configurations drawn from a TPE-style density model (pipeline/tuning/bohb.py)"),
    TunerKind("hyperband", _HYPERBAND_KEYS, hyperband_family=True, doc="KerasTuner's Hyperband"),
    TunerKind("random", _TRIAL_KEYS, doc="KerasTuner's RandomSearch"),
    TunerKind("bayesian", (*_TRIAL_KEYS, "bayesian_initial_points"),
              doc="KerasTuner's BayesianOptimization (a Gaussian process)"),
):
    TUNERS.register(_tuner)

for _source in (
    SourceKind("digits", doc="scikit-learn's 8x8 digits, built in and offline"),
    SourceKind("keras", ("keras_dataset",), doc="MNIST, Fashion-MNIST or CIFAR-10 through keras.datasets"),
    SourceKind("images", ("images_dir", "image_size", "color_mode", "on_bad_image"),
               doc="one sub-folder of images per class"),
):
    SOURCES.register(_source)

for _architecture in (
    ArchitectureKind("plain", "conv-BN-act, max-pool"),
    ArchitectureKind("vgg", "two conv-BN-act, max-pool"),
    ArchitectureKind("resnet", "residual blocks with a stride-2 convolution and projection shortcuts"),
    ArchitectureKind("separable", "depthwise-separable conv-BN-act, max-pool"),
):
    ARCHITECTURES.register(_architecture)

# the code: pipeline/tracking/backends.py binds each to its Tracker class
TRACKING_BACKENDS.register(TrackingBackend("mlflow", "MLflow runs and Model Registry (SQLite at the repository root, "
                                                     "or a tracking server)"))

del _tuner, _source, _architecture

__all__ = ["ARCHITECTURES", "SCHEDULES", "SOURCES", "TRACKING_BACKENDS", "TUNERS", "ArchitectureKind", "Knob",
           "Registry", "Schedule", "SourceKind", "TrackingBackend", "TunerKind", "UnknownNameError", "knob_users",
           "schedule_knobs"]
