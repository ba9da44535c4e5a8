"""A small typed registry shared by weighting methods, suites, backends and judges.

Entries are registered by decorator (with optional aliases) or discovered lazily from a
``importlib.metadata`` entry-point group, so a third-party package can add a weighting
method by declaring::

    [project.entry-points."resure.weightings"]
    my_method = "my_package.module:MyMethod"

An unknown name raises :class:`KeyError` listing the known names and the closest match.
"""

from __future__ import annotations

import difflib
import inspect
import logging
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Generic, TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")


class UnknownNameError(KeyError):
    """Raised for a name that no entry of a registry carries."""

    def __str__(self) -> str:  # KeyError quotes its argument; keep the message readable
        return str(self.args[0])


class Registry(Generic[T]):
    """Maps names (and aliases) to subclasses of ``base``.

    Args:
        kind: what the entries are, used in error messages ("weighting method").
        base: every registered class must subclass it.
        entry_point_group: optional group scanned once, on first lookup.
    """

    def __init__(self, kind: str, base: type[T], entry_point_group: str | None = None):
        self.kind = kind
        self.base = base
        self.entry_point_group = entry_point_group
        self._entries: dict[str, type[T]] = {}
        self._aliases: dict[str, str] = {}
        self._scanned = entry_point_group is None

    def register(self, name: str, aliases: tuple[str, ...] = ()) -> Callable[[type[T]], type[T]]:
        """Class decorator registering ``name`` (and ``aliases``)."""

        def decorate(cls: type[T]) -> type[T]:
            self._add(name, cls, aliases)
            return cls

        return decorate

    def _add(self, name: str, cls: type[T], aliases: tuple[str, ...] = ()) -> None:
        if not (isinstance(cls, type) and issubclass(cls, self.base)):
            raise TypeError(f"{self.kind} {name!r}: {cls!r} is not a subclass of {self.base}")
        for key in (name, *aliases):
            known = self._entries.get(self._aliases.get(key, key))
            if known is not None and known is not cls:
                raise ValueError(f"{self.kind} name {key!r} is already registered by {known}")
        self._entries[name] = cls
        if getattr(cls, "name", None) in ("", None):
            cls.name = name
        for alias in aliases:
            self._aliases[alias] = name

    def _scan_entry_points(self) -> None:
        if self._scanned:
            return
        self._scanned = True
        for ep in entry_points(group=self.entry_point_group):
            if ep.name in self._entries:
                continue
            try:
                self._add(ep.name, ep.load())
            except Exception as e:  # a broken plug-in must not hide the built-in entries
                logger.warning("ignoring %s entry point %r: %s", self.kind, ep.name, e)

    def names(self) -> list[str]:
        """Registered names, sorted (aliases not included)."""
        self._scan_entry_points()
        return sorted(self._entries)

    def get(self, name: str) -> type[T]:
        """The class registered under ``name`` or an alias of it."""
        self._scan_entry_points()
        key = self._aliases.get(name, name)
        if key in self._entries:
            return self._entries[key]
        known = sorted([*self._entries, *self._aliases])
        raise UnknownNameError(
            f"unknown {self.kind} {name!r}{_suggestion(name, known)} "
            f"Known: {', '.join(self.names())}"
        )

    def check_options(self, name: str, options: dict) -> None:
        """Refuse options the constructor of ``name`` does not take, or required ones
        missing, with a ``ValueError`` naming them (checked without constructing)."""
        cls = self.get(name)
        params = dict(inspect.signature(cls.__init__).parameters)
        params.pop("self", None)
        takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
        named = {
            k: p for k, p in params.items() if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
        }
        unknown = [k for k in options if k not in named]
        if unknown and not takes_any:
            hint = _suggestion(unknown[0], list(named))
            raise ValueError(
                f"{self.kind} {name!r} has no option {unknown[0]!r}{hint} "
                f"Options: {', '.join(named) or 'none'}"
            )
        missing = [k for k, p in named.items() if p.default is p.empty and k not in options]
        if missing:
            raise ValueError(f"{self.kind} {name!r} needs option(s) {', '.join(missing)}")

    def create(self, name: str, **options) -> T:
        """Instantiate ``name`` after :meth:`check_options`."""
        self.check_options(name, options)
        return self.get(name)(**options)

    def __contains__(self, name: str) -> bool:
        self._scan_entry_points()
        return self._aliases.get(name, name) in self._entries


def _suggestion(name: str, known: list[str]) -> str:
    """``"; did you mean 'x'?"`` for the closest known name (case-insensitive), else ``"."``
    (either way the end of a sentence)."""
    lowered = {k.lower(): k for k in known}
    close = difflib.get_close_matches(name.lower(), list(lowered), n=1)
    return f"; did you mean {lowered[close[0]]!r}?" if close else "."
