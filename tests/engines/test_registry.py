"""The engine registry: built-ins at import, strict duplicates, entry points, helpful lookups."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest

from stagecraft.engines import registry
from stagecraft.engines.errors import DuplicateEngine, EngineLoadError, UnknownEngine
from stagecraft.engines.raw import RawEngine


def test_built_in_engines_are_registered_on_import() -> None:
    assert "raw" in registry.ids()
    assert registry.get_class("raw") is RawEngine


def test_an_unknown_id_lists_the_registered_ids() -> None:
    with pytest.raises(UnknownEngine) as raised:
        registry.get("flyway")
    message = str(raised.value)
    assert "unknown migration engine 'flyway'" in message
    for engine_id in registry.ids():
        assert engine_id in message


def test_registering_an_id_twice_raises_naming_both_classes() -> None:
    class Impostor:
        id: ClassVar[str] = "raw"

    with pytest.raises(DuplicateEngine, match=r"registered twice: by stagecraft\.engines\.raw"):
        registry.register(Impostor)  # type: ignore[arg-type]


def test_an_engine_without_an_id_is_refused() -> None:
    class Nameless:
        pass

    with pytest.raises(TypeError, match="no non-empty string `id`"):
        registry.register(Nameless)  # type: ignore[arg-type]


def _install_plugin(site: Path, name: str, module_source: str, entry_point: str) -> None:
    """A real installed distribution: a module and a .dist-info with an entry point."""
    (site / f"{name}.py").write_text(textwrap.dedent(module_source))
    info = site / f"{name}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[stagecraft.engines]\n{entry_point}\n")


@pytest.fixture
def plugin_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.syspath_prepend(str(tmp_path))
    registry.reload_entry_points()
    yield tmp_path
    registry.unregister("demo")
    registry.reload_entry_points()


def test_third_party_engines_join_through_entry_points_on_first_lookup(plugin_site: Path) -> None:
    _install_plugin(
        plugin_site,
        "stagecraft_demo_plugin",
        """
        from typing import ClassVar

        class DemoEngine:
            id: ClassVar[str] = "demo"
        """,
        "demo = stagecraft_demo_plugin:DemoEngine",
    )
    engine = registry.get("demo")
    assert type(engine).__name__ == "DemoEngine"
    assert "demo" in registry.ids()


def test_a_broken_entry_point_names_itself(plugin_site: Path) -> None:
    _install_plugin(
        plugin_site,
        "stagecraft_broken_plugin",
        "raise RuntimeError('boom')\n",
        "broken = stagecraft_broken_plugin:Engine",
    )
    with pytest.raises(EngineLoadError, match=r"cannot load migration engine 'broken'.*boom"):
        registry.get("anything")


def test_an_entry_point_name_must_match_the_engine_id(plugin_site: Path) -> None:
    _install_plugin(
        plugin_site,
        "stagecraft_misnamed_plugin",
        """
        class Engine:
            id = "other"
        """,
        "misnamed = stagecraft_misnamed_plugin:Engine",
    )
    with pytest.raises(EngineLoadError, match="must equal the id"):
        registry.ids()


def test_built_in_engine_modules_load_only_when_their_id_is_looked_up() -> None:
    import subprocess
    import sys

    probe = (
        "import sys, stagecraft.engines as engines\n"
        "loaded = lambda: sorted(m for m in sys.modules if m.rsplit('.', 1)[-1] in "
        "('raw', 'drizzle', 'prisma', 'knex'))\n"
        "print(loaded()); engines.get('prisma'); print(loaded()); print(engines.ids())\n"
    )
    lines = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert lines[0] == "[]"
    assert lines[1] == "['stagecraft.engines.prisma']"
    assert lines[2] == "['drizzle', 'knex', 'prisma', 'raw']"


def test_a_class_claiming_a_declared_built_in_id_is_a_duplicate() -> None:
    class FakeKnex:
        id: ClassVar[str] = "knex"

    with pytest.raises(DuplicateEngine, match=r"stagecraft\.engines\.knex\.KnexEngine"):
        registry.register(FakeKnex)  # type: ignore[arg-type]
