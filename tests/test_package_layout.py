"""The shape of the cdsvae package, checked on its source: imports run one way (no circle,
function-level imports and the package __init__ files included), no module is over 400 lines,
every module opens with a docstring saying what it owns, and no package folder holds more than 12
modules."""

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "cdsvae"
MAX_LINES = 400
MAX_MODULES_PER_FOLDER = 12  # its __init__.py included


def _modules() -> dict[str, Path]:
    mods = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = ".".join(path.relative_to(REPO).with_suffix("").parts)
        mods[name.removesuffix(".__init__")] = path
    return mods


def import_graph(mods: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the cdsvae modules its imports execute (a submodule import also runs its packages)."""
    graph: dict[str, set[str]] = {name: set() for name in mods}
    for name, path in mods.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            for target in targets:
                parts = target.split(".")
                for k in range(1, len(parts) + 1):
                    dep = ".".join(parts[:k])
                    # a module's own packages are already running when it is imported
                    if dep in mods and dep != name and not name.startswith(dep + "."):
                        graph[name].add(dep)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle as a list of modules (first repeated last), or None."""
    state: dict[str, int] = {}

    def visit(node, stack):
        state[node] = 1
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                return stack[stack.index(dep):] + [dep]
            if dep not in state:
                found = visit(dep, stack + [dep])
                if found:
                    return found
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node, [node])
            if found:
                return found
    return None


def test_cycle_finder_finds_a_planted_circle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_no_import_circle_in_the_package():
    cycle = find_cycle(import_graph(_modules()))
    assert cycle is None, " -> ".join(cycle)


@pytest.mark.parametrize("name", sorted(_modules()))
def test_module_size_and_docstring(name):
    path = _modules()[name]
    text = path.read_text()
    assert len(text.splitlines()) <= MAX_LINES, f"{path} has {len(text.splitlines())} lines"
    if text.strip():
        assert ast.get_docstring(ast.parse(text)), f"{path} does not open with a docstring"


def crowded_folders(paths: list[Path], limit: int) -> dict[str, int]:
    """Folder -> number of modules, for the folders holding more than ``limit`` modules."""
    counts: dict[str, int] = {}
    for path in paths:
        counts[str(path.parent)] = counts.get(str(path.parent), 0) + 1
    return {folder: n for folder, n in counts.items() if n > limit}


def test_crowded_folders_are_found():
    paths = [Path(f"a/m{i}.py") for i in range(13)] + [Path(f"b/m{i}.py") for i in range(12)]
    assert crowded_folders(paths, 12) == {"a": 13}


def test_no_package_folder_over_12_modules():
    # cdsvae/bin is the command namespace of the design contract (``python -m cdsvae.bin.X``, one module
    # per tool, each a parser and a call into the library), so it is exempt; every library folder is not.
    paths = [p for p in sorted(PACKAGE.rglob("*.py")) if p.parent != PACKAGE / "bin"]
    crowded = crowded_folders(paths, MAX_MODULES_PER_FOLDER)
    assert not crowded, f"folders over {MAX_MODULES_PER_FOLDER} modules: {crowded}"


# ---------------------------------------------------------------- one training loop
# Every model trains through cdsvae/train (the trainer, or the step loop it shares with the judges),
# so `.backward(` appears nowhere else in the package.


def backward_calls_outside(root: Path, allowed: Path) -> list[str]:
    """'path:line' of every ``.backward(`` in the modules under ``root`` that are not under ``allowed``
    (the source text as it is: a mention in a comment or docstring counts too)."""
    found = []
    for path in sorted(root.rglob("*.py")):
        if allowed == path.parent or allowed in path.parents:
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if ".backward(" in line:
                found.append(f"{path}:{number}")
    return found


def test_backward_finder_finds_planted_calls(tmp_path):
    for name, text in {"train/loop.py": "loss.backward()\n", "train/deep/step.py": "loss.backward()\n",
                       "eval/judges/ok.py": "x = 1  # backward compatible\n",
                       "eval/judges/bad.py": "x = 1\nscaler.scale(loss).backward()\n",
                       "training.py": "loss.backward(retain_graph=True)\n"}.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert backward_calls_outside(tmp_path, tmp_path / "train") == [
        f"{tmp_path / 'eval' / 'judges' / 'bad.py'}:2", f"{tmp_path / 'training.py'}:1"]


def test_backward_only_in_the_training_package():
    found = backward_calls_outside(PACKAGE, PACKAGE / "train")
    assert not found, f"gradients computed outside cdsvae/train (train through cdsvae.train.steploop): {found}"


