"""README's Layout and Extending sections are kept honest: every folder and module the layout names
exists and every library folder and module is named there; every file the Extending section names
exists, and every Python name it points to is defined in a module named in the same paragraph."""

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "cdsvae"
EXAMPLE_RECIPE = REPO / "egs" / "timit" / "cdsvae1"  # what relative recipe paths are checked against


def section(text: str, title: str) -> str:
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end if end >= 0 else len(text)]


def layout_entries(text: str) -> dict[str, list[str]]:
    """Folder -> the file names listed after it, from the indented block of the Layout section."""
    entries: dict[str, list[str]] = {}
    folder = None
    for line in section(text, "Layout").splitlines():
        if not line.startswith("    "):
            continue
        head = line[4:]
        if head and not head.startswith(" "):
            folder = head.split()[0]
            entries[folder] = []
            head = head[len(folder):]
        if folder is not None:
            entries[folder] += re.findall(r"(?<![\w./<])([\w]+(?:/[\w]+)*\.(?:py|sh))\b", head)
    return entries


def test_layout_parser_on_a_planted_block():
    text = "x\n## Layout\n\n    a/   one.py, two.sh (x.y)\n         three.py\n    b/c/ s/t.sh\n\n## Next\n"
    assert layout_entries(text) == {"a/": ["one.py", "two.sh", "three.py"], "b/c/": ["s/t.sh"]}


def test_every_folder_and_module_of_the_layout_exists():
    missing = []
    for folder, names in layout_entries((REPO / "README.md").read_text()).items():
        if not (REPO / folder).is_dir():
            missing.append(folder)
        missing += [folder + n for n in names if not (REPO / folder / n).is_file()]
    assert not missing, missing


def test_every_library_folder_and_module_is_in_the_layout():
    entries = layout_entries((REPO / "README.md").read_text())
    unnamed = []
    for init in sorted(PACKAGE.rglob("__init__.py")):
        folder = init.parent.relative_to(REPO).as_posix() + "/"
        if folder not in entries:
            unnamed.append(folder)
        elif folder != "cdsvae/bin/":
            unnamed += [folder + p.name for p in sorted(init.parent.glob("*.py"))
                        if p.name != "__init__.py" and p.name not in entries[folder]]
    assert not unnamed, f"not in README's Layout: {unnamed}"


def _defined_names(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
                names |= {n.id for n in ast.walk(target) if isinstance(n, ast.Name)}
    return names


def extending_problems(text: str) -> list[str]:
    problems = []
    for paragraph in section(text, "Extending").split("\n\n"):
        tokens = re.findall(r"`([^`]+)`", paragraph)
        paths = [t for t in tokens if "/" in t and "<" not in t and " " not in t]
        for t in paths:
            if not ((REPO / t).exists() or (EXAMPLE_RECIPE / t).exists()):
                problems.append(f"no such file: {t}")
        modules = [REPO / t for t in paths if t.endswith(".py") and (REPO / t).is_file()]
        defined = set().union(*(_defined_names(m) for m in modules)) if modules else set()
        for t in tokens:
            if re.fullmatch(r"[A-Za-z_]\w*", t) and ("_" in t or not t.islower()) and t not in defined:
                problems.append(f"{t} is defined in none of {[m.name for m in modules]}")
    return problems


def test_extending_checker_finds_planted_mistakes():
    text = ("x\n## Extending\n\n`cdsvae/objectives.py` holds `LossWeights` and `NoSuchThing`.\n\n"
            "`cdsvae/nowhere.py` and `local/data.sh`.\n")
    assert extending_problems(text) == ["NoSuchThing is defined in none of ['objectives.py']",
                                        "no such file: cdsvae/nowhere.py"]


def test_every_file_and_name_the_extending_section_points_to_exists():
    assert extending_problems((REPO / "README.md").read_text()) == []
