"""The engine registry: the one list of engine ids in Stagecraft.

Built-in engines are declared when `stagecraft.engines` is imported and their modules load on
the first lookup of their id; third-party engines declare an entry point in the
`stagecraft.engines` group and are loaded on the first lookup too, so that importing the library
stays cheap and a broken plugin only fails the lookups that need it.
"""

from __future__ import annotations

import importlib

from .base import Engine
from .errors import DuplicateEngine, EngineLoadError, UnknownEngine

ENTRY_POINT_GROUP = "stagecraft.engines"

_engines: dict[str, type[Engine]] = {}
# Built-in engines declared by `stagecraft.engines` and imported on first lookup: id -> the
# "module.Class" that will register itself. Importing all four engines costs a quarter of the
# no-op plan's start-up budget, and a run needs one of them.
_declared: dict[str, str] = {}
_entry_points_loaded = False


def _origin(engine_class: type[Engine]) -> str:
    return f"{engine_class.__module__}.{engine_class.__qualname__}"


def register(engine_class: type[Engine]) -> type[Engine]:
    """Add an engine class; usable as a class decorator. A second class with the same id raises."""
    engine_id = getattr(engine_class, "id", None)
    if not isinstance(engine_id, str) or not engine_id:
        raise TypeError(f"{_origin(engine_class)} has no non-empty string `id` class attribute")
    existing = _engines.get(engine_id)
    if existing is not None and existing is not engine_class:
        raise DuplicateEngine(engine_id, _origin(existing), _origin(engine_class))
    declared = _declared.get(engine_id)
    if declared is not None and declared != _origin(engine_class):
        raise DuplicateEngine(engine_id, declared, _origin(engine_class))
    _engines[engine_id] = engine_class
    return engine_class


def declare_builtin(engine_id: str, origin: str) -> None:
    """Reserve an id for a built-in engine class ("package.module.Class"), imported on lookup."""
    registered = _engines.get(engine_id)
    previous = _declared.get(engine_id) or (_origin(registered) if registered else None)
    if previous is not None and previous != origin:
        raise DuplicateEngine(engine_id, previous, origin)
    _declared[engine_id] = origin


def _load_declared(engine_id: str) -> None:
    origin = _declared.get(engine_id)
    if origin is not None and engine_id not in _engines:
        importlib.import_module(origin.rpartition(".")[0])  # the module registers its class


def unregister(engine_id: str) -> None:
    """Remove an engine (for tests and plugins that replace themselves)."""
    _engines.pop(engine_id, None)


def _load_entry_points() -> None:
    global _entry_points_loaded  # noqa: PLW0603 - loaded once per process, by design
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    from importlib.metadata import entry_points

    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        try:
            loaded = entry_point.load()
        except Exception as error:  # a plugin can fail in any way; name it and go on failing
            raise EngineLoadError(
                f"cannot load migration engine {entry_point.name!r} from entry point "
                f"{entry_point.value!r}: {error}; reinstall or remove the package that declares it"
            ) from error
        if isinstance(loaded, type):
            if getattr(loaded, "id", None) != entry_point.name:
                raise EngineLoadError(
                    f"entry point {entry_point.name!r} ({entry_point.value}) loads an engine whose "
                    f"id is {getattr(loaded, 'id', None)!r}; the entry point name must equal the id"
                )
            register(loaded)


def reload_entry_points() -> None:
    """Forget that entry points were loaded, so the next lookup reads them again."""
    global _entry_points_loaded  # noqa: PLW0603
    _entry_points_loaded = False


def ids() -> list[str]:
    """Registered engine ids, sorted."""
    _load_entry_points()
    return sorted({*_engines, *_declared})


def get_class(engine_id: str) -> type[Engine]:
    _load_declared(engine_id)
    if engine_id not in _engines:
        _load_entry_points()
    try:
        return _engines[engine_id]
    except KeyError:
        raise UnknownEngine(engine_id, ids()) from None


def get(engine_id: str) -> Engine:
    """A fresh instance of the engine with this id; UnknownEngine lists the registered ids."""
    return get_class(engine_id)()
