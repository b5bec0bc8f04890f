"""The SE options of a model factory: checked, completed with the defaults, and turned
into the layer factory the residual blocks take.

    config = se_config("se_resnet20", 3, reduction=16, bias=False, options={"gate": "tanh"})
    # {"reduction": 16, "squeeze": "avg", "gate": "tanh", "bias": False,
    #  "placement": "standard", "se_stages": [1, 2, 3], "no_squeeze": False}
    se_layer = se_layer_factory(config)            # channels -> SEBlock(channels, ...)

Families without residual placements (VGG, Inception, MobileNet, ...) take the SE block's
own options only: ``se_block_config(name, reduction, bias, options)``.
"""
from __future__ import annotations

from functools import partial

from ..nn import SEBlock
from ..nn._checks import positive_int
from ..nn.se import GATES, SQUEEZES
from .blocks import PLACEMENTS
from .specs import SE_DEFAULTS

# the values SEBlock takes for squeeze and gate (the choices of npsenet's --squeeze, --gate)
SQUEEZE_KINDS = tuple(sorted(SQUEEZES))
GATE_KINDS = tuple(sorted(GATES))
# the keyword options an SE factory takes besides num_classes, reduction and bias
SE_OPTION_NAMES = ("squeeze", "gate", "bias", "placement", "se_stages", "no_squeeze",
                   "divisor")
SE_BLOCK_OPTIONS = ("reduction", "squeeze", "gate", "bias", "no_squeeze", "divisor")


def se_config(name, num_stages, reduction, bias, options):
    """Validate the SE options of model ``name`` and fill in the defaults.

    Returns the full dict (the SE part of ``model.options``), with ``se_stages`` a sorted
    list of stage numbers from 1 to ``num_stages`` (all of them by default).
    """
    unknown = sorted(set(options) - set(SE_OPTION_NAMES))
    if unknown:
        raise ValueError(f"{name}: unknown SE option(s) {unknown}; the options are "
                         f"reduction, {', '.join(SE_OPTION_NAMES)}.")
    given = dict(SE_DEFAULTS, **options)
    if given["placement"] not in PLACEMENTS:
        raise ValueError(f"{name}: placement must be one of {list(PLACEMENTS)}, got "
                         f"{given['placement']!r}.")
    stages = given.get("se_stages")
    return {"reduction": positive_int(reduction, "reduction", name),
            "squeeze": given["squeeze"], "gate": given["gate"],
            "bias": bool(bias), "placement": given["placement"],
            "se_stages": (list(range(1, num_stages + 1)) if stages is None
                          else stage_list(name, stages, num_stages)),
            "no_squeeze": bool(given["no_squeeze"]),
            "divisor": positive_int(given["divisor"], "divisor", name)}


def se_block_config(name, reduction, bias, options, divisor=1):
    """The SE block options of model ``name`` (a family without placements or stages),
    checked and completed with the defaults: reduction, squeeze, gate, bias, no_squeeze
    and divisor (default ``divisor``), the SE part of ``model.options``."""
    allowed = [k for k in SE_BLOCK_OPTIONS if k not in ("reduction", "bias")]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(f"{name}: unknown SE option(s) {unknown}; the options are "
                         f"reduction, bias, {', '.join(allowed)}.")
    given = dict(SE_DEFAULTS, **{"divisor": divisor, **options})
    return {"reduction": positive_int(reduction, "reduction", name),
            "squeeze": given["squeeze"], "gate": given["gate"], "bias": bool(bias),
            "no_squeeze": bool(given["no_squeeze"]),
            "divisor": positive_int(given["divisor"], "divisor", name)}


def stage_list(name, stages, num_stages):
    """``stages`` (an iterable of stage numbers) as a sorted list without repeats."""
    if isinstance(stages, (str, bytes)) or not hasattr(stages, "__iter__"):
        raise ValueError(f"{name}: se_stages must be an iterable of stage numbers such as "
                         f"[1, 2], got {stages!r}.")
    out = sorted(set(stages))
    bad = [s for s in out if isinstance(s, bool) or not isinstance(s, int)
           or not 1 <= s <= num_stages]
    if bad:
        raise ValueError(f"{name}: se_stages must hold stage numbers from 1 to {num_stages}, "
                         f"got {list(stages)!r}.")
    return out


def se_layer_factory(config):
    """``channels -> SEBlock(channels, reduction=..., ...)`` for a config from
    :func:`se_config` or :func:`se_block_config`."""
    return partial(SEBlock, **{key: config[key] for key in SE_BLOCK_OPTIONS})