# Thin entry points and short functions: every cdsvae/bin tool has build_parser() and a main of at
# most 40 lines (it parses and calls the library); no function in the package is over 80 lines.

MAX_MAIN_LINES = 40
MAX_FUNCTION_LINES = 80  # the def line, its docstring and body: end_lineno - lineno + 1


def long_functions(source: str, limit: int) -> list[tuple[str, int, int]]:
    """(qualified name, first line, lines) of every function or method of ``source`` over ``limit`` lines."""
    found = []

    def visit(node, prefix):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = f"{prefix}{child.name}"
                if not isinstance(child, ast.ClassDef) and child.end_lineno - child.lineno + 1 > limit:
                    found.append((name, child.lineno, child.end_lineno - child.lineno + 1))
                visit(child, name + ".")
            else:
                visit(child, prefix)

    visit(ast.parse(source), "")
    return found


def entry_point_problems(source: str, max_main: int = MAX_MAIN_LINES) -> list[str]:
    """What a command module lacks: a module-level build_parser() taking no argument, and a main of at
    most ``max_main`` lines."""
    defs = {n.name: n for n in ast.parse(source).body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
    problems = []
    parser = defs.get("build_parser")
    if parser is None:
        problems.append("no build_parser()")
    elif parser.args.args or parser.args.posonlyargs or parser.args.kwonlyargs:
        problems.append("build_parser() takes arguments")
    main = defs.get("main")
    if main is None:
        problems.append("no main()")
    elif main.end_lineno - main.lineno + 1 > max_main:
        problems.append(f"main() has {main.end_lineno - main.lineno + 1} lines (at most {max_main})")
    return problems


def _def_of(name: str, lines: int, indent: str = "") -> str:
    """Planted source: a function of exactly ``lines`` lines."""
    return f"{indent}def {name}():\n" + "".join(f"{indent}    x = {i}\n" for i in range(lines - 1))


def test_long_function_finder_on_planted_source():
    source = (_def_of("short", 80) + _def_of("long", 81) + "class C:\n" + _def_of("method", 82, "    ")
              + "    def ok(self):\n" + _def_of("inner", 90, "        ") + "        return 1\n")
    assert long_functions(source, 80) == [("long", 81, 81), ("C.method", 163, 82), ("C.ok", 245, 92),
                                          ("C.ok.inner", 246, 90)]
    assert long_functions(_def_of("f", 3), 80) == []


def test_entry_point_checker_on_planted_source():
    good = "def build_parser():\n    return None\n\n\n" + _def_of("main", 40)
    assert entry_point_problems(good) == []
    assert entry_point_problems(good.replace("build_parser", "get_parser")) == ["no build_parser()"]
    assert entry_point_problems(good.replace("build_parser()", "build_parser(p)")) == ["build_parser() takes arguments"]
    assert entry_point_problems("def build_parser():\n    pass\n" + _def_of("main", 41)) == [
        "main() has 41 lines (at most 40)"]
    assert entry_point_problems("def build_parser():\n    def main():\n        pass\n") == ["no main()"]


@pytest.mark.parametrize("tool", sorted(p.stem for p in (PACKAGE / "bin").glob("*.py") if p.stem != "__init__"))
def test_every_tool_has_build_parser_and_a_short_main(tool):
    path = PACKAGE / "bin" / f"{tool}.py"
    assert entry_point_problems(path.read_text()) == [], path


def test_no_function_over_80_lines():
    over = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(REPO).as_posix()
        for name, line, n in long_functions(path.read_text(), MAX_FUNCTION_LINES):
            over.append(f"{rel}:{line} {name} ({n} lines)")
    assert not over, f"functions over {MAX_FUNCTION_LINES} lines: {over}"


# ---------------------------------------------------------------------------------------------------
# Loading without training, and choices listed once.
#
# A trained model is loaded for evaluation and inference by cdsvae.experiment.load (an experiment
# directory or a packed model); neither it nor cdsvae.inference may reach the training loop in the
# import graph (function-level imports included). Every list of choices of a config key is written
# once, where its Field is declared; code that needs it names that declaration.

LOADING_MODULES = ("cdsvae.experiment.load", "cdsvae.inference")
TRAINING_LOOP = "cdsvae.train.trainer"


def import_path(graph: dict[str, set[str]], start: str, target: str) -> list[str] | None:
    """A shortest chain of imports from ``start`` to ``target`` (both included), or None."""
    parent: dict[str, str | None] = {start: None}
    queue = [start]
    while queue:
        node = queue.pop(0)
        if node == target:
            path = [node]
            while parent[path[-1]] is not None:
                path.append(parent[path[-1]])
            return path[::-1]
        for dep in sorted(graph.get(node, ())):
            if dep not in parent:
                parent[dep] = node
                queue.append(dep)
    return None


def test_import_path_finds_a_planted_chain_and_only_a_real_one():
    graph = {"a": {"b", "x"}, "b": {"c"}, "c": {"a"}, "x": set(), "d": {"a"}}
    assert import_path(graph, "d", "c") == ["d", "a", "b", "c"]
    assert import_path(graph, "a", "a") == ["a"]
    assert import_path(graph, "x", "a") is None  # imports run one way
    assert import_path(graph, "a", "d") is None  # a circle (a, b, c) ends without reaching d


@pytest.mark.parametrize("module", LOADING_MODULES)
def test_loading_a_model_never_reaches_the_training_loop(module):
    graph = import_graph(_modules())
    assert module in graph and TRAINING_LOOP in graph, "the loading module or the training loop was renamed"
    assert import_path(graph, "cdsvae.experiment.run", TRAINING_LOOP)  # the check can see the loop
    path = import_path(graph, module, TRAINING_LOOP)
    assert path is None, " -> ".join(path)



def test_training_reads_features_without_the_audio_readers():
    """Stage 4 reads ark/scp features: the training entry point never imports the audio readers
    or the filterbank (they belong to stage 2 and to inference)."""
    graph = import_graph(_modules())
    assert import_path(graph, "cdsvae.bin.make_fbank", "cdsvae.audio")  # the check can see them
    for target in ("cdsvae.audio", "cdsvae.fbank"):
        path = import_path(graph, "cdsvae.bin.train", target)
        assert path is None, " -> ".join(path)

def _string_list(node: ast.AST) -> frozenset[str] | None:
    """The strings of a tuple, list or set literal of two or more string constants, else None."""
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)) and len(node.elts) >= 2 and all(
            isinstance(e, ast.Constant) and isinstance(e.value, str) for e in node.elts):
        return frozenset(e.value for e in node.elts)
    return None


