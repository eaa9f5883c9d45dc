"""Experiment configs: TOML files parsed into frozen dataclasses, unknown keys rejected.

A config has four tables, ``[data]``, ``[model]``, ``[optimizer]`` and ``[run]``, whose keys are the
fields of the dataclasses below. Every key has a type and a range; a file that names an unknown
table or key, gives a wrong type or an impossible value fails with one :class:`ConfigError` line
naming the key and what is allowed.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import types
import typing
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


class ConfigError(ValueError):
    """A config file or override that cannot be used; the message names the key."""


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Which data set, and where its files are."""

    # "curves" (generated), "mnist" (IDX files) or "faces" (generated from the Olivetti faces);
    # files are downloaded and verified when missing.
    dataset: str
    # Directory holding the data files; None means the cache directory (see data.py).
    data_dir: str | None = None
    # Seed of the generated CURVES set (fixed, so every run sees the same data).
    seed: int = 0
    # Use only the first cases of each split (None: all of them).
    num_train: int | None = None
    num_test: int | None = None

    def check(self) -> None:
        _one_of("data.dataset", self.dataset, ("curves", "mnist", "faces"))
        _at_least("data.num_train", self.num_train, 1)
        _at_least("data.num_test", self.num_test, 1)


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """The autoencoder and its initialization."""

    # Named layer sizes in models.py: "curves", "mnist", "faces" or "tiny" (tests).
    name: str
    # "logistic" outputs trained with cross-entropy (CURVES, MNIST) or "linear" outputs trained
    # with squared error (FACES). The reported error is the squared error either way.
    outputs: str = "logistic"
    # "sparse" (the paper's: num_connections N(0, init_scale^2) weights per unit) or "dense"
    # (Glorot normal, variance_scaling(init_scale^2, "fan_avg", "normal"); for comparison).
    init: str = "sparse"
    # Standard deviation of the sparse initialization's nonzero weights (Table 3 varies it).
    init_scale: float = 1.0
    # Nonzero incoming weights per unit of the sparse initialization.
    num_connections: int = 15

    def check(self) -> None:
        _one_of("model.name", self.name, ("curves", "mnist", "faces", "tiny"))
        _one_of("model.outputs", self.outputs, ("logistic", "linear"))
        _one_of("model.init", self.init, ("sparse", "dense"))
        _at_least("model.init_scale", self.init_scale, 0.0)
        _at_least("model.num_connections", self.num_connections, 1)


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
    """The optimizer and its momentum schedule (constant learning rate, as in the paper)."""

    # "nag" (nagmom.nesterov), "cm" (nagmom.momentum) or "sgd" (optax.sgd, no momentum).
    name: str
    learning_rate: float
    # "sutskever": mu_t = min(1 - 1 / (2 (floor(t / stage_length) + 1)), mu_max), eq. (5),
    # then min(mu_t, final_momentum) for the last final_steps updates (Table 2; 0 switches it
    # off). "rnn": warmup_momentum for warmup_steps updates, then mu_0 (Sec. 4).
    schedule: str = "sutskever"
    mu_max: float = 0.99
    stage_length: int = 250
    final_steps: int = 1000
    final_momentum: float = 0.9
    mu_0: float = 0.9
    warmup_steps: int = 1000
    warmup_momentum: float = 0.9

    def check(self) -> None:
        _one_of("optimizer.name", self.name, ("nag", "cm", "sgd"))
        _at_least("optimizer.learning_rate", self.learning_rate, 0.0)
        _one_of("optimizer.schedule", self.schedule, ("sutskever", "rnn"))
        _in_unit_interval("optimizer.mu_max", self.mu_max)
        _at_least("optimizer.stage_length", self.stage_length, 1)
        _at_least("optimizer.final_steps", self.final_steps, 0)
        _in_unit_interval("optimizer.final_momentum", self.final_momentum)
        _in_unit_interval("optimizer.mu_0", self.mu_0)
        _at_least("optimizer.warmup_steps", self.warmup_steps, 0)
        _in_unit_interval("optimizer.warmup_momentum", self.warmup_momentum)

    @property
    def momentum_summary(self) -> dict[str, float]:
        """The momentum hyperparameter that names a run: mu_max or mu_0 (0 for SGD)."""
        key = "mu_0" if self.schedule == "rnn" else "mu_max"
        return {key: 0.0 if self.name == "sgd" else getattr(self, key)}


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Length, batching, logging and seeds of one run."""

    # Number of updates.
    steps: int
    # Minibatch size (200 in the paper).
    batch_size: int = 200
    # Updates per compiled call (one lax.scan); the train error is logged after each call.
    log_every: int = 500
    # Cases per forward pass when measuring the error on a whole split (bounds memory).
    eval_batch_size: int = 5000
    # Seed of the initialization and of the minibatch order.
    seed: int = 0
    # Save a checkpoint after the first chunk that is this many updates past the last one
    # (0: only at the end and on Ctrl-C). Re-running with the same --out resumes from it.
    checkpoint_every: int = 0
    # Data parallel: shard each minibatch over all devices (of all processes) along one mesh
    # axis, parameters and optimizer state replicated. batch_size must divide by the devices.
    data_parallel: bool = False

    def check(self) -> None:
        _at_least("run.steps", self.steps, 1)
        _at_least("run.checkpoint_every", self.checkpoint_every, 0)
        _at_least("run.batch_size", self.batch_size, 1)
        _at_least("run.log_every", self.log_every, 1)
        _at_least("run.eval_batch_size", self.eval_batch_size, 1)


@dataclasses.dataclass(frozen=True)
class SequenceDataConfig:
    """Which long-range RNN problem (Sec. 4); sequences are generated on the fly."""

    # "addition", "multiplication", "memorization5" or "memorization20" (see sequences.py).
    task: str
    # T: the minimal sequence length (addition, multiplication) or the total length (memorization).
    length: int
    # Seed of the fixed test sequences on which the zero-one error is measured.
    seed: int = 0
    # Number of test sequences.
    num_test: int = 1000

    def check(self) -> None:
        _one_of(
            "data.task",
            self.task,
            ("addition", "multiplication", "memorization5", "memorization20"),
        )
        _at_least("data.length", self.length, 21 if self.task.startswith("memorization") else 10)
        _at_least("data.num_test", self.num_test, 1)


@dataclasses.dataclass(frozen=True)
class RnnModelConfig:
    """The tanh RNN and its initialization (Sec. 4)."""

    hidden_size: int = 100
    # Input weights N(0, input_scale^2): 0.001 for addition/multiplication, 0.1 for memorization.
    input_scale: float = 0.001
    # Recurrent weights: echo-state initialization with this spectral radius.
    spectral_radius: float = 1.1
    num_connections: int = 15
    # Output weights N(0, output_scale^2); output biases are the mean target.
    output_scale: float = 0.1

    def check(self) -> None:
        _at_least("model.hidden_size", self.hidden_size, 1)
        _at_least("model.input_scale", self.input_scale, 0.0)
        _at_least("model.spectral_radius", self.spectral_radius, 0.0)
        _at_least("model.num_connections", self.num_connections, 1)
        _at_least("model.output_scale", self.output_scale, 0.0)


@dataclasses.dataclass(frozen=True)
class Config:
    """A deep-autoencoder experiment (Sec. 3)."""

    data: DataConfig
    model: ModelConfig
    optimizer: OptimizerConfig
    run: RunConfig

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class TableGridConfig:
    """The grid of a paper table: every optimizer x momentum x learning rate x seed."""

    # Optimizers of the table's columns ("sgd" ignores mu_maxes).
    optimizers: list = dataclasses.field(default_factory=lambda: ["sgd", "nag", "cm"])
    mu_maxes: list = dataclasses.field(default_factory=lambda: [0.9, 0.99, 0.995, 0.999])
    # The paper's grid; the best learning rate is picked per cell by the final train error.
    learning_rates: list = dataclasses.field(
        default_factory=lambda: [0.05, 0.01, 0.005, 0.001, 0.0005, 0.0001]
    )
    seeds: list = dataclasses.field(default_factory=lambda: [0])

    def check(self) -> None:
        for name in self.optimizers:
            _one_of("table.optimizers", name, ("nag", "cm", "sgd"))
        for mu in self.mu_maxes:
            _in_unit_interval("table.mu_maxes", _number("table.mu_maxes", mu))
        for lr in self.learning_rates:
            _at_least("table.learning_rates", _number("table.learning_rates", lr), 0.0)
        for seed in self.seeds:
            if not isinstance(seed, int) or isinstance(seed, bool):
                raise ConfigError(f"table.seeds must hold integers; got {seed!r}.")
        for key in ("optimizers", "mu_maxes", "learning_rates", "seeds"):
            if not getattr(self, key):
                raise ConfigError(f"table.{key} must not be empty.")


@dataclasses.dataclass(frozen=True)
class TableConfig:
    """A paper table (Table 1): an autoencoder config and the grid run over it."""

    data: DataConfig
    model: ModelConfig
    optimizer: OptimizerConfig
    run: RunConfig
    table: TableGridConfig

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def experiment(self, optimizer_name: str) -> Config:
        """The autoencoder config of one column's optimizer."""
        optimizer = dataclasses.replace(self.optimizer, name=optimizer_name)
        return Config(self.data, self.model, optimizer, self.run)


