"""Checks shared by the distillation losses' options."""
import math
from typing import Sequence

from ..errors import ConfigError


def check_choice(owner: str, name: str, value, choices: Sequence[str]) -> None:
    """Raise :class:`ConfigError` unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ConfigError(f"{owner}: unknown {name}='{value}'; choose one of {tuple(choices)}")


def check_loss_weight(value, where: str) -> float:
    """A loss weight must be a finite number >= 0 (0 switches the term off)."""
    try:
        weight = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f'{where}: loss_weight={value!r} is not a number') from None
    if not math.isfinite(weight) or weight < 0:
        raise ConfigError(f'{where}: loss_weight={value!r}; it must be a finite '
                          f'number >= 0 (0 switches the term off)')
    return weight
