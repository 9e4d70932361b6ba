"""The README's promises and the install files agree with what the project does."""

import re
import subprocess

import yaml
from packaging.requirements import Requirement
from packaging.version import Version

from support import REPO_ROOT

README = (REPO_ROOT / "README.md").read_text()


def _pins(path):
    pins = {}
    for line in (REPO_ROOT / path).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-r"):
            requirement = Requirement(line)
            pins[requirement.name.lower()] = requirement
    return pins


def test_readme_opens_with_the_two_newcomer_commands():
    first_block = re.search(r"```bash\n(.*?)```", README, flags=re.S).group(1)
    commands = [line.split("#")[0].strip() for line in first_block.strip().splitlines()]
    assert commands == ["make reproduce", "make test"]
    assert README.index("```bash") < README.index("\n## ")


def test_ci_calls_the_readme_test_command():
    ci = (REPO_ROOT / ".ci" / "run").read_text().splitlines()
    assert "make test" in ci
    makefile = (REPO_ROOT / "Makefile").read_text()
    assert re.search(
        r"^reproduce: .*\n\t\$\(BIN\)/snakemake --cores all\n\t@\$\(BIN\)/circle-repro summary --reports reports$",
        makefile,
        flags=re.M,
    ), "make reproduce runs the workflow, then prints the headline results and where the report is"
    assert re.search(r"^test: ", makefile, flags=re.M)


def test_readme_python_examples_run():
    for block in re.findall(r"```python\n(.*?)```", README, flags=re.S):
        exec(compile(block, "README.md", "exec"), {})


def test_every_pin_is_exact_and_admitted_by_pyproject():
    import tomllib

    pins = _pins("requirements.in")
    assert all(len(r.specifier) == 1 and next(iter(r.specifier)).operator == "==" for r in pins.values())
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    for line in project["dependencies"]:
        ranged = Requirement(line)
        pinned = pins[ranged.name.lower()]
        assert ranged.specifier.contains(Version(next(iter(pinned.specifier)).version)), line
    assert {Requirement(d).name.lower() for d in project["dependencies"]} == set(pins)


def test_environment_yml_installs_the_same_pins():
    environment = yaml.safe_load((REPO_ROOT / "environment.yml").read_text())
    assert "python=3.11" in environment["dependencies"]
    pip_section = next(d for d in environment["dependencies"] if isinstance(d, dict))["pip"]
    assert pip_section == ["-r requirements.lock"]


def test_torch_pair_is_the_one_that_installs_here():
    pins = _pins("requirements.in")
    assert str(pins["torch"].specifier) == "==2.14.1" and str(pins["torchvision"].specifier) == "==0.29.1"


def test_readme_data_table_is_the_one_generated_from_sources_yaml():
    from circle_repro.data.info import format_placement_table
    from circle_repro.data.sources import load_sources

    assert format_placement_table(load_sources()) in README


def test_readme_stays_short_and_its_links_lead_to_files():
    assert len(README.splitlines()) <= 200
    for page in (
        REPO_ROOT / "README.md",
        *sorted((REPO_ROOT / "docs").glob("*.md")),
        REPO_ROOT / "benchmarks" / "README.md",
    ):
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if not target.startswith(("http://", "https://")):
                assert (page.parent / target).exists(), f"{page.name} links {target}, which does not exist"


def test_readme_circle_repro_commands_and_make_targets_exist():
    from circle_repro.cli import build_parser

    commands = re.findall(r"\.venv/bin/circle-repro ([^`\n#]+)", README)
    assert len(commands) >= 6
    for command in commands:
        build_parser().parse_args(command.split())  # an unknown verb or option exits 2 here
    makefile = (REPO_ROOT / "Makefile").read_text()
    for target in set(re.findall(r"`make ([a-z-]+)`", README)) | {"reproduce", "test", "lock", "clean"}:
        assert re.search(rf"^{target}:", makefile, flags=re.M), target


# A path of one machine, or a citation of a document that is not in the repository (notes kept beside it).
MACHINE_PATH = re.compile(r"(?<![\w.$/-])/(?:work|home|Users|root|scratch)/")
OUTSIDE_DOCUMENT = re.compile(r"\bspec §|\.\./shared\b|\bshared/(?:paper|design)|circle_loss_spec")
CITED_NOTE = re.compile(r"\b([\w-]+\.md) §")


def _tracked_text_files():
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO_ROOT, capture_output=True, text=True, check=True).stdout
    for name in tracked.splitlines():
        path = REPO_ROOT / name
        if name == "tests/test_project_files.py":  # it spells out what the check looks for
            continue
        if path.is_file() and path.suffix not in {".png", ".jpg", ".parquet", ".npz", ".pth", ".gz", ".zip", ".bin"}:
            try:
                yield name, path.read_text(encoding="utf-8")
            except UnicodeDecodeError:
                continue


def test_no_file_names_a_machine_path_or_a_document_outside_the_repository():
    markdown = {path.name for path in REPO_ROOT.rglob("*.md") if ".venv" not in path.parts}
    problems = []
    for name, text in _tracked_text_files():
        for number, line in enumerate(text.splitlines(), 1):
            if MACHINE_PATH.search(line) or OUTSIDE_DOCUMENT.search(line):
                problems.append(f"{name}:{number}: {line.strip()[:120]}")
            problems += [f"{name}:{number}: cites {doc}, not in the repository" for doc in CITED_NOTE.findall(line)
                         if doc not in markdown]  # fmt: skip
    assert not problems, "\n".join(problems)


def test_the_outside_pointer_check_can_fail():
    assert MACHINE_PATH.search("see /work/main/params.yaml") and MACHINE_PATH.search("(/home/ana/data)")
    assert not MACHINE_PATH.search('write_text("/elsewhere/work/iter_4.pth")') and not MACHINE_PATH.search("$OUT/x")
    assert OUTSIDE_DOCUMENT.search("as spec §3 says") and OUTSIDE_DOCUMENT.search("shared/paper/datasets.md §15")
    assert CITED_NOTE.findall("(datasets.md §4)") == ["datasets.md"]
