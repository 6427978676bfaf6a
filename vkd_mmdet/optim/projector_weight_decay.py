"""No weight decay on the projectors' raw parameters (a training-config default).

The orthogonal projectors are parametrised: the optimiser updates a raw matrix
that a map (QR, matrix exponential, Cayley, Householder) turns into the
orthogonal weight. Weight decay on that raw matrix means nothing useful: under
QR it only rescales it (raising the effective step size), under ``matrix_exp``
or ``cayley`` it pulls the rotation toward the identity, and under torch's
``householder`` map it collapses the weight (the map truncates the raw
diagonal with ``.int()``, and decay moves -1 to -0.99..., which truncates to 0).
"""
from mmengine.config import Config

PROJECTOR_KEY = 'distill_losses'  # every projector's parameters live under it


def exclude_projectors_from_weight_decay(cfg: Config) -> str:
    """Set ``decay_mult=0`` for ``distill_losses.*`` in ``cfg.optim_wrapper``'s
    ``paramwise_cfg.custom_keys``, unless the config already says something for
    that key (then it is kept). Returns a line saying what was done."""
    optim = cfg.get('optim_wrapper')
    if not optim or optim.get('optimizer') is None:
        return 'no optim_wrapper.optimizer in the config; projector weight decay left alone'
    weight_decay = optim['optimizer'].get('weight_decay')
    if not weight_decay:
        return 'the optimizer has no weight decay; nothing to exclude'
    paramwise = optim.get('paramwise_cfg') or {}
    custom = paramwise.get('custom_keys') or {}
    if PROJECTOR_KEY in custom:
        return (f"paramwise_cfg.custom_keys['{PROJECTOR_KEY}'] is set in the config "
                f"({dict(custom[PROJECTOR_KEY])}); kept as given")
    custom = dict(custom, **{PROJECTOR_KEY: dict(decay_mult=0.0)})
    optim['paramwise_cfg'] = dict(paramwise, custom_keys=custom)
    return (f'projector parameters ({PROJECTOR_KEY}.*) are not weight-decayed '
            f'(weight_decay={weight_decay} elsewhere); set '
            f"optim_wrapper.paramwise_cfg.custom_keys.{PROJECTOR_KEY}.decay_mult to change it")