@dataclasses.dataclass(frozen=True)
class RnnConfig:
    """A long-range RNN experiment (Sec. 4)."""

    data: SequenceDataConfig
    model: RnnModelConfig
    optimizer: OptimizerConfig
    run: RunConfig

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def load(path: str | Path, overrides: dict[str, Any] | None = None, *, kind: type = Config) -> Any:
    """Reads a TOML config of ``kind`` (:class:`Config`, :class:`RnnConfig`) with ``overrides``.

    ``overrides`` maps dotted keys to values, e.g. ``{"run.steps": 100}`` (the command line's
    flags); an error in them is reported as the command line's, not the file's.

    Raises:
      ConfigError: the file is missing or not TOML, or a table, key, type or value is wrong.
    """
    path = Path(path)
    try:
        with path.open("rb") as f:
            raw = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist.") from None
    except IsADirectoryError:
        raise ConfigError(f"config file {path} is a directory, not a TOML file.") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file {path} is not valid TOML: {e}") from None
    config = from_dict(raw, kind=kind, source=str(path))
    if overrides:
        config = from_dict(raw, overrides, kind=kind, source="command line")
    return config


def from_dict(
    raw: dict[str, Any],
    overrides: dict[str, Any] | None = None,
    *,
    kind: type = Config,
    source: str = "config",
) -> Any:
    """Builds a checked config of ``kind`` from nested dicts (as TOML gives them)."""
    table_types = typing.get_type_hints(kind)
    raw = {
        table: dict(values) if isinstance(values, dict) else values for table, values in raw.items()
    }
    for dotted, value in (overrides or {}).items():
        table, key = dotted.split(".")
        raw.setdefault(table, {})[key] = value
    unknown = sorted(set(raw) - set(table_types))
    if unknown:
        raise ConfigError(
            f"{source}: unknown table [{unknown[0]}]; allowed: {', '.join(table_types)}."
        )
    tables = {}
    for table, cls in table_types.items():
        values = raw.get(table, {})
        if not isinstance(values, dict):
            raise ConfigError(f"{source}: [{table}] must be a table, got {values!r}.")
        tables[table] = _build(cls, table, values, source)
    return kind(**tables)


