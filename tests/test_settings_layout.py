"""Settings are declared beside their algorithms, validated when the config loads, and library
code never loads the config."""
import ast
import dataclasses
import inspect
import subprocess
import sys
import typing
from pathlib import Path

import pytest

from recspark.config import Config, ConfigError, load_config
from recspark.deep.settings import MODEL_PARAMS, TrainSettings

pytestmark = pytest.mark.unit

PACKAGE = Path(__file__).resolve().parents[1] / "recspark"
CONFIG_IMPORTERS = ("config.py", "cli.py", "stages/", "pipeline/")


def _imported_modules(path: Path) -> set[str]:
    """Absolute names of the modules ``path`` imports (relative imports resolved)."""
    package = ".".join(("recspark",) + path.relative_to(PACKAGE).parent.parts)
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def test_no_library_module_imports_the_config():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        if relative.startswith(CONFIG_IMPORTERS):
            continue
        if "recspark.config" in _imported_modules(path):
            offenders.append(relative)
    assert offenders == []


def test_the_import_check_sees_what_a_module_imports():
    imported = _imported_modules(PACKAGE / "featurize" / "features.py")
    assert {"recspark.featurize.splits.SplitSettings", "pyspark.sql", "datetime"} <= imported
    assert "recspark.config" in _imported_modules(PACKAGE / "cli.py")


def test_loading_the_config_does_not_import_torch():
    code = "import recspark.config, sys; recspark.config.load_config(None); assert 'torch' not in sys.modules"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def _settings_classes(cls: type, seen: set[type]) -> set[type]:
    for hint in typing.get_type_hints(cls).values():
        for candidate in (hint, *typing.get_args(hint)):
            if dataclasses.is_dataclass(candidate) and candidate not in seen:
                seen.add(candidate)
                _settings_classes(candidate, seen)
    return seen


def test_every_settings_class_validates_itself_and_lives_beside_its_algorithm():
    classes = _settings_classes(Config, set())
    assert len(classes) >= 20
    for cls in classes:
        assert "__post_init__" in vars(cls), f"{cls.__name__} does not validate itself"
        assert cls.__module__ != "recspark.config", f"{cls.__name__} is declared in recspark.config"


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["deep.losses={neumf: foo}"], r"deep\.losses: unknown loss 'foo' for model 'neumf'; known: \['bce', "),
        (["deep.losses={neumf: in_batch_softmax}"], r"deep\.losses: in_batch_softmax needs .*'neumf'"),
        (["deep.models=[neumf, gru4rec]"], r"deep\.models: unknown model\(s\) \['gru4rec'\]"),
        (["deep.model_params={neumf: {layers: 3}}"], r"deep\.model_params: unknown parameter\(s\) \['layers'\]"),
        (["deep.hybrid_sources=[als, neumf, svd]"], r"deep\.hybrid_sources: unknown source\(s\) \['svd'\]"),
        (["candidates.sources=[als, svd]"], r"candidates\.sources: unknown source\(s\) \['svd'\]"),
        (["deep.epochs=0"], r"deep\.train\.epochs: must be >= 1"),
        (["deep.k=5"], r"deep\.train\.k: set from evaluation\.k"),
        (["deep.train.loss=bce"], r"deep\.train\.loss: set from deep\.losses"),
        (["deep.epochs=3", "deep.train.epochs=4"], r"deep: \['epochs'\] given both flat and under train"),
        (["featurize.split.test_ratio=1.5"], r"featurize\.split\.test_ratio must be in"),
        (["similarity.metric=euclid"], r"similarity\.metric: must be one of"),
        (["als.selection_metric=auc"], r"als\.selection_metric: unknown metric 'auc'"),
        (["ingest.preset=ml-25m"], r"ingest\.preset must be one of"),
        (["evaluation.k=0"], r"evaluation\.k: must be >= 1"),
    ],
)
def test_a_bad_setting_fails_at_load_naming_its_key(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, overrides)


@pytest.mark.parametrize(
    "section", ["deep:\n  mixed_precision: false\n", "deep:\n  train:\n    mixed_precision: false\n"]
)
def test_mixed_precision_is_set_from_yaml_flat_or_nested(tmp_path, section):
    path = tmp_path / "config.yaml"
    path.write_text(section + "evaluation:\n  k: 7\n")
    deep = load_config(path).deep
    assert deep.train.mixed_precision is False
    assert deep.mixed_precision is False  # the train fields read as attributes of the section
    two_tower = deep.settings_for("two_tower")
    assert (two_tower.mixed_precision, two_tower.k, two_tower.loss) == (False, 7, "bce")


def test_the_model_loss_and_the_cutoff_come_from_their_one_key():
    config = load_config(None, ["deep.losses={two_tower: in_batch_softmax}", "evaluation.k=20", "deep.epochs=3"])
    defaults = load_config(None).deep.train
    assert config.deep.settings_for("two_tower") == dataclasses.replace(defaults, epochs=3, k=20, loss="in_batch_softmax")
    assert config.deep.settings_for("neumf").loss == "bce"
    assert load_config(None).deep.train.k == load_config(None).evaluation.k == TrainSettings().k


def test_deep_directories_default_under_the_warehouse(tmp_path):
    config = load_config(None, [f"warehouse={tmp_path}", "deep.model_dir=/models"])
    assert config.deep_directory("export_dir") == f"{tmp_path}/_deep_export"
    assert config.deep_directory("petastorm_cache_dir") == f"{tmp_path}/_petastorm"
    assert config.deep_directory("model_dir") == "/models"


def test_model_params_match_the_model_constructors():
    from recspark.deep.models import MODEL_CLASSES

    for name, model_class in MODEL_CLASSES.items():
        params = set(inspect.signature(model_class).parameters) - {"num_users", "num_items", "item_features"}
        assert set(MODEL_PARAMS[name]) == params


def test_every_conf_file_loads():
    for path in sorted((PACKAGE.parent / "conf").glob("*.yaml")):
        assert load_config(path).candidates.sources
