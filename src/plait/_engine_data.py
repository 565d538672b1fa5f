"""Engine methods of the data plane (DESIGN §3.5): records (documents steps write), and the
operator's tools over stored data.

`DataMethods` is a mixin of `Engine`; each method is async and its blocking twin is derived by
`_portal.blocking`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._documents import Records

if TYPE_CHECKING:
    from ._portal import Portal
    from .stores import Store


class DataMethods:
    """Records, for `Engine` (which provides the rest)."""

    if TYPE_CHECKING:
        _portal: Portal
        store: Store

        async def _ready(self) -> Store: ...

    def records(self, collection: str) -> Records:
        """The documents of a collection (created by its first write): get, put with
        `expected_revision`, delete, list by key prefix. InputError for an invalid name."""
        return Records(self.store, self._portal, self._ready, collection)
