"""What plain `sam build` produces (`make build` is just that): precompiled, trimmed artifacts, one
layer per architecture, as the bench (docs/performance.md) and the sam_local tests expect them.

No Docker engine needed: `sam build` runs the Makefiles in layers/shared and functions on this machine.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import marshal
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.sam_local import harness
from tools.bench.size import RUNTIME_PACKAGES, tree_size
from tools.template_resources import load_template

pytestmark = pytest.mark.sam_local

# Layer artifact -> the architecture its wheels are for (template.yaml: CompatibleArchitectures).
LAYERS = {"SharedLayer": "x86_64", "SharedLayerArm64": "arm64"}
# ELF e_machine of each architecture's extension modules.
ELF_MACHINE = {"x86_64": 0x3E, "arm64": 0xB7}
SO_TAG = {"x86_64": "x86_64-linux-gnu", "arm64": "aarch64-linux-gnu"}
# docs/performance.md: the layer's goal (unzipped, precompiled).
LAYER_LIMIT_BYTES = 16 * 1024 * 1024
SWAGGER_UI = "aws_lambda_powertools/event_handler/openapi/swagger_ui"
LAYER_PACKAGE = "layers/shared/ocelot_sms"
UNCHECKED_HASH = 0b01  # PEP 552 flags: hash-based, not checked against the source


def precompile_exclude() -> re.Pattern[str]:
    """The dependencies' never-imported parts, as layers/shared/Makefile names them."""
    makefile = (harness.ROOT / "layers" / "shared" / "Makefile").read_text()
    [pattern] = re.findall(r"^PRECOMPILE_EXCLUDE := (.+)$", makefile, re.MULTILINE)
    return re.compile(pattern)


def pyc_problem(source: Path, root: Path, runtime_root: str) -> str | None:
    """None when `source` has its hash-based python3.13 .pyc naming it where Lambda runs it."""
    pyc = Path(importlib.util.cache_from_source(str(source)))
    if not pyc.is_file():
        return f"{source.relative_to(root)}: no .pyc"
    data = pyc.read_bytes()
    if data[:4] != importlib.util.MAGIC_NUMBER:
        return f"{pyc.relative_to(root)}: not python3.13 bytecode"
    if int.from_bytes(data[4:8], "little") != UNCHECKED_HASH:
        return f"{pyc.relative_to(root)}: not unchecked hash-based"
    if data[8:16] != importlib.util.source_hash(source.read_bytes()):
        return f"{pyc.relative_to(root)}: compiled from another source"
    where = f"{runtime_root}/{source.relative_to(root).as_posix()}"
    if marshal.loads(data[16:]).co_filename != where:  # noqa: S302 - our own build output
        return f"{pyc.relative_to(root)}: names its source elsewhere than {where}"
    return None


def elf_machine(path: Path) -> int:
    return int.from_bytes(path.read_bytes()[18:20], "little")


def template_functions() -> list[str]:
    resources = load_template()["Resources"]
    return [name for name, spec in resources.items() if spec["Type"] == "AWS::Serverless::Function"]


def test_the_template_builds_one_layer_per_architecture_and_deploys_the_one_it_names() -> None:
    """Given template.yaml's layers and its Architecture parameter,
    Then each layer is built by the Makefile for one architecture, and the functions take the layer of
    theirs."""
    template = load_template()
    for layer, architecture in LAYERS.items():
        spec = template["Resources"][layer]
        assert spec["Metadata"] == {"BuildMethod": "makefile", "BuildArchitecture": architecture}
        assert spec["Properties"]["CompatibleArchitectures"] == [architecture]
    globals_ = template["Globals"]["Function"]
    assert globals_["Architectures"] == [{"Ref": "Architecture"}]
    assert globals_["Layers"] == [
        {"Fn::If": ["IsArm64", {"Ref": "SharedLayerArm64"}, {"Ref": "SharedLayer"}]}
    ]
    assert template["Parameters"]["Architecture"]["Default"] == "arm64"


@pytest.mark.parametrize("function", template_functions())
def test_each_function_is_its_handler_module_compiled(built: Path, function: str) -> None:
    """Given a function's artifact from plain `sam build`,
    Then it holds its handler module and that module's hash-based .pyc (Lambda's /var/task is
    read-only: an uncompiled module is compiled again on every cold start), nothing else."""
    artifact = built / function
    files = sorted(p.relative_to(artifact).as_posix() for p in artifact.rglob("*") if p.is_file())
    assert files == ["__pycache__/app.cpython-313.pyc", "app.py"]
    assert pyc_problem(artifact / "app.py", artifact, "/var/task") is None


