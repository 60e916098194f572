"""The registries are the only lists of solvers, samplers and guidance rules (issue 20)."""

import ast
import inspect
from pathlib import Path

import pytest
import torch

import diffdensity as dd
from diffdensity.registry import GUIDANCE, SAMPLERS, SOLVERS, Registry

SRC = Path(dd.__file__).parent


def test_registry_refuses_duplicates_and_names_the_choices():
    r = Registry("thing")
    r.register("a", "math:sqrt", size=1)
    assert r.load("a")(4.0) == 2.0 and r.names(size=1) == ("a",) and "a" in r and len(r) == 1
    with pytest.raises(ValueError, match="registered already"):
        r.register("a", "math:cos")
    with pytest.raises(ValueError, match="unknown thing 'b'; choose one of a"):
        r.get("b")


def test_every_entry_loads_and_samplers_take_their_options():
    for reg in (SOLVERS, SAMPLERS, GUIDANCE):
        for name in reg:
            assert reg.load(name) is not None
    for name in SAMPLERS:
        e = SAMPLERS.get(name)
        params = inspect.signature(e.load()).parameters
        if any(p.kind is p.VAR_KEYWORD for p in params.values()):  # sample_ddim passes its keywords on
            params = {**params, **inspect.signature(SAMPLERS.load("distributional")).parameters}
        assert {"steps", "generator", "callback", "progress"} <= set(params), name
        assert set(e.meta["options"]) <= set(params), (name, set(e.meta["options"]) - set(params))
    for rule in GUIDANCE:
        assert SAMPLERS.get(f"{rule}-guided").meta["guidance"] == rule


def test_sample_runs_a_registered_sampler_and_refuses_options_that_do_not_apply():
    m = dd.GaussianMixture(torch.tensor([[-2.0, 0.0], [2.0, 0.0]]), torch.tensor([0.5, 0.5])).diffused(dd.VP())
    x = m.schedule.sample_prior((4, 2), generator=torch.Generator().manual_seed(0))
    out = dd.sample(m, x, "ode", steps=8, solver="dpmpp2m", progress=False)
    assert out.x.shape == (4, 2) and out.nfe == 8
    with pytest.raises(ValueError, match="q do.*not apply to the 'sde' sampler"):
        dd.sample(m, x, "sde", q=0.3)
    with pytest.raises(ValueError, match="needs threshold"):
        dd.sample(m, x, "hd")
    with pytest.raises(ValueError, match="unknown sampler 'nope'"):
        dd.sample(m, x, "nope")


def _solver_name_comparisons(tree):
    """Comparisons of a string literal naming a registered solver with anything (==, !=, in)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            for side in (node.left, *node.comparators):
                if isinstance(side, ast.Constant) and side.value in SOLVERS:
                    yield node.lineno, side.value


def test_no_module_outside_solvers_compares_a_solver_name_to_a_string():
    found = []
    for path in SRC.rglob("*.py"):
        if "solvers" in path.relative_to(SRC).parts or path.name == "registry.py":
            continue
        found += [
            f"{path.relative_to(SRC)}:{line} ({name!r})"
            for line, name in _solver_name_comparisons(ast.parse(path.read_text()))
        ]
    assert not found, found
