"""Built-in checks. Each module registers its checks with `@check` (see registry.py)."""

from .registry import CHECKS, CheckSpec, Param, all_checks, get_check

__all__ = ["CHECKS", "CheckSpec", "Param", "all_checks", "get_check"]
