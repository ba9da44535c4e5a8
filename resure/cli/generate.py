"""`resure generate` (placeholder registration until implemented)."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("generate", help="(not yet implemented)")
    p.set_defaults(func=lambda args: (_ for _ in ()).throw(SystemExit("not implemented")))