@pytest.mark.parametrize(("layer", "architecture"), LAYERS.items())
def test_each_layer_is_precompiled_trimmed_and_within_its_size(
    built: Path, layer: str, architecture: str
) -> None:
    """Given a layer's artifact from plain `sam build`,
    Then every module is compiled (hash-based, named under /opt/python) but the dependencies'
    never-imported parts; Powertools' Swagger UI, console scripts and the runtime's own boto3 are not
    in it; its binaries are for its architecture; and it stays within the layer's size goal."""
    root = built / layer / "python"
    excluded = precompile_exclude()
    sources = list(root.rglob("*.py"))
    problems = [pyc_problem(s, root, "/opt/python") for s in sources if not excluded.search(str(s))]
    assert [p for p in problems if p] == []
    trimmed = [s for s in sources if excluded.search(str(s))]
    assert trimmed, "PRECOMPILE_EXCLUDE matches nothing"
    assert [s for s in trimmed if Path(importlib.util.cache_from_source(str(s))).exists()] == []
    assert not (root / SWAGGER_UI).exists()
    assert not (root / "bin").exists()
    assert [name for name in RUNTIME_PACKAGES if (root / name).exists()] == []
    binaries = list(root.rglob("*.so"))
    assert binaries, "no extension module: pydantic-core's is expected"
    assert {elf_machine(b) for b in binaries} == {ELF_MACHINE[architecture]}
    assert all(SO_TAG[architecture] in b.name for b in binaries)
    assert tree_size(built / layer)[0] <= LAYER_LIMIT_BYTES


def test_the_two_layers_differ_only_by_their_binaries(built: Path) -> None:
    """Given both layers of one `sam build`,
    Then they hold the same files, and the same bytes but in the extension modules (each for its
    architecture) and the wheels' metadata: what runs on arm64 is what the x86_64 tests ran."""
    x86, arm = (built / name / "python" for name in LAYERS)

    def listing(root: Path, tag: str) -> dict[str, bytes | None]:
        return {
            p.relative_to(root).as_posix().replace(tag, "<arch>"): (
                None
                if p.suffix == ".so" or any(x.endswith(".dist-info") for x in p.parts)
                else p.read_bytes()
            )
            for p in root.rglob("*")
            if p.is_file()
        }

    assert listing(x86, SO_TAG["x86_64"]) == listing(arm, SO_TAG["arm64"])


def imported_modules() -> list[str]:
    """Every module the handlers and the ocelot_sms package import, at import time or later (inside a
    function), but for type checking only."""
    sources = [*harness.ROOT.glob("functions/*/app.py"), *(harness.ROOT / LAYER_PACKAGE).rglob("*.py")]
    names: set[str] = set()
    for source in sources:
        tree = ast.parse(source.read_text())
        typing_only = {
            id(n)
            for node in ast.walk(tree)
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
            for n in ast.walk(node)
        }
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module)
                names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return sorted(names - {"__future__"})


# In a fresh interpreter without site-packages: the function and the layer first, then the venv's
# site-packages for boto3 (the Lambda runtime's). Prints each module loaded from the layer whose
# .pyc is missing.
_IMPORT_ALL = """
import importlib, json, os, sys
function, layer, site, names = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
sys.path[:0] = [function, layer]
sys.path.append(site)
for name in names:
    try:
        importlib.import_module(name)
    except ModuleNotFoundError as error:
        if error.name != name:  # `from package import attribute`: not a module, fine
            raise
missing = sorted(
    m.__name__ for m in list(sys.modules.values())
    if (getattr(m, "__file__", None) or "").startswith(layer)
    and (m.__file__.endswith(".py") and not os.path.exists(m.__cached__))
)
print(json.dumps({"loaded": sum(1 for m in list(sys.modules.values())
                                if (getattr(m, "__file__", None) or "").startswith(layer)),
                  "missing": missing}))
"""


def test_everything_the_functions_import_from_the_layer_is_precompiled(built: Path) -> None:
    """Given the x86_64 layer (this machine's) and every module the handlers and ocelot_sms import,
    When a fresh python3.13 (no site-packages, no bytecode writes, like Lambda's read-only /opt)
    imports them all from the built artifacts,
    Then every module it loaded from the layer had its .pyc there."""
    site = next(p for p in sys.path if p.endswith("site-packages"))
    handler = built / "SenderFunction"
    command = [
        sys.executable,
        "-S",
        "-P",
        "-B",
        "-c",
        _IMPORT_ALL,
        str(handler),
        str(built / "SharedLayer" / "python"),
        site,
        json.dumps(imported_modules()),
    ]
    env = {"AWS_DEFAULT_REGION": "us-east-1", "PATH": "/usr/bin:/bin"}

    done = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env, check=False)

    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["missing"] == []
    assert result["loaded"] > 200
