"""Model discovery: bundled plugin folders, user plugin folders and installed entry points.

Discovery reads manifests only (``plugin.toml`` or an entry point's manifest dict); a model's
code is imported the first time it is used, so listing twenty models costs milliseconds and
none of torch. Every failure (bad TOML, missing package, import error, load error) becomes an
entry whose status reads ``"failed to load: <reason>"``; discovery itself never raises and
never downloads anything.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.metadata
import importlib.util
import logging
import os
import re
import sys
import threading
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medviewer.ai.api import CheckpointRule, Dimensionality, ModelInfo, PromptKind, SegmentationModel
from medviewer.ai.checkpoints import resolve_checkpoint
from medviewer.ai.errors import CheckpointError, PluginError

log = logging.getLogger(__name__)

MANIFEST_NAME = "plugin.toml"
ENTRY_POINT_GROUP = "medviewer.models"
BUNDLED_PLUGINS_ENV = "MEDVIEWER_BUNDLED_PLUGINS"
USER_PLUGINS_ENV = "MEDVIEWER_PLUGIN_PATH"
_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
_ENTRY_PATTERN = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
_PACKAGE_PREFIX = "medviewer_plugin_"

SOURCE_BUNDLED = "bundled"
SOURCE_USER = "user"
SOURCE_ENTRY_POINT = "entry point"
SOURCE_REGISTERED = "registered"


# -- locations -------------------------------------------------------------------------------
#: Name under which a wheel installs the top-level ``plugins/`` folder (see pyproject.toml).
INSTALLED_PLUGINS_PACKAGE = "medviewer_bundled_plugins"


def bundled_plugins_dir() -> Path:
    """Where the plugins shipped with medviewer live.

    In order: ``$MEDVIEWER_BUNDLED_PLUGINS`` (packagers who install the folder elsewhere);
    ``plugins/`` inside a PyInstaller bundle (``sys._MEIPASS``); ``<repo>/plugins`` next to
    the package (source tree, editable install); the ``medviewer_bundled_plugins`` folder
    a regular wheel install puts into site-packages.
    """
    override = os.environ.get(BUNDLED_PLUGINS_ENV, "").strip()
    if override:
        return Path(override).expanduser()
    frozen_root = getattr(sys, "_MEIPASS", None)
    if getattr(sys, "frozen", False) and frozen_root:
        return Path(frozen_root) / "plugins"
    import medviewer

    beside_package = Path(medviewer.__file__).resolve().parents[1] / "plugins"
    if beside_package.is_dir():
        return beside_package
    try:
        spec = importlib.util.find_spec(INSTALLED_PLUGINS_PACKAGE)
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.submodule_search_locations:
        return Path(list(spec.submodule_search_locations)[0])
    return beside_package


def user_config_dir() -> Path:
    """The platform's per-user configuration folder for medviewer."""
    if sys.platform.startswith("win"):
        base = os.environ.get("APPDATA") or str(Path.home() / "AppData" / "Roaming")
        return Path(base) / "medviewer"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "medviewer"
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "medviewer"


def user_plugin_dirs() -> list[Path]:
    """``$MEDVIEWER_PLUGIN_PATH`` (os.pathsep-separated) if set, else ``<config>/plugins``."""
    value = os.environ.get(USER_PLUGINS_ENV)
    if value is not None:
        return [Path(part).expanduser() for part in value.split(os.pathsep) if part.strip()]
    return [user_config_dir() / "plugins"]


# -- manifests -------------------------------------------------------------------------------
def _string(data: Mapping[str, Any], key: str, default: str | None = None) -> str:
    value = data.get(key, default)
    if value is None:
        raise PluginError(f"the manifest has no {key!r}")
    if not isinstance(value, str):
        raise PluginError(f"{key!r} must be text, got {type(value).__name__}")
    return value.strip()


