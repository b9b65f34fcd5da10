"""Validated configuration: YAML files and keyword arguments checked by pydantic before any work.

A configuration class is a pydantic dataclass deriving from :class:`ValidatedConfig`: unknown keys,
wrong types, values out of range and a task's own checks (a folder that must exist, ...) raise one
:class:`~cadx.errors.ConfigError` whose single line names the file (or the class) and the key. Values
are converted where the meaning is plain: YAML 1.1 reads ``lr: 5e-4`` as the *string* ``"5e-4"``
(its floats need a dot), which is accepted as the float 0.0005.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, TypeVar

from pydantic import ConfigDict, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic.dataclasses import dataclass

from cadx.errors import ConfigError

T = TypeVar("T")

#: pydantic settings shared by every cadx configuration class.
CONFIG_DICT = ConfigDict(extra="forbid")


@dataclass(config=CONFIG_DICT)
class ValidatedConfig:
    """Base of configuration dataclasses: invalid values raise :class:`~cadx.errors.ConfigError`.

    Subclasses are decorated with ``pydantic.dataclasses.dataclass(config=CONFIG_DICT)``; they stay
    standard dataclasses (``dataclasses.asdict`` works).

    Examples
    --------
    >>> from pydantic.dataclasses import dataclass
    >>> @dataclass(config=CONFIG_DICT)
    ... class Example(ValidatedConfig):
    ...     lr: float = 1e-3
    ...     steps: int = 10
    >>> Example(lr="5e-4").lr
    0.0005
    >>> try:
    ...     Example(steps="many")
    ... except ConfigError as exc:
    ...     print(exc)
    Example: steps: Input should be a valid integer, unable to parse string as an integer (got 'many')
    """

    @model_validator(mode="wrap")
    @classmethod
    def _raise_config_error(cls, data: Any, handler: Any, info: ValidationInfo) -> Any:
        try:
            return handler(data)
        except ValidationError as exc:
            source = (info.context or {}).get("source", cls.__name__)
            raise ConfigError(format_validation_error(source, exc, cls)) from None


def format_validation_error(source: str, exc: ValidationError, cls: type | None = None) -> str:
    """One line: ``source: key: problem; key: problem``.

    Parameters
    ----------
    source : str
        The file, or the class when values came from code.
    exc : pydantic.ValidationError
    cls : type, optional
        A dataclass: its field names are listed for an unknown key.
    """
    parts = []
    is_dataclass = cls is not None and dataclasses.is_dataclass(cls)
    known = ", ".join(f.name for f in dataclasses.fields(cls)) if is_dataclass else ""
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        kind, msg = err["type"], err["msg"]
        if kind in ("unexpected_keyword_argument", "extra_forbidden"):
            parts.append(f"{key}: unknown key" + (f" (known keys: {known})" if known else ""))
        elif kind in ("missing", "missing_argument"):
            parts.append(f"{key}: required key missing")
        elif kind == "value_error":
            parts.append(f"{key}: {msg.removeprefix('Value error, ')}")
        else:
            parts.append(f"{key}: {msg} (got {err.get('input')!r})")
    return f"{source}: " + "; ".join(parts)


def read_yaml_mapping(path: str | Path) -> dict[str, Any]:
    """The top-level mapping of a YAML file (an empty file is an empty mapping).

    Raises
    ------
    ConfigError
        No such file, not UTF-8, a YAML syntax error (with its line and column), or a top level
        that is not a mapping.
    """
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a UTF-8 text file") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}: YAML syntax error{where}: {problem}") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys to values, not a {type(raw).__name__}")
    return raw


def load_yaml_config(path: str | Path, cls: type[T]) -> T:
    """Read and validate a YAML configuration file into ``cls`` (a :class:`ValidatedConfig`).

    Raises
    ------
    ConfigError
        Any problem with the file or its values, in one line naming the file and the key.
    """
    from pydantic import TypeAdapter

    raw = read_yaml_mapping(path)
    try:
        return TypeAdapter(cls).validate_python(raw, context={"source": str(path)})
    except ValidationError as exc:  # a class that does not derive from ValidatedConfig
        raise ConfigError(format_validation_error(str(path), exc, cls)) from None


def check_weights_source(value: bool | str) -> bool | str:
    """A ``pretrained`` value: ``true``, ``false``, ``hub`` or an existing weights file (for a field validator).

    Raises
    ------
    ValueError
        A path that is not a file (pydantic reports it as a ConfigError naming the key).
    """
    if isinstance(value, str) and value != "hub" and not Path(value).is_file():
        raise ValueError(f"no such weights file: {value} (or use true, false or hub)")
    return value


def check_architecture(value: str) -> str:
    """A ``model`` value timm knows (for a field validator).

    Raises
    ------
    ValueError
        Not a timm architecture name.
    """
    import timm

    if not timm.is_model(value):
        raise ValueError(f"timm has no architecture {value!r}")
    return value


@dataclass(config=CONFIG_DICT)
class ModelTrainConfig(ValidatedConfig):
    """Base of the tasks' training configs: checks their ``model`` and ``pretrained`` fields and reads YAML.

    Subclasses declare ``model: str`` and ``pretrained: bool | str`` themselves (with their own
    defaults); an unknown architecture or a missing weights file is a
    :class:`~cadx.errors.ConfigError` before any work starts.
    """

    @field_validator("pretrained", check_fields=False)
    @classmethod
    def _weights_file(cls, value: bool | str) -> bool | str:
        return check_weights_source(value)

    @field_validator("model", check_fields=False)
    @classmethod
    def _known_architecture(cls, value: str) -> str:
        return check_architecture(value)

    @classmethod
    def from_yaml(cls: type[T], path: str | Path) -> T:
        """Read and validate a YAML file whose keys are this class's fields.

        Raises
        ------
        ConfigError
            One line naming the file and the key.
        """
        return load_yaml_config(path, cls)
