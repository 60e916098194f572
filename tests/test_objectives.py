"""Objectives (mirrors diffdensity.objectives): each loss is finite and trains a tiny net, each config refuses bad
options by name, the torch-free table, one network rule for both, and no import cycle anywhere in the package."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from diffdensity.objectives import OBJECTIVES
from diffdensity.objectives.denoising import DenoisingConfig, DenoisingObjective
from diffdensity.objectives.distributional import DistributionalConfig, DistributionalObjective
from diffdensity.objectives.protocol import Objective, ObjectiveConfig, Shard
from diffdensity.training import TrainConfig

torch.set_num_threads(1)
SRC = Path(__file__).resolve().parents[1] / "src" / "diffdensity"
_DS = SimpleNamespace(name="toy", model_shape=(2,), transform=None, levels=None)


def _tiny(objective_name: str, **options):
    cfg = TrainConfig(objective=objective_name, net="mlp", hidden=8, depth=1, steps=1, out="x", **options)
    obj = OBJECTIVES.load(objective_name).from_train_config(cfg)
    torch.manual_seed(0)
    return obj, obj.setup(_DS)


@pytest.mark.parametrize(
    "name, options",
    [
        ("denoising", {}),
        ("denoising", {"weighting": "quality"}),
        ("distributional", {"population": 3, "schedule": "FlowMatching"}),
    ],
)
def test_each_loss_is_finite_and_its_gradient_flows(name, options):
    obj, net = _tiny(name, **options)
    assert isinstance(obj, Objective)
    shard = Shard(torch.Generator().manual_seed(1), 16, slice(0, 16), torch.device("cpu"))
    x0 = torch.randn(16, 2)
    loss = obj(net, x0, shard)
    assert loss.shape == (16,) and torch.isfinite(loss).all()
    loss.mean().backward()
    grads = [p.grad for p in net.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads) and any(g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize(
    "cls, bad, match",
    [
        (DenoisingConfig, {"parametrization": "eta"}, "parametrization"),
        (DenoisingConfig, {"weighting": "nope"}, "weighting"),
        (DenoisingConfig, {"is_bins": 0}, "is_bins"),
        (DenoisingConfig, {"is_decay": 1.0}, "is_decay"),
        (DenoisingConfig, {"eval_kwargs": {"solver": "rk4"}}, "rk4"),
        (DistributionalConfig, {"population": 0}, "population"),
        (DistributionalConfig, {"population": 1}, "population >= 2"),
        (DistributionalConfig, {"scoring": "l2"}, "scoring"),
        (DistributionalConfig, {"beta": 2.5}, "beta"),
        (DistributionalConfig, {"kernel_bandwidth": 0.0}, "kernel_bandwidth"),
        (DistributionalConfig, {"churn": 2.0}, "churn"),
    ],
)
def test_each_config_refuses_a_bad_value_by_name(cls, bad, match):
    with pytest.raises(ValueError, match=match):
        cls(**bad)


@pytest.mark.parametrize(
    "objective, bad, match",
    [("denoising", {"is_bins": 0}, "is_bins"), ("distributional", {"scoring": "l2"}, "scoring")],
)
def test_the_training_config_checks_its_objectives_options(objective, bad, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(objective=objective, steps=1, out="x", **bad).validate()
    TrainConfig(
        objective="distributional" if objective == "denoising" else "denoising", steps=1, out="x", **bad
    ).validate()  # another objective's options are not its business


def test_objective_configs_agree_with_the_training_config_defaults():
    """The options appear twice (TrainConfig's flat record and each objective's config): same defaults."""
    train = TrainConfig()
    for name in OBJECTIVES:
        config_cls = OBJECTIVES.load(name).Config
        assert issubclass(config_cls, ObjectiveConfig)
        shared = [f.name for f in dataclasses.fields(config_cls) if hasattr(train, f.name)]
        assert shared, name
        assert all(getattr(config_cls(), k) == getattr(train, k) for k in shared), name
        assert config_cls.from_options({"weighting": "quality"}).weighting == "quality"


def test_the_table_is_torch_free_and_names_every_objective():
    """The table and what it imports at module level never import torch (so the CLI can list the names)."""
    for path in (SRC / "objectives" / "__init__.py", SRC / "registry.py"):
        tree = ast.parse(path.read_text())
        names = {a.name for n in _top_level_imports(tree) if isinstance(n, ast.Import) for a in n.names}
        names |= {n.module or "" for n in _top_level_imports(tree) if isinstance(n, ast.ImportFrom)}
        assert not any(m.split(".")[0] == "torch" for m in names), (path.name, names)
    assert tuple(OBJECTIVES) == ("denoising", "distributional")
    assert OBJECTIVES.load("denoising") is DenoisingObjective
    assert OBJECTIVES.load("distributional") is DistributionalObjective


def test_one_network_rule_for_score_and_generator_networks():
    """Same kind and preset choice for both objectives (they used to differ for images of 32 pixels or more)."""
    cfg = TrainConfig(net="auto", steps=1, out="x")
    for shape, preset in (((1, 8, 8), "patches16"), ((3, 32, 32), "cifar10")):
        ds = SimpleNamespace(name="folder", model_shape=shape, transform=None, levels=None)
        den = DenoisingObjective.from_train_config(cfg).net_config(ds)
        gen = DistributionalObjective.from_train_config(cfg).net_config(ds)
        assert den["type"] == "UNet" and den["ch_mult"] == gen["ch_mult"] and den["ch"] == gen["ch"], preset


# ------------------------------------------------------------------------------------------------ import graph
def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _top_level_imports(tree: ast.Module):
    """Import statements executed when the module is imported: not inside functions, not under TYPE_CHECKING."""
    todo = list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            todo.extend(node.orelse)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        else:
            todo.extend(ast.iter_child_nodes(node))


def _targets(node, module: str, is_package: bool, modules: set[str]) -> set[str]:
    """The package modules an import statement loads (the named module, its packages, imported submodules)."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        package = module if is_package else module.rpartition(".")[0]
        base = package
        for _ in range(node.level - 1):
            base = base.rpartition(".")[0]
        base = f"{base}.{node.module}" if node.level and node.module else (base if node.level else node.module)
        names = [base] + [f"{base}.{a.name}" for a in node.names]
    out = set()
    for name in names:
        parts = name.split(".")
        out |= {".".join(parts[:i]) for i in range(2, len(parts) + 1)}  # the root package itself is always loading
    own_packages = {module.rsplit(".", i)[0] for i in range(module.count(".") + 1)}  # loading before it anyway
    return {m for m in out if m in modules and m not in own_packages}


