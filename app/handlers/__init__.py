"""Node handlers. Importing this package registers the built-in ones.

Third-party packages add theirs through the entry-point group `stepwise.handlers`
(each entry point names a module, imported for its @handler functions); a
deployment can also list modules in HANDLER_MODULES.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from importlib.metadata import entry_points

from app.handlers import basic, data, flow, http, llm, peer_a, peers  # noqa: F401  (registers by import)
from app.handlers.registry import Handler, HandlerError, NodeContext, handler, registry

__all__ = ["Handler", "HandlerError", "NodeContext", "handler", "load_extensions", "load_modules", "registry"]

ENTRY_POINT_GROUP = "stepwise.handlers"


def load_modules(names: Iterable[str]) -> None:
    """Import the named modules so their @handler functions register (HANDLER_MODULES)."""
    for name in names:
        if name.strip():
            importlib.import_module(name.strip())


def load_extensions(module_names: Iterable[str] = ()) -> None:
    """Register the handlers of installed packages (entry points) and of HANDLER_MODULES.

    The API and the workers must load the same ones: the API validates
    definitions against the handlers it knows, the workers run them. A plugin
    that fails to load stops the process: running without a handler would only
    fail later, node by node.
    """
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        entry_point.load()
    load_modules(module_names)
