"""Kernel specs from a config -> `convflow.kernels.Kernel` objects, errors at the spec's line."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from convflow.config._errors import did_you_mean
from convflow.config._source import KeyPath
from convflow.engine import SPATIAL
from convflow.errors import ConfigError, KernelError

if TYPE_CHECKING:
    from convflow.config._model import Config, KernelSpec
    from convflow.kernels import Kernel


def build_kernels(config: Config, ndim: int | None = None) -> dict[str, Kernel]:
    """Turn the config's kernel specs into `convflow.kernels.Kernel` objects.

    Parameters
    ----------
    config : Config
        From `load_config`.
    ndim : int, optional
        The number of spatial axes of the input: named kernels get this
        ``ndim`` unless their spec sets one.  Default: the number of x/y/z
        letters in ``input.axes``, else each kernel's own default.

    Returns
    -------
    dict of str to Kernel
        In the order the config defines them.  A kernel's ``axis: x`` (or
        ``y``, ``z``) becomes the position of that letter among the spatial
        axes (``input.axes``, else the last `ndim` of ``zyx``).

    Raises
    ------
    convflow.errors.ConfigError
        A kernel's parameters or file are invalid; the message names
        ``kernels.<name>`` and its line.
    """
    if ndim is None and config.input.spatial_axes is not None:
        ndim = len(config.input.spatial_axes)
    return check_kernels(config, ndim, files=True)


def check_kernels(config: Config, ndim: int | None, *, files: bool, probe: bool = False) -> dict[str, Kernel]:
    """Build the kernels; raise ConfigError for the first bad one.

    With `probe`, when the input's ndim is not known yet, a named kernel is
    only refused if no ndim (1, 2 or 3) makes it, and is not returned.
    Without `files`, kernel files are not read.
    """
    from convflow import kernels

    built: dict[str, Kernel] = {}
    for spec in config.kernels:
        key: KeyPath = ("kernels", spec.name)
        params = dict(spec.params)
        try:
            if spec.type is not None:
                _check_param_names(config, spec, kernels.signature(spec.type))
                if probe:
                    _probe(config, spec)
                else:
                    built[spec.name] = _named(config, spec, ndim)
            elif spec.values is not None:
                built[spec.name] = kernels.from_array(spec.values, name=spec.name, **params)
            elif files:
                key = ("kernels", spec.name, "file")
                built[spec.name] = kernels.load(spec.file, name=spec.name, **params)  # type: ignore[arg-type]
        except KernelError as err:
            # Point at the parameter the message names, when the spec gives it.
            param = re.search(r"got (\w+)=", str(err))
            if key[-1] != "file" and param and param.group(1) in dict(spec.params):
                key = (*key, param.group(1))
            raise ConfigError(f"{config.where(key)}: {err}") from err
        spatial = config.input.spatial_axes
        if spec.name in built and spatial is not None and built[spec.name].ndim > len(spatial):
            raise ConfigError(
                f"{config.where(key)}: kernel {spec.name!r} has {built[spec.name].ndim} axes, but the "
                f"input has {len(spatial)} spatial axes (axes={config.input.axes!r}); give it at most "
                f"{len(spatial)}"
            )
    return built


def _named(config: Config, spec: KernelSpec, ndim: int | None) -> Kernel:
    """The library kernel `spec` names, with `ndim` unless the spec sets one."""
    from convflow import kernels

    params = dict(spec.params)
    if ndim is not None:
        params.setdefault("ndim", ndim)
    if isinstance(params.get("axis"), str):
        params["axis"] = _axis_number(config, spec, params)
    return kernels.get(spec.type, **params)  # type: ignore[arg-type]


def _probe(config: Config, spec: KernelSpec) -> None:
    """Raise the error of the kernel's own default ndim only if no ndim (1, 2 or 3) makes it."""
    try:
        _named(config, spec, None)
    except (KernelError, ConfigError):
        for ndim in (1, 2, 3):
            try:
                _named(config, spec, ndim)
                return
            except (KernelError, ConfigError):
                continue
        raise


def _check_param_names(config: Config, spec: KernelSpec, signature: str) -> None:
    """Refuse a parameter the named kernel does not take, at its own key and line."""
    accepted = [p.split("=")[0] for p in signature.split(", ") if p]
    for name, _ in spec.params:
        if name not in accepted:
            where = config.where(("kernels", spec.name, name))
            raise ConfigError(
                f"{where}: the {spec.type} kernel has no parameter {name!r}.{did_you_mean(name, accepted)} "
                f"It takes: {signature}"
            )


def _axis_number(config: Config, spec: KernelSpec, params: dict[str, Any]) -> int:
    """The position of the letter ``params['axis']`` among the kernel's spatial axes."""
    letter = params["axis"].lower()
    count = params.get("ndim") or 2
    spatial = config.input.spatial_axes or SPATIAL[-count:]
    letters = spatial[-count:] if isinstance(count, int) and 0 < count <= len(spatial) else spatial
    if letter not in letters:
        raise ConfigError(
            f"{config.where(('kernels', spec.name, 'axis'))}: axis={params['axis']!r} is not one of the "
            f"kernel's spatial axes {', '.join(letters)}; give one of those letters or an axis number"
        )
    return letters.index(letter)