def _build(cls: type, table: str, values: dict[str, Any], source: str) -> Any:
    fields = {field.name: field for field in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    for key in values:
        if key not in fields:
            raise ConfigError(f"{source}: unknown key {table}.{key}; allowed: {', '.join(fields)}.")
    missing = [
        name
        for name, field in fields.items()
        if name not in values
        and field.default is dataclasses.MISSING
        and field.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(f"{source}: missing key {table}.{missing[0]}.")
    checked = {
        key: _check_type(f"{table}.{key}", value, hints[key]) for key, value in values.items()
    }
    instance = cls(**checked)
    try:
        instance.check()
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}") from None
    return instance


def _check_type(name: str, value: Any, hint: Any) -> Any:
    allowed = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    if value is None and type(None) in allowed:
        return None
    if bool in allowed and isinstance(value, bool):
        return value
    if int in allowed and isinstance(value, int) and not isinstance(value, bool):
        return value
    if float in allowed and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if list in allowed and isinstance(value, list):
        return value
    if str in allowed and isinstance(value, str):
        return value
    names = " or ".join("none" if t is type(None) else t.__name__ for t in allowed)
    raise ConfigError(f"{name} must be {names}, got {value!r}.")


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{name} must hold numbers; got {value!r}.")
    return float(value)


def _one_of(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{name} must be one of {', '.join(allowed)}; got {value!r}.")


def _at_least(name: str, value: float | None, low: float) -> None:
    if value is None:
        return
    if not math.isfinite(value) or value < low:
        raise ConfigError(f"{name} must be a finite number >= {low}; got {value!r}.")


def _in_unit_interval(name: str, value: float) -> None:
    if not (0.0 <= value <= 1.0):
        raise ConfigError(f"{name} must lie in [0, 1]; got {value!r}.")
