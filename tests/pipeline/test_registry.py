"""The pipeline's declarations: registry, catalogue, sources, the table guard and the import rules."""
from __future__ import annotations

import ast
import inspect
import json
import subprocess
import sys
from pathlib import Path

import pytest

from recspark import catalog
from recspark.io.delta import DeltaTables
from recspark.pipeline.registry import NIGHTLY, STAGES, pipeline_spec, upstream
from recspark.pipeline.stage import StageTables, UndeclaredTableError
from recspark.sources import BUILT_IN, SOURCE_TABLES, get_source, register_source, unregister_source

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "recspark"
STAGE_MODULES = {p.stem for p in (PACKAGE / "pipeline").glob("*.py")} - {"__init__", "stage", "registry", "runner"}


def recspark_imports(path: Path) -> set[str]:
    """Every ``recspark.*`` module ``path`` imports (top level or inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("recspark"):
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("recspark"))
    return found


def test_every_stage_module_is_declared_and_every_declaration_resolves():
    assert {STAGES[name].run.split(":")[0].rsplit(".", 1)[1] for name in STAGES} == STAGE_MODULES
    for name, stage in STAGES.items():
        function = stage.function()
        assert list(inspect.signature(function).parameters) == ["ctx"], name
        assert function.__name__ == "run_" + name.replace("-", "_")


def test_no_stage_imports_another_stage_or_the_runner():
    for module in STAGE_MODULES:
        imported = recspark_imports(PACKAGE / "pipeline" / f"{module}.py")
        others = {f"recspark.pipeline.{m}" for m in STAGE_MODULES - {module}} | {
            "recspark.pipeline.registry", "recspark.pipeline.runner"}
        assert not imported & others, (module, imported & others)


def test_library_imports_neither_config_loading_nor_the_pipeline():
    allowed = {PACKAGE / "config.py", PACKAGE / "cli.py"}
    for path in PACKAGE.rglob("*.py"):
        if path in allowed or "pipeline" in path.relative_to(PACKAGE).parts:
            continue
        imported = recspark_imports(path)
        assert not {m for m in imported if m == "recspark.config" or m.startswith("recspark.pipeline")}, path


def test_every_declared_table_is_in_the_catalogue_and_owned_by_a_stage_that_writes_it():
    for stage in STAGES.values():
        for table in (*stage.reads, *stage.writes):
            assert catalog.TABLES[table.name] is table
    writers = {t.name: {s.name for s in STAGES.values() if t in s.writes} for t in catalog.TABLES.values()}
    for table in catalog.TABLES.values():
        assert table.owner in writers[table.name] or (table is catalog.STAGE_RUNS and table.owner == "pipeline"), table
    assert not {t for t in SOURCE_TABLES if t not in STAGES["candidates"].reads}


TABLE_METHODS = {"read", "read_if_exists", "exists", "write", "history", "latest_metadata", "version"}


def test_stages_name_tables_only_through_the_catalogue():
    for path in (PACKAGE / "pipeline").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in TABLE_METHODS:
                named = [a for a in node.args[:2] if isinstance(a, ast.Constant) and a.value in catalog.TABLES]
                assert not named, (path.name, node.lineno, named[0].value)


def test_upstream_follows_the_tables_and_the_dag_spec_is_current():
    assert upstream("ingest") == ()
    assert upstream("featurize") == ("ingest",)
    assert set(upstream("candidates")) >= {"train-als", "item-similarity", "embed-items"}
    assert "train-deep" in upstream("rerank") and "candidates" in upstream("rerank")
    assert "evaluate" in upstream("publish")
    assert all(set(upstream(name)) < set(NIGHTLY[: NIGHTLY.index(name)]) | {name} or name == "ingest"
               for name in NIGHTLY)
    spec = json.loads((REPO / "airflow_dags" / "recspark_pipeline.json").read_text())
    assert spec == pipeline_spec(), "regenerate: python -m recspark.pipeline.registry airflow_dags/recspark_pipeline.json"


def test_the_job_entry_point_runs_any_stage_by_name():
    source = (REPO / "jobs" / "submit.py").read_text()
    assert "main(sys.argv[1:])" in source and sorted(p.name for p in (REPO / "jobs").glob("*.py")) == ["submit.py"]


def test_undeclared_reads_and_writes_fail_and_reads_record_their_version(spark, tmp_path):
    delta = DeltaTables(spark, lambda name: str(tmp_path / name), engine="delta-rs")
    frame = spark.createDataFrame([(0, 1)], "user_idx int, item_idx int")
    delta.write(frame, "user_index")
    delta.write(frame, "user_index")
    tables = StageTables(delta, "toy", reads=(catalog.USER_INDEX,), writes=(catalog.CANDIDATES,))
    assert tables.read(catalog.USER_INDEX).count() == 1
    assert tables.read_versions == {"user_index": 1}
    with pytest.raises(UndeclaredTableError, match="stage toy read table 'item_index'"):
        tables.read("item_index")
    with pytest.raises(UndeclaredTableError, match="stage toy write table 'user_index'"):
        tables.write(frame, catalog.USER_INDEX)
    with pytest.raises(KeyError, match="unknown table 'nope'"):
        tables.read("nope")


def test_sources_resolve_and_a_plug_in_registers_once():
    for name in BUILT_IN:
        assert get_source(name).name == name

    class Toy(get_source("popularity").__class__):
        name = "toy"

    register_source(Toy())
    try:
        assert get_source("toy").name == "toy"
        with pytest.raises(ValueError, match="already registered"):
            register_source(Toy())
    finally:
        unregister_source("toy")
    with pytest.raises(ValueError, match="unknown candidate source 'toy'"):
        get_source("toy")


def test_importing_the_cli_loads_no_stage_heavy_module():
    heavy = ("torch", "petastorm", "sentence_transformers", "lightgbm", "implicit")
    probe = f"import sys, recspark.cli; recspark.cli.build_parser(); print(sorted(m for m in {heavy!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
