"""The modules of cdsvae.train import one another one way only, checked on their source.

Every import counts, function-level ones included, so a circle cannot hide in a function.
"""

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "cdsvae" / "train"

# A module may import only modules listed before it: the leaves (the optim module holds the trainer's
# options), the trainer's modules, the trainer, and the package's face. (The config machinery and checkpoint files are cdsvae.config
# and cdsvae.checkpoint; what an experiment trains with the trainer is cdsvae.experiment.)
ORDER = ["distributed", "batches", "optim", "monitor", "resume", "steploop", "trainer", "__init__"]
# Imported inside functions on purpose: the data code of one data.type (and its video
# augmentation) and TensorBoard, slow to import and optional.
LAZY_OK = ("cdsvae.data.", "cdsvae.augment.video", "torch.utils.tensorboard")


def _imports(path: Path):
    """(module imported, line, inside a function) for every import of ``path``, submodules resolved."""
    tree = ast.parse(path.read_text(), str(path))
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}

    def in_function(node):
        while node in parents:
            node = parents[node]
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                return True
        return False

    package = "cdsvae.train" if path.parent == PACKAGE else None
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                assert package is not None, (path, node.lineno)
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            # `from cdsvae.train import checkpoint` imports the submodule; `import load_model` the package
            names = [f"{base}.{a.name}" if base == "cdsvae.train" and (PACKAGE / f"{a.name}.py").is_file() else base
                     for a in node.names]
        else:
            continue
        for name in names:
            yield name, node.lineno, in_function(node)


def _train_module(name: str) -> str | None:
    if name == "cdsvae.train":
        return "__init__"
    if name.startswith("cdsvae.train."):
        return name.split(".")[2]
    return None


def test_every_module_has_its_place_in_the_order():
    assert sorted(p.stem for p in PACKAGE.glob("*.py")) == sorted(ORDER)


def test_imports_within_cdsvae_train_go_one_way():
    wrong = []
    for module in ORDER:
        for name, line, _ in _imports(PACKAGE / f"{module}.py"):
            if name.startswith(("cdsvae.bin", "cdsvae.experiment")):
                wrong.append(f"{module}.py:{line} imports {name}")
            target = _train_module(name)
            if target is not None and ORDER.index(target) >= ORDER.index(module):
                wrong.append(f"{module}.py:{line} imports {target}, which comes after it")
    assert not wrong, wrong


def test_the_chain_the_layers_promise():
    imported = {m: {_train_module(n) for n, _, _ in _imports(PACKAGE / f"{m}.py")} - {None} for m in ORDER}
    for leaf in ("distributed", "batches", "optim"):
        assert imported[leaf] == set(), leaf
    for module in ORDER[:-2]:
        assert "trainer" not in imported[module], module
    assert {"optim", "steploop"} <= imported["trainer"]
    # the launcher reaches the trainer through the experiment (cdsvae.experiment.run) only
    bin_imports = {_train_module(n) for n, _, _ in _imports(REPO / "cdsvae" / "bin" / "train.py")} - {None}
    assert bin_imports == set()


def test_function_level_imports_are_only_the_lazy_ones():
    late = [f"{m}.py:{line} {name}" for m in ORDER for name, line, inside in _imports(PACKAGE / f"{m}.py")
            if inside and not name.startswith(LAZY_OK)]
    assert not late, late


def test_no_module_of_the_package_is_over_400_lines():
    for path in [*PACKAGE.glob("*.py"), REPO / "cdsvae" / "bin" / "train.py"]:
        assert len(path.read_text().splitlines()) <= 400, path
