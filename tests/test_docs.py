"""The documentation stays an entry point that does not dangle (issue #29): README.md within 250 lines; every
relative link and every config, doc, script or test path that README.md, config/README.md, docs/*.md,
tests/README.md or benchmarks/README.md names exists, inside the repository; every Markdown table whole; every
target in the README's list a rule; every config/*.yaml in config/README.md (with what it extends) and in the
README. Paths under results/ are built outputs, not checked."""
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
CONFIG_README = ROOT / "config/README.md"
MAX_README_LINES = 250


def documents() -> list[Path]:
    return [README, CONFIG_README, *sorted((ROOT / "docs").glob("*.md")), ROOT / "tests/README.md",
            ROOT / "benchmarks/README.md"]


DOCS = documents()
# a path in backticks is checked when it starts at one of the repository's own folders or files, or at one of the
# library's folders (`pi_repro/kinds.py` is workflow/pi_repro/kinds.py); anything else (an output inside a results
# folder, `finetune.json`, `_trainer/`) is not a repository path
REPO_DIRS = {"config", "docs", "workflow", "tests", "benchmarks", "resources", "profiles", "slurm", ".ci"}
REPO_FILES = {"README.md", "Makefile", "Snakefile", "pyproject.toml", "requirements.txt"}
WORKFLOW_DIRS = {"pi_repro", "scripts", "rules", "schemas", "envs", "report"}
NOT_A_PATH = re.compile(r"[\s{}*<>$…|,;()=\"':@]")


def prose(text: str) -> str:
    """The text without its fenced code blocks (commands and layout sketches, not references)."""
    return re.sub(r"^[ \t]*```.*?^[ \t]*```[ \t]*$", "", text, flags=re.M | re.S)


def code_spans(text: str) -> list[str]:
    return re.findall(r"`([^`]+)`", prose(text))


def path_words(text: str) -> list[str]:
    """Every word of the code spans and of the fenced code blocks (a command names its script and its config),
    without the punctuation around it."""
    blocks = re.findall(r"^[ \t]*```.*?^[ \t]*```[ \t]*$", text, flags=re.M | re.S)
    words = [w for chunk in [*code_spans(text), *blocks] for w in chunk.split()]
    return [w.lstrip("('\"").rstrip("),;.:'\"") for w in words]


def links(text: str) -> list[str]:
    return [t for t in re.findall(r"\[[^\]]*\]\(([^)\s]+)\)", prose(text))
            if "://" not in t and not t.startswith(("mailto:", "#"))]


def repo_path(span: str, doc: Path) -> Path | None:
    """Where the repository path a code span names lies, or None when the span names none."""
    span = span.split("::")[0]  # tests/README.md: test_x.py::test_name
    if NOT_A_PATH.search(span) or span.startswith(("results/", "-", ".")) and not span.startswith(".ci/"):
        return None
    first = span.split("/")[0]
    if span in REPO_FILES or ("/" in span and first in REPO_DIRS):
        return ROOT / span
    if "/" in span and first in WORKFLOW_DIRS:
        return ROOT / "workflow" / span
    if "/" not in span and re.fullmatch(r"test_\w+\.py", span):
        return ROOT / "tests" / span
    if "/" not in span and doc == CONFIG_README and span.endswith(".yaml"):
        return ROOT / "config" / span  # config/README.md names the configurations by file name
    return None


def dangling(doc: Path) -> list[str]:
    text = doc.read_text()
    where = doc.relative_to(ROOT)
    out = []
    for word in path_words(text):
        path = repo_path(word, doc)
        if path is not None and not path.exists():
            out.append(f"{where}: `{word}` does not exist")
        elif path is not None and "::" in word and not re.search(rf"^def {word.split('::')[1]}\(",
                                                                 path.read_text(), flags=re.M):
            out.append(f"{where}: `{word}`: no such test in {path.relative_to(ROOT)}")
    for target in links(text):
        path = (doc.parent / target.split("#")[0]).resolve()
        if not path.is_relative_to(ROOT):
            out.append(f"{where}: link ({target}) points outside the repository")
        elif not path.exists():
            out.append(f"{where}: link ({target}) does not exist")
    for up in re.findall(r"(?<![\w.])\.\./[\w./-]+", text):  # anywhere, code blocks included
        if not (doc.parent / up).resolve().is_relative_to(ROOT):
            out.append(f"{where}: {up} points outside the repository")
    return out