def _import_graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for p in SRC.rglob("*.py")}
    graph = {}
    for mod, path in files.items():
        tree = ast.parse(path.read_text(), str(path))
        graph[mod] = set().union(
            *[_targets(n, mod, path.name == "__init__.py", set(files)) for n in _top_level_imports(tree)]
        )
    return graph


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state, stack = {}, []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for n in sorted(graph.get(m, ())):
            if state.get(n) == 1:
                return stack[stack.index(n) :] + [n]
            if n not in state and (found := visit(n)):
                return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (found := visit(m)):
            return found
    return None


def test_the_package_has_no_module_level_import_cycle():
    graph = _import_graph()
    assert graph["diffdensity.objectives"] <= {"diffdensity.registry"}  # the table imports no objective
    for module, targets in graph.items():  # the trainer knows the protocol and the table, not the objectives
        if module.startswith("diffdensity.training"):
            assert {t for t in targets if t.startswith("diffdensity.objectives")} <= {
                "diffdensity.objectives",
                "diffdensity.objectives.protocol",
            }, module
    cycle = _find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_finder_finds_one():
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": set()}) is None


def test_a_saved_config_without_objective_is_read_as_denoising(tmp_path):
    """Run configs written before there were two objectives do not name one: they trained the denoising objective."""
    from diffdensity.training.checkpoint import load_checkpoint, save_checkpoint

    old = TrainConfig(steps=1, out="x").to_dict()
    del old["objective"]
    save_checkpoint(tmp_path / "checkpoint.pt", {"config": old})
    assert load_checkpoint(tmp_path / "checkpoint.pt")["config"]["objective"] == "denoising"


def test_network_options_are_checked_against_the_objectives_network():
    """net_kwargs are the generator network's for the distributional objective (GeneratorMLP's Fourier features,
    GeneratorUNet's noise channels), the score network's for the denoising one; an unknown one is refused by name."""
    for dataset, net, kwargs in (
        ("checkerboard", "auto", {"fourier": 8, "fourier_scale": 6.0}),
        ("digits", "unet", {"noise_channels": 2, "ch": 16}),
    ):
        TrainConfig(
            objective="distributional", dataset=dataset, net=net, steps=1, out="x", net_kwargs=kwargs
        ).validate()
    with pytest.raises(ValueError, match="unknown argument 'fourier'"):
        TrainConfig(
            objective="denoising", dataset="checkerboard", steps=1, out="x", net_kwargs={"fourier": 8}
        ).validate()
    with pytest.raises(ValueError, match="unknown argument 'widthh'"):
        TrainConfig(
            objective="distributional", dataset="checkerboard", steps=1, out="x", net_kwargs={"widthh": 8}
        ).validate()
