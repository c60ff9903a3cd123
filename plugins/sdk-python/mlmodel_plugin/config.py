"""Typed access to a step's plugin config, with errors that name the offending key: the same
getters, rules and messages as the Rust SDK's ``Config`` (plugins/sdk/src/config.rs)."""

from __future__ import annotations

from typing import Any, Dict, List, Optional

_I64_MIN, _I64_MAX = -(2**63), 2**63 - 1


class ConfigError(ValueError):
    """A config value of the wrong type; its message names the key and what it must be."""


def _wrong(key: str, want: str) -> ConfigError:
    return ConfigError(f"plugin config key `{key}` must be {want}")


class Config:
    """``spec.plugins.config.<step>`` of the model: a JSON object (``{}`` when unset)."""

    def __init__(self, raw: Optional[Dict[str, Any]] = None) -> None:
        self.raw: Dict[str, Any] = {} if raw is None else raw

    def _get(self, key: str) -> Any:
        # None (JSON null) counts as unset.
        return self.raw.get(key)

    def str(self, key: str) -> Optional[str]:
        """A non-empty string, or ``None`` when unset."""
        v = self._get(key)
        if v is None:
            return None
        if isinstance(v, str) and v != "":
            return v
        raise _wrong(key, "a non-empty string")

    def int(self, key: str, default: int) -> int:
        """An integer, or ``default`` when unset (``true`` and ``3.0`` are not integers)."""
        v = self._get(key)
        if v is None:
            return default
        if isinstance(v, int) and not isinstance(v, bool) and _I64_MIN <= v <= _I64_MAX:
            return v
        raise _wrong(key, "an integer")

    def bool(self, key: str, default: bool) -> bool:
        """A boolean, or ``default`` when unset."""
        v = self._get(key)
        if v is None:
            return default
        if isinstance(v, bool):
            return v
        raise _wrong(key, "true or false")

    def string_map(self, key: str) -> Dict[str, str]:
        """A map of strings (labels, annotations, node selector), empty when unset; sorted by
        key as the Rust SDK's ``BTreeMap``."""
        v = self._get(key)
        if v is None:
            return {}
        if isinstance(v, dict) and all(isinstance(s, str) for s in v.values()):
            return {k: v[k] for k in sorted(v)}
        raise _wrong(key, "a map of strings")

    def string_list(self, key: str) -> List[str]:
        """A list of strings, empty when unset."""
        v = self._get(key)
        if v is None:
            return []
        if isinstance(v, list) and all(isinstance(s, str) for s in v):
            return list(v)
        raise _wrong(key, "a list of strings")

    def object_list(self, key: str) -> List[Dict[str, Any]]:
        """A list of objects (container ports, env entries), passed through, empty when unset."""
        v = self._get(key)
        if v is None:
            return []
        if isinstance(v, list) and all(isinstance(o, dict) for o in v):
            return list(v)
        raise _wrong(key, "a list of objects")

    def value(self, key: str) -> Any:
        """Any JSON value, as given; ``None`` when unset or null."""
        return self._get(key)