def broken_tables(doc: Path) -> list[str]:
    """Each run of table rows must start with a header and its separator: a blank line inside a table splits it,
    and Markdown then shows the rows after it as text."""
    out, run = [], []
    for n, line in enumerate([*prose(doc.read_text()).splitlines(), ""], 1):
        if line.lstrip().startswith("|"):
            run.append(line)
            continue
        if run and (len(run) < 2 or not re.fullmatch(r"\s*\|(\s*:?-{3,}:?\s*\|)+\s*", run[1])):
            out.append(f"{doc.relative_to(ROOT)}:{n - len(run)}: table rows without a header: {run[0][:60]}")
        run = []
    return out


def section(text: str, title: str) -> str:
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end if end >= 0 else None]


def first_cells(table_text: str) -> list[str]:
    rows = [r for r in table_text.splitlines() if r.startswith("|") and not re.match(r"\|\s*:?-{3,}", r)]
    return [r.split("|")[1] for r in rows[1:]]  # without the header


def rules() -> set[str]:
    text = "\n".join(p.read_text() for p in [ROOT / "Snakefile", *sorted((ROOT / "workflow/rules").glob("*.smk"))])
    return set(re.findall(r"^\s*rule\s+(\w+)\s*:", text, flags=re.M))


def table_targets(path: Path) -> set[str]:
    """The target rules tables.smk names after the `tables:` entries (`snakemake table3`), through `extends`."""
    cfg = yaml.safe_load(path.read_text())
    inherited = table_targets(ROOT / cfg["extends"]) if cfg.get("extends") else set()
    tables = cfg.get("tables") or {}
    return {t for t in inherited | set(tables) if tables.get(t, True) is not None}


def configs() -> list[Path]:
    return sorted((ROOT / "config").glob("*.yaml"))


# ------------------------------------------------------------------------------------------------------- tests
def test_the_readme_is_an_entry_point_of_at_most_250_lines():
    n = len(README.read_text().splitlines())
    assert n <= MAX_README_LINES, f"README.md has {n} lines (at most {MAX_README_LINES}): move detail to docs/"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_path_and_link_a_doc_names_exists_inside_the_repository(doc):
    assert doc.exists(), f"{doc.relative_to(ROOT)} is missing"
    assert not dangling(doc), "\n".join(dangling(doc))


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_table_of_a_doc_is_whole(doc):
    assert not broken_tables(doc), "\n".join(broken_tables(doc))


def test_every_target_the_readme_lists_is_a_rule():
    listed = [name for cell in first_cells(section(README.read_text(), "Targets"))
              for name in re.findall(r"`(\w+)`", cell)]
    known = rules() | {t for c in configs() for t in table_targets(c)}  # table7: where a config has it
    assert {"all", "audit", "plan", "table1"} <= set(listed), listed  # the list is where the test looks
    assert not [t for t in listed if t not in known], (
        f"README's targets that are no rule of the Snakefile or workflow/rules/*.smk, nor a table of a "
        f"config/*.yaml: {[t for t in listed if t not in known]}")


def test_config_readme_lists_every_configuration_with_what_it_extends():
    rows = {}
    for row in CONFIG_README.read_text().splitlines():
        cells = [c.strip() for c in row.split("|")[1:-1]]
        if len(cells) >= 3 and re.fullmatch(r"`[\w.-]+\.yaml`", cells[0]):
            rows[cells[0].strip("`")] = cells[1].strip("`")
    files = {p.name: p for p in configs()}
    assert sorted(rows) == sorted(files), (f"config/README.md's configurations {sorted(rows)} are not the files "
                                           f"config/*.yaml {sorted(files)}")
    for name, path in files.items():
        extends = yaml.safe_load(path.read_text()).get("extends")
        stated = rows[name]
        assert stated == (Path(extends).name if extends else "–"), (
            f"config/README.md says {name} extends {stated!r}; the file says {extends!r}")


def test_the_readme_names_every_configuration():
    listed = set(re.findall(r"`config/([\w.-]+\.yaml)`", section(README.read_text(), "Configurations")))
    assert listed == {p.name for p in configs()}, (
        f"README's Configurations section: missing {sorted({p.name for p in configs()} - listed)}, "
        f"extra {sorted(listed - {p.name for p in configs()})}")