def _declared_choices(tree: ast.Module) -> list[ast.AST]:
    """The literal nodes of ``choices=`` of every ``Field(...)``/``required(...)`` call, module-level
    constants (``choices=DATA_TYPES``) resolved."""
    constants = {t.id: node.value for node in tree.body if isinstance(node, ast.Assign)
                 for t in node.targets if isinstance(t, ast.Name)}
    found = []
    for node in ast.walk(tree):
        func = getattr(node, "func", None)
        if isinstance(node, ast.Call) and getattr(func, "id", getattr(func, "attr", None)) in ("Field", "required"):
            for kw in node.keywords:
                value = constants.get(kw.value.id, kw.value) if isinstance(kw.value, ast.Name) else kw.value
                if kw.arg == "choices" and _string_list(value):
                    found.append(value)
    return found


def repeated_choices(sources: dict[str, str]) -> list[str]:
    """Where a config key's choices are written a second time: another Field with the same choices,
    or a literal with exactly the same strings anywhere else in ``sources`` (module -> text)."""
    trees = {name: ast.parse(text) for name, text in sources.items()}
    declared: dict[frozenset, str] = {}
    problems = []
    seen = set()
    for name, tree in trees.items():
        for node in _declared_choices(tree):
            seen.add(id(node))
            site, choices = f"{name}:{node.lineno}", _string_list(node)
            if choices in declared:
                problems.append(f"{site} declares the choices of {declared[choices]} again")
            declared.setdefault(choices, site)
    for name, tree in trees.items():
        for node in ast.walk(tree):
            choices = _string_list(node)
            if choices in declared and id(node) not in seen:
                problems.append(f"{name}:{node.lineno} lists {sorted(choices)}, declared at {declared[choices]}")
    return problems


def test_repeated_choices_are_found_in_planted_modules():
    sources = {
        "a": 'MODES = ("x", "y")\nS = Section({"mode": Field("x", "str", choices=MODES)})\n',
        "b": 'def check(v):\n    if v not in ("y", "x"):\n        raise ValueError(v)\n',
        "c": 'T = Section({"kind": required("str", choices=("p", "q")),\n'
             '               "other": Field("p", "str", choices=["q", "p"])})\n'
             'U = ("x", "z")\n',
    }
    assert repeated_choices(sources) == ["c:2 declares the choices of c:1 again",
                                         "b:2 lists ['x', 'y'], declared at a:1"]
    assert repeated_choices({"a": sources["a"], "d": 'if v in ("x", "y", "z"): pass\n'}) == []


def test_the_choices_of_every_config_key_are_listed_once():
    sources = {name: path.read_text() for name, path in _modules().items()}
    assert not repeated_choices(sources), repeated_choices(sources)
