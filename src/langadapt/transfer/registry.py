"""The transfer methods by name: each one's options dataclass, its function and the inputs it needs.

Adding a method is one module (an options dataclass and ``f(MethodInputs, options) -> MethodResult``) and
one line in ``METHOD_LIST``. Everything else follows from here: the parameters a method accepts (its options'
fields and those of the inputs it needs), the ones that are required, the errors for parameters that
belong to another method, the CLI flags (``transfer/cli.py`` composes ``TransferArgs`` from the same
dataclasses) and the report.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass
from typing import Any, Callable

from langadapt.errors import ConfigError
from langadapt.transfer.basic import (BaselineOptions, RandomOptions, baseline_needs, gaussian_method, mean_method,
                                      random_method)
from langadapt.transfer.clp import ClpOptions, clp_method
from langadapt.transfer.focus import FocusOptions, focus_method
from langadapt.transfer.fvt import FvtOptions, fvt_method
from langadapt.transfer.inputs import INPUT_KINDS, parameter_names
from langadapt.transfer.omp import OmpOptions, omp_method
from langadapt.transfer.result import MethodInputs, MethodResult
from langadapt.transfer.transtok import TranstokOptions, transtok_method
from langadapt.transfer.wechsel import WechselOptions, wechsel_method


@dataclass(frozen=True)
class Method:
    name: str
    options: type
    """The options dataclass (validated in its ``__post_init__``)."""
    run: Callable[[MethodInputs, Any], MethodResult]
    needs: tuple[str, ...] | Callable[[Any], tuple[str, ...]]
    """Input kinds (``inputs.INPUT_KINDS``), or a function of the options returning them."""
    title: str
    """What the model card calls it."""

    def inputs_for(self, options) -> tuple[str, ...]:
        return tuple(self.needs(options) if callable(self.needs) else self.needs)

    def parameters(self, options=None) -> tuple[str, ...]:
        """Every parameter this method accepts: its options' fields, then those of the inputs it needs."""
        names = [f.name for f in dataclasses.fields(self.options)]
        for kind in self.inputs_for(options if options is not None else self.options()):
            names += parameter_names(kind)
        return tuple(names)


METHOD_LIST = [
    Method("clp", ClpOptions, clp_method, ("overlap", "helper"), "CLP-Transfer (Ostendorff & Rehm 2023)"),
    Method("focus", FocusOptions, focus_method, ("overlap", "token_vectors"), "FOCUS (Dobler & de Melo 2023)"),
    Method("wechsel", WechselOptions, wechsel_method, ("word_vectors",), "WECHSEL (Minixhofer et al. 2022)"),
    Method("fvt", FvtOptions, fvt_method, ("overlap_any", "decompositions"),
           "Fast Vocabulary Transfer (Gee et al. 2022)"),
    Method("omp", OmpOptions, omp_method, ("overlap", "helper"),
           "orthogonal matching pursuit over the overlapping tokens (as mergekit's tokensurgeon)"),
    Method("transtok", TranstokOptions, transtok_method, ("overlap_any", "alignments"),
           "trans-tokenization from eflomal token alignments of parallel text (Remy et al. 2024)"),
    Method("mean", BaselineOptions, mean_method, baseline_needs, "mean of the source embeddings"),
    Method("random", RandomOptions, random_method, baseline_needs, "random normal initialization"),
    Method("gaussian", BaselineOptions, gaussian_method, baseline_needs,
           "per-dimension normal with the source embeddings' mean and std"),
]
REGISTRY: dict[str, Method] = {m.name: m for m in METHOD_LIST}
METHODS = tuple(REGISTRY)


def get_method(name: str) -> Method:
    if name not in REGISTRY:
        close = difflib.get_close_matches(str(name), METHODS, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ConfigError(f"unknown transfer method '{name}'{hint}; use one of {', '.join(METHODS)}")
    return REGISTRY[name]


def all_parameters() -> dict[str, dataclasses.Field]:
    """Every method parameter of every method (options and inputs), by name."""
    out: dict[str, dataclasses.Field] = {}
    classes = [m.options for m in METHOD_LIST] + [k.params for k in INPUT_KINDS.values() if k.params is not None]
    for cls in classes:
        for f in dataclasses.fields(cls):
            out.setdefault(f.name, f)
    return out


def _default(f: dataclasses.Field):
    return f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]


@dataclass
class Request:
    """One method with its options and the parameters of the inputs it needs, checked."""

    method: Method
    options: Any
    inputs: dict[str, Any]
    """Input kind -> its parameters (an ``inputs.*Inputs`` instance)."""

    @property
    def needs(self) -> tuple[str, ...]:
        return self.method.inputs_for(self.options)

    def report_inputs(self) -> dict:
        """The options (all of them) and the given input parameters, for the report (the helper model is
        reported on its own)."""
        out = dataclasses.asdict(self.options)
        for params in self.inputs.values():
            out.update({k: v for k, v in dataclasses.asdict(params).items() if v is not None and k != "helper_model"})
        return out


def resolve(method_name: str, parameters: dict) -> Request:
    """Check ``parameters`` (keyword arguments named like the CLI flags) against method ``method_name``.

    ConfigError for an unknown method or parameter (with a suggestion), a parameter that belongs to another
    method (given with a value other than its default), a missing required input, or a value the options or
    input dataclasses reject.
    """
    method = get_method(method_name)
    known = all_parameters()
    unknown = sorted(set(parameters) - set(known))
    if unknown:
        close = difflib.get_close_matches(unknown[0], list(known), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ConfigError(f"unknown transfer input '{unknown[0]}'{hint}")
    given = {k: v for k, v in parameters.items() if v is not None and not (isinstance(v, str) and v == "")}
    option_names = {f.name for f in dataclasses.fields(method.options)}
    options = method.options(**{k: v for k, v in given.items() if k in option_names})
    needs = method.inputs_for(options)
    for kind in needs:
        for alternatives in INPUT_KINDS[kind].required:
            if not any(name in given for name in alternatives):
                wanted = " or ".join(f"`{a}`" for a in alternatives)
                raise ConfigError(f"method '{method.name}' needs {wanted}")
    accepted = set(method.parameters(options))
    for name, value in given.items():
        if name in accepted or value == _default(known[name]):
            continue
        users = [m.name for m in METHOD_LIST if name in m.parameters()]
        raise ConfigError(f"`{name}` is used by method {' / '.join(users)}, not by '{method.name}'; remove it or "
                          "choose that method")
    inputs = {}
    for kind in needs:
        params = INPUT_KINDS[kind].params
        if params is not None:
            inputs[kind] = params(**{k: v for k, v in given.items() if k in parameter_names(kind)})
    return Request(method, options, inputs)
