"""The plugin's errors: one class per kind of failure a user has to act on.

Every message says what was expected, what was found and where (the option, the
tap, the file), and what to do. Each class derives from the builtin a caller
would catch for it (a wrong value is a ``ValueError``).

- :class:`ConfigError`: an option of the distiller, a tap, a loss or a hook is
  wrong as given.
- :class:`TapError`: a tap cannot be resolved against the models (a module that
  does not exist or does not run, an output that is not a feature map, levels or
  shapes that do not pair).
- :class:`CheckpointError`: a weights file cannot be loaded as asked (not a
  checkpoint, types outside the allow-list, weights that do not fit, NaN/Inf).
- :class:`NonFiniteError`: training stopped on NaN/Inf losses or features.
"""


class ConfigError(ValueError):
    """An option is wrong as given."""


class TapError(ConfigError):
    """A tap cannot be resolved against the student and the teacher."""


class CheckpointError(ValueError):
    """A weights file cannot be loaded as asked."""


class NonFiniteError(FloatingPointError):
    """Training stopped: a loss or a teacher feature is NaN or Inf."""