def _string_list(value: Any, key: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise PluginError(f"{key!r} must be a list of text values")
    return list(value)


def _prompt_kinds(value: Any, key: str) -> list[PromptKind]:
    kinds = []
    for name in _string_list(value, key):
        try:
            kinds.append(PromptKind(name.strip().lower()))
        except ValueError:
            known = ", ".join(k.value for k in PromptKind)
            raise PluginError(f"unknown prompt kind {name!r} in {key!r} (known: {known})") from None
    return kinds


def _checkpoint_rule(value: Any) -> CheckpointRule:
    if value in (None, False, "none"):
        return CheckpointRule("none")
    if not isinstance(value, Mapping):
        raise PluginError("'checkpoint' must be a table such as { package_asset = 'pkg:path' } or { user_file = true }")
    sha256 = str(value.get("sha256", ""))
    try:
        if "package_asset" in value:
            return CheckpointRule("package_asset", str(value["package_asset"]), sha256)
        if "file" in value:
            return CheckpointRule("file", str(value["file"]), sha256)
        if value.get("user_file"):
            return CheckpointRule("user_file", "", sha256, str(value.get("filename", "")))
    except ValueError as exc:
        raise PluginError(f"bad checkpoint rule: {exc}") from exc
    if value.get("none") or not value:
        return CheckpointRule("none")
    raise PluginError(f"unknown checkpoint rule {dict(value)!r}")


def _requirements(value: Any) -> dict[str, str]:
    """``requires`` lists importable modules, or maps module -> pip distribution name."""
    if value is None:
        return {}
    if isinstance(value, Mapping):
        return {str(k): str(v) for k, v in value.items()}
    return {name: name for name in _string_list(value, "requires")}


def info_from_manifest(data: Mapping[str, Any]) -> tuple[ModelInfo, str, dict[str, str]]:
    """Validate a manifest; returns (metadata, entry "module:Class", required modules -> pip name)."""
    if not isinstance(data, Mapping):
        raise PluginError(f"a manifest must be a table/dict, got {type(data).__name__}")
    model_id = _string(data, "id")
    if not _ID_PATTERN.match(model_id):
        raise PluginError(f"invalid model id {model_id!r} (letters, digits, '_', '.', '-')")
    entry = _string(data, "entry")
    if not _ENTRY_PATTERN.match(entry):
        raise PluginError(f"'entry' must look like 'module:Class', got {entry!r}")
    dims_raw = _string_list(data.get("dims", "2d"), "dims")
    try:
        dims = frozenset(Dimensionality(d.strip().lower()) for d in dims_raw)
    except ValueError:
        raise PluginError(f"'dims' must be '2d' and/or '3d', got {dims_raw}") from None
    input_size = data.get("input_size")
    if input_size is not None:
        if not isinstance(input_size, (list, tuple)) or not all(isinstance(v, int) for v in input_size):
            raise PluginError("'input_size' must be a list of whole numbers")
        input_size = tuple(input_size)
    requires = _requirements(data.get("requires"))
    concurrent = data.get("decode_while_encoding", False)
    if not isinstance(concurrent, bool):
        raise PluginError("'decode_while_encoding' must be true or false")
    info = ModelInfo(
        id=model_id,
        name=_string(data, "name", model_id),
        version=_string(data, "version", ""),
        license=_string(data, "license", ""),
        citation=_string(data, "citation", ""),
        description=_string(data, "description", ""),
        prompts=frozenset(_prompt_kinds(data.get("prompts"), "prompts")),
        recommended_prompts=tuple(_prompt_kinds(data.get("recommended_prompts"), "recommended_prompts")),
        dims=dims,
        input_size=input_size,
        checkpoint=_checkpoint_rule(data.get("checkpoint")),
        notes=_string(data, "notes", ""),
        requires=tuple(requires),
        decode_while_encoding=concurrent,
    )
    return info, entry, requires


def _missing_requirements(requires: Mapping[str, str]) -> list[str]:
    """Top-level modules that are not installed, checked without importing them."""
    missing = []
    for module, distribution in requires.items():
        top = module.split(".")[0]
        try:
            found = importlib.util.find_spec(top) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(module if distribution == module else f"{module} (pip install {distribution})")
    return missing


# -- entries ---------------------------------------------------------------------------------
@dataclass
class ModelEntry:
    """One discovered model, usable or not. ``status`` is what the model list shows."""

    key: str
    info: ModelInfo | None
    source: str
    location: str
    entry: str = ""
    folder: Path | None = None
    error: str | None = None
    loaded: bool = False
    model_class: type[SegmentationModel] | None = field(default=None, repr=False)

    @property
    def id(self) -> str:
        return self.info.id if self.info is not None else self.key

    @property
    def name(self) -> str:
        return self.info.name if self.info is not None else self.key

    @property
    def available(self) -> bool:
        return self.error is None and self.info is not None

    @property
    def status(self) -> str:
        if self.error is not None:
            return f"failed to load: {self.error}"
        if self.loaded:
            return "loaded"
        if self.info is not None and self.info.checkpoint.kind == "user_file":
            return "available (choose a checkpoint file)"
        return "available"

    @property
    def is_imported(self) -> bool:
        return self.model_class is not None


def _reason(exc: BaseException) -> str:
    """A one-line reason for a status text."""
    if isinstance(exc, (PluginError, CheckpointError)):
        return str(exc)
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class ModelRegistry:
    """All models the app knows, keyed by id. Safe to use from the GUI and the AI worker.

    ``bundled_dir=None`` uses :func:`bundled_plugins_dir`, ``user_dirs=None`` uses
    :func:`user_plugin_dirs`; pass ``[]`` to disable either. ``entry_points=None`` reads the
    installed ``medviewer.models`` group; pass a list (tests) or ``[]`` to disable it.
    """

    def __init__(
        self,
        bundled_dir: Path | str | None = None,
        user_dirs: Sequence[Path | str] | None = None,
        entry_points: Iterable[Any] | None = None,
        discover: bool = True,
    ):
        self._bundled_dirs = [Path(bundled_dir)] if bundled_dir is not None else None
        self._user_dirs = [Path(p) for p in user_dirs] if user_dirs is not None else None
        self._entry_points = list(entry_points) if entry_points is not None else None
        self._entries: dict[str, ModelEntry] = {}
        self._registered: list[ModelEntry] = []
        self._lock = threading.RLock()
        if discover:
            self.discover()

    # -- discovery ---------------------------------------------------------------------------
    def discover(self) -> list[ModelEntry]:
        """(Re)scan every source. Classes registered in code are kept."""
        found: list[ModelEntry] = []
        bundled = self._bundled_dirs if self._bundled_dirs is not None else [bundled_plugins_dir()]
        users = self._user_dirs if self._user_dirs is not None else user_plugin_dirs()
        for folder in bundled:
            found += self._scan_plugins_dir(folder, SOURCE_BUNDLED)
        for folder in users:
            found += self._scan_plugins_dir(folder, SOURCE_USER)
        found += self._scan_entry_points()
        with self._lock:
            previous, self._entries = self._entries, {}
            for entry in [*self._registered, *found]:
                self._add(entry)
            for key, entry in self._entries.items():  # a rescan must not hide what the engine loaded
                old = previous.get(key)
                if old is not None and old.location == entry.location and entry.error is None:
                    entry.loaded = old.loaded
            return list(self._entries.values())

    def _add(self, entry: ModelEntry) -> None:
        existing = self._entries.get(entry.key)
        if existing is not None:
            duplicate = ModelEntry(
                key=f"{entry.key} ({entry.location})",
                info=entry.info,
                source=entry.source,
                location=entry.location,
                entry=entry.entry,
                folder=entry.folder,
                error=f"duplicate model id {entry.key!r}, already provided by {existing.location}",
            )
            log.warning("%s", duplicate.status)
            self._entries[duplicate.key] = duplicate
            return
        self._entries[entry.key] = entry

    def _scan_plugins_dir(self, root: Path, source: str) -> list[ModelEntry]:
        root = Path(root).expanduser()
        if (root / MANIFEST_NAME).is_file():
            return [self._entry_from_folder(root, source)]
        try:
            children = sorted(p for p in root.iterdir() if p.is_dir())
        except OSError:
            return []  # a missing user folder is normal
        return [self._entry_from_folder(child, source) for child in children if (child / MANIFEST_NAME).is_file()]

    def _entry_from_folder(self, folder: Path, source: str) -> ModelEntry:
        manifest_path = folder / MANIFEST_NAME
        try:
            with manifest_path.open("rb") as handle:
                data = tomllib.load(handle)
            info, entry, requires = info_from_manifest(data)
        except (OSError, tomllib.TOMLDecodeError, PluginError) as exc:
            reason = f"bad manifest {manifest_path}: {exc}"
            log.warning("plugin in %s: %s", folder, reason)
            return ModelEntry(key=folder.name, info=None, source=source, location=str(folder), error=reason)
        return self._checked(
            ModelEntry(key=info.id, info=info, source=source, location=str(folder), entry=entry, folder=folder),
            requires,
        )

    def _checked(self, entry: ModelEntry, requires: Mapping[str, str]) -> ModelEntry:
        """Mark an entry failed when its packages or bundled weights are absent (no imports)."""
        missing = _missing_requirements(requires)
        if missing:
            entry.error = "needs the Python package(s) " + ", ".join(missing) + ", not installed"
            return entry
        info = entry.info
        if info is not None and info.checkpoint.kind in ("package_asset", "file"):
            try:
                resolve_checkpoint(info.checkpoint, entry.folder)
            except CheckpointError as exc:
                entry.error = f"checkpoint: {exc}"
        return entry

    def _scan_entry_points(self) -> list[ModelEntry]:
        if self._entry_points is not None:
            points = self._entry_points
        else:
            try:
                points = list(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))
            except Exception as exc:  # noqa: BLE001 - broken metadata must not stop the app
                log.warning("could not read %s entry points: %s", ENTRY_POINT_GROUP, exc)
                return []
        return [self._entry_from_entry_point(point) for point in points]

    def _entry_from_entry_point(self, point: Any) -> ModelEntry:
        name = str(getattr(point, "name", point))
        location = f"entry point {name} = {getattr(point, 'value', '?')}"
        try:
            obj = point.load()
        except Exception as exc:  # noqa: BLE001 - a third-party import error is just a status
            return ModelEntry(key=name, info=None, source=SOURCE_ENTRY_POINT, location=location, error=_reason(exc))
        try:
            if isinstance(obj, Mapping):
                info, entry, requires = info_from_manifest(obj)
                result = ModelEntry(key=info.id, info=info, source=SOURCE_ENTRY_POINT, location=location, entry=entry)
                return self._checked(result, requires)
            if isinstance(obj, type) and issubclass(obj, SegmentationModel):
                if not isinstance(obj.info, ModelInfo):
                    raise PluginError(f"{obj.__name__} has no class attribute 'info' (a ModelInfo)")
                return ModelEntry(
                    key=obj.info.id,
                    info=obj.info,
                    source=SOURCE_ENTRY_POINT,
                    location=location,
                    entry=f"{obj.__module__}:{obj.__qualname__}",
                    model_class=obj,
                )
            raise PluginError(
                f"the entry point gives a {type(obj).__name__}, not a manifest dict or a SegmentationModel subclass"
            )
        except Exception as exc:  # noqa: BLE001
            return ModelEntry(key=name, info=None, source=SOURCE_ENTRY_POINT, location=location, error=_reason(exc))

    # -- programmatic registration -----------------------------------------------------------
    def register(self, model_class: type[SegmentationModel], info: ModelInfo | None = None) -> ModelEntry:
        """Add a model class from code (tests, embedding applications)."""
        info = info or model_class.info
        if info is None:
            raise PluginError(f"{model_class.__name__} needs a ModelInfo")
        entry = ModelEntry(
            key=info.id,
            info=info,
            source=SOURCE_REGISTERED,
            location=f"{model_class.__module__}.{model_class.__qualname__}",
            entry=f"{model_class.__module__}:{model_class.__qualname__}",
            model_class=model_class,
        )
        with self._lock:
            self._registered = [e for e in self._registered if e.key != entry.key] + [entry]
            self._entries.pop(entry.key, None)
            self._add(entry)
        return entry

    # -- queries -----------------------------------------------------------------------------
    def entries(self) -> list[ModelEntry]:
        with self._lock:
            return list(self._entries.values())

    def available(self) -> list[ModelEntry]:
        return [e for e in self.entries() if e.available]

    def failed(self) -> list[ModelEntry]:
        return [e for e in self.entries() if not e.available]

    def __contains__(self, model_id: str) -> bool:
        with self._lock:
            return model_id in self._entries

    def get(self, model_id: str) -> ModelEntry:
        with self._lock:
            entry = self._entries.get(model_id)
        if entry is None:
            known = ", ".join(sorted(self._entries)) or "none"
            raise PluginError(f"no model {model_id!r} is installed (known: {known})")
        return entry

    def mark_failed(self, model_id: str, reason: str) -> None:
        with self._lock:
            entry = self._entries.get(model_id)
            if entry is not None:
                entry.error = reason
                entry.loaded = False

    def mark_loaded(self, model_id: str, loaded: bool = True) -> None:
        with self._lock:
            entry = self._entries.get(model_id)
            if entry is not None:
                entry.loaded = loaded

    # -- lazy import -------------------------------------------------------------------------
    def model_class(self, model_id: str) -> type[SegmentationModel]:
        """Import the model's code now (first use); failures are recorded on the entry."""
        entry = self.get(model_id)
        if entry.error is not None:
            raise PluginError(f"{entry.name}: failed to load: {entry.error}")
        if entry.model_class is not None:
            return entry.model_class
        try:
            cls = self._import_entry(entry)
        except Exception as exc:  # noqa: BLE001 - any import failure becomes a status
            reason = _reason(exc)
            self.mark_failed(model_id, reason)
            raise PluginError(f"{entry.name}: failed to load: {reason}") from exc
        with self._lock:
            entry.model_class = cls
        return cls

    def create(self, model_id: str) -> SegmentationModel:
        """A fresh, not yet loaded instance of the model, carrying its manifest metadata."""
        cls = self.model_class(model_id)
        entry = self.get(model_id)
        try:
            model = cls(entry.info)
        except Exception as exc:  # noqa: BLE001
            reason = _reason(exc)
            self.mark_failed(model_id, reason)
            raise PluginError(f"{entry.name}: failed to load: {reason}") from exc
        model.plugin_folder = entry.folder  # type: ignore[attr-defined]
        return model

    def resolve_checkpoint(self, model_id: str, user_choice: str | Path | None = None) -> Path | None:
        entry = self.get(model_id)
        if entry.info is None:
            raise PluginError(f"{model_id}: failed to load: {entry.error}")
        return resolve_checkpoint(entry.info.checkpoint, entry.folder, user_choice)

    @staticmethod
    def _import_entry(entry: ModelEntry) -> type[SegmentationModel]:
        module_name, _, attribute = entry.entry.partition(":")
        if entry.folder is not None:
            module = _import_from_folder(entry.key, entry.folder, module_name)
        else:
            module = importlib.import_module(module_name)
        obj: Any = module
        for part in attribute.split("."):
            if not hasattr(obj, part):
                raise PluginError(f"{module_name} has no {attribute!r} (entry = {entry.entry!r})")
            obj = getattr(obj, part)
        if not (isinstance(obj, type) and issubclass(obj, SegmentationModel)):
            raise PluginError(f"{entry.entry} is not a SegmentationModel subclass")
        return obj


def plugin_package_name(model_id: str) -> str:
    """The synthetic package a folder plugin is imported under (unique per model id)."""
    return _PACKAGE_PREFIX + re.sub(r"\W", "_", model_id)


def _import_from_folder(model_id: str, folder: Path, module_name: str):
    """Import ``folder/<module_name>.py`` as a submodule of a synthetic package.

    A package (rather than a bare file import) lets a plugin split its code over several
    files and use relative imports, without putting its folder on ``sys.path`` where its
    module names could shadow someone else's.
    """
    package_name = plugin_package_name(model_id)
    package = sys.modules.get(package_name)
    if package is None or list(getattr(package, "__path__", [])) != [str(folder)]:
        for name in [m for m in sys.modules if m.startswith(package_name + ".")]:
            del sys.modules[name]  # same id, another folder: never reuse the old code
        spec = importlib.machinery.ModuleSpec(package_name, None, is_package=True)
        spec.submodule_search_locations = [str(folder)]
        package = importlib.util.module_from_spec(spec)
        sys.modules[package_name] = package
    return importlib.import_module(f"{package_name}.{module_name}")
