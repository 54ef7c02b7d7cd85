"""The images, read as Docker reads their Dockerfiles (no docker build runs here).

deploy/Dockerfile (the user-code image) installs exactly what pyproject.toml pins, copies the code
location, the dbt project and the Feast repository, runs as an unprivileged user and bakes in no
secret. deploy/serving/Dockerfile (the model server) copies every ``platform_assets`` module that
the serving modules import, transitively, and every module or file those read at run time.
"""

import ast
import json
import re
import shlex
import tomllib
from pathlib import Path

import pytest
import yaml

from platform_assets import config
from platform_assets.declared import read_declarations

PROJECT_ROOT = Path(__file__).resolve().parents[2]
USER_CODE = PROJECT_ROOT / "deploy" / "Dockerfile"
SERVING = PROJECT_ROOT / "deploy" / "serving" / "Dockerfile"
SERVING_MODULES = ["PlatformModel.py", "payload.py", "model_server.py", "seldon_worker.py", "inference_log.py",
                   "online_features.py"]
PACKAGE = "platform_assets"


def instructions(text: str) -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` in order: continuation lines joined, comments dropped."""
    logical, current = [], ""
    for line in text.splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.lstrip().startswith("#"):  # a comment inside a continued instruction
            continue
        current += line.rstrip()
        if current.endswith("\\"):
            current = current[:-1] + " "
            continue
        logical.append(current.strip())
        current = ""
    return [(item.split(None, 1)[0].upper(), item.split(None, 1)[1] if " " in item else "") for item in logical]


def copied_files(text: str, context: Path = PROJECT_ROOT) -> dict[str, str]:
    """Every file of the build context the ``COPY`` lines put in the image: its path there, by its path here."""
    copied = {}
    for instruction, arguments in instructions(text):
        if instruction != "COPY":
            continue
        words = [w for w in shlex.split(arguments) if not w.startswith("--")]
        *sources, destination = words
        for source in sources:
            path = context / source
            if path.is_dir():
                for file in path.rglob("*"):
                    if file.is_file() and "__pycache__" not in file.parts:
                        copied[file.relative_to(context).as_posix()] = \
                            f"{destination.rstrip('/')}/{file.relative_to(path).as_posix()}"
            elif path.is_file():
                target = f"{destination.rstrip('/')}/{path.name}" if destination.endswith("/") or len(sources) > 1 \
                    else destination
                copied[source] = target
            else:
                raise AssertionError(f"COPY names {source}, which the build context does not have")
    return copied


def module_file(module: str) -> Path | None:
    """The file of module ``platform_assets...``, or ``None`` when ``module`` is no module (an attribute)."""
    base = PROJECT_ROOT.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_modules(file: Path) -> set[str]:
    """The ``platform_assets`` modules ``file`` imports, anywhere in it (inside functions too)."""
    found = set()
    package = ".".join(file.relative_to(PROJECT_ROOT).with_suffix("").parts[:-1])
    for node in ast.walk(ast.parse(file.read_text(), str(file))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the file's package
                base = ".".join([*package.split(".")[:len(package.split(".")) - node.level + 1], base]).strip(".")
            names = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        else:
            continue
        found |= {name for name in names if name.split(".")[0] == PACKAGE and module_file(name)}
    return found


def files_needed(entry_points: list[Path], extra_modules: set[str] = frozenset()) -> set[str]:
    """Project-relative files of every module the entry points import, transitively, with the packages above."""
    needed, seen = set(), set()
    pending = set(extra_modules).union(*(imported_modules(f) for f in entry_points))
    while pending:
        module = pending.pop()
        if module in seen:
            continue
        seen.add(module)
        parts = module.split(".")
        for depth in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__.py and a/b/__init__.py too
            file = module_file(".".join(parts[:depth]))
            if file:
                needed.add(file.relative_to(PROJECT_ROOT).as_posix())
                pending |= imported_modules(file) - seen
    return needed


def serving_problems(dockerfile_text: str) -> list[str]:
    """What the serving image lacks: modules not copied to where PYTHONPATH finds them, declarations not copied."""
    env = dict(re.findall(r"(\w+)=(\S+)", " ".join(a for i, a in instructions(dockerfile_text) if i == "ENV")))
    root = env.get("PYTHONPATH", "").split(":")[0].rstrip("/")
    copied = copied_files(dockerfile_text)
    request_features = {u.request_features for u in read_declarations() if u.request_features}
    needed = files_needed([PROJECT_ROOT / "deploy" / "serving" / m for m in SERVING_MODULES], request_features)
    needed |= {p.relative_to(PROJECT_ROOT).as_posix() for p in (PROJECT_ROOT / PACKAGE / "defs").glob("*/defs.yaml")}
    return [f"{path} is not copied to {root}/{path}" for path in sorted(needed) if copied.get(path) != f"{root}/{path}"]


def test_the_serving_image_copies_every_platform_module_its_modules_import():
    needed = files_needed([PROJECT_ROOT / "deploy" / "serving" / m for m in SERVING_MODULES])
    assert "platform_assets/config.py" in needed  # the serving code reads its settings through it
    assert serving_problems(SERVING.read_text()) == []


@pytest.mark.parametrize("removed", ["platform_assets/config.py", "platform_assets/deploy/handoff.py"])
def test_a_module_left_out_of_the_serving_image_is_named(removed):
    text = SERVING.read_text().replace(f" {removed}", "")
    assert f"{removed} is not copied to /app/{removed}" in serving_problems(text)


def test_the_import_walk_follows_imports_inside_functions():
    # seldon_worker imports the handoff only when it serves the stable port: still needed in the image.
    assert "platform_assets.deploy.handoff" in imported_modules(PROJECT_ROOT / "deploy/serving/seldon_worker.py")


def _pins() -> dict[str, str]:
    dependencies = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return {re.split(r"[\[=<>!~ ;]", d, maxsplit=1)[0].lower(): d for d in dependencies}


def test_the_user_code_image_installs_exactly_what_pyproject_pins():
    steps = instructions(USER_CODE.read_text())
    runs = " && ".join(a for i, a in steps if i == "RUN")
    copied = copied_files(USER_CODE.read_text())
    assert copied["pyproject.toml"] == "/app/pyproject.toml"
    # The dependencies are read from pyproject.toml itself, so every pin there is the pin here.
    assert "tomllib.load(open('/app/pyproject.toml'" in runs and "['project']['dependencies']" in runs
    assert "pip install -r /tmp/requirements.txt" in runs
    # Any requirement spelt out in a RUN line agrees with pyproject.toml (torch: the CPU build of its pin).
    for name, version in re.findall(r"\b([A-Za-z][\w.-]*)==([\w.]+)", runs):
        assert _pins()[name.lower()].replace(" ", "").endswith(f"=={version}"), (name, version)
    assert "torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu" in runs
    assert "pip install --no-deps -e /app" in runs  # the project itself, pinned deps already in place


def test_the_user_code_image_holds_the_code_location_dbt_and_feast():
    copied = copied_files(USER_CODE.read_text())
    for path in ["platform_assets/definitions.py", "platform_assets/config.py",
                 "platform_assets/defs/loan_default/defs.yaml", "dbt/dbt_project.yml", "dbt/profiles.yml",
                 "feature_repo/feature_store.prod.yaml", "feature_repo/loan_default.py"]:
        assert copied.get(path) == f"/app/{path}", path
    steps = instructions(USER_CODE.read_text())
    cmd = json.loads(next(a for i, a in reversed(steps) if i == "CMD"))
    assert cmd[:3] == ["dagster", "api", "grpc"]
    assert cmd[cmd.index("--module-name") + 1] == "platform_assets.definitions"
    assert cmd[cmd.index("-p") + 1] == "3030" and ("EXPOSE", "3030") in steps
    values = yaml.safe_load((PROJECT_ROOT / "deploy/dagster/values.yaml").read_text())
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    assert deployment["port"] == 3030 and deployment["dagsterApiGrpcArgs"] == cmd[cmd.index("--module-name"):]


def test_the_user_code_image_runs_unprivileged_and_bakes_in_no_secret():
    steps = instructions(USER_CODE.read_text())
    users = [a for i, a in steps if i == "USER"]
    assert users and users[-1].split(":")[0] not in ("0", "root")
    assert [i for i, _ in steps].index("CMD") > [i for i, _ in steps].index("USER")
    secrets = {s.name for s in config.SETTINGS if s.secret}
    declared = " ".join(a for i, a in steps if i in ("ENV", "ARG"))
    assert not secrets & set(re.findall(r"\b([A-Z][A-Z0-9_]*)=", declared))
    assert not any(name in declared.split() for name in secrets)
