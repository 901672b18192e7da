"""Runs an Argo CD health check the way Argo CD runs it, in a real Lua 5.1 interpreter.

Argo CD evaluates `resource.customizations.health.*` scripts in gopher-lua, a Lua 5.1, with the
resource as the global `obj` and only the base and table libraries loaded (no string, math, io or
os library, and no methods on strings). It reads back a table with `status` and `message`, and
turns a status outside its list into Unknown. This sandbox reproduces that with lupa's Lua 5.1
runtime, so a script that would fail or misbehave in Argo CD fails here too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lupa.lua51 import LuaRuntime, lua_type  # type: ignore[import-untyped]

# The health statuses Argo CD accepts from a Lua script (gitops-engine's health.HealthStatusCode).
ARGO_HEALTH_STATUSES = frozenset(
    {"Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown"}
)

# What the chunk sees: Lua 5.1's base library (as gopher-lua's OpenBase has it), `table`, `obj`.
_SANDBOX = """
local base = {
  "assert", "error", "getmetatable", "ipairs", "next", "pairs", "pcall", "rawequal", "rawget",
  "rawset", "select", "setmetatable", "tonumber", "tostring", "type", "unpack", "xpcall",
}
local tableLibrary = {}
for name, value in pairs(table) do
  tableLibrary[name] = value
end

local function environment(resource)
  local env = {_VERSION = _VERSION, table = tableLibrary, obj = resource}
  for _, name in ipairs(base) do
    env[name] = _G[name]
  end
  env._G = env
  return env
end

local loadstring, setfenv, error = loadstring, setfenv, error
-- Without gopher-lua's string library strings have no metatable: ("x"):upper() must fail here.
debug.setmetatable("", nil)

return function(source, resource)
  local chunk, problem = loadstring(source, "=health.lua")
  if chunk == nil then
    error(problem, 0)
  end
  setfenv(chunk, environment(resource))
  return chunk()
end
"""


@dataclass(frozen=True)
class Health:
    status: str
    message: str | None


class ArgoHealthCheck:
    """One health script, run against resources given as the API server's JSON (dicts)."""

    def __init__(self, script: str) -> None:
        self._script = script
        self._lua = LuaRuntime(register_eval=False, register_builtins=False)
        self._run = self._lua.execute(_SANDBOX)

    def assess(self, resource: Mapping[str, Any]) -> Health:
        result = self._run(self._script, self._lua.table_from(dict(resource), recursive=True))
        if lua_type(result) != "table":
            raise AssertionError(f"the health script returned {result!r}, not a table")
        fields = dict(result.items())
        unexpected = set(fields) - {"status", "message"}
        assert not unexpected, f"fields Argo CD ignores: {sorted(unexpected)}"
        status = fields.get("status")
        assert status in ARGO_HEALTH_STATUSES, f"Argo CD would report Unknown for {status!r}"
        message = fields.get("message")
        assert message is None or isinstance(message, str)
        return Health(status=str(status), message=message)
