"""plait's store contract suite, run on a store from outside plait:

    python -m plait.testing.store_contract my_store.testing:make [--durable] [pytest options]

`my_store.testing:make` names the store's factory, called as `make(url, create=…,
read_only=…)` with a URL `contract-outside:///a/fresh/directory/` (the same URL again is the
same store). `--durable` says the store keeps what it wrote across opening it again (the
suite then checks that too). The rest goes to pytest (`-x`, `-k claim`, `-n 4` with xdist…).
The exit status is pytest's; 2 when the factory cannot be used, saying why.

From pytest itself: `pytest --pyargs plait.testing.contract
--plait-contract-store=my_store.testing:make [--plait-contract-durable]`.
The suite is the package `plait.testing.contract` (docs/stores.md).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

SUITE = Path(__file__).resolve().parent / "contract"
NO_AUTOLOAD = "PYTEST_DISABLE_PLUGIN_AUTOLOAD"
USAGE = "usage: python -m plait.testing.store_contract MODULE:FACTORY [--durable] [pytest options]"


def pytest_args(target: str, durable: bool, rest: Sequence[str]) -> list[str]:
    """The pytest command line that runs the suite on `target`'s store only."""
    # the options are the plugin's: named when pytest does not load installed plugins itself
    plugin = ["-p", "plait.testing.plugin"] if os.environ.get(NO_AUTOLOAD) else []
    return [
        str(SUITE),
        "-p",
        "no:cacheprovider",  # nothing written into the installed package
        *plugin,
        f"--plait-contract-store={target}",
        *(["--plait-contract-durable"] if durable else []),
        *rest,
    ]


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(__doc__.strip() if __doc__ else USAGE)
        return 0 if args else 2
    target, rest = args[0], args[1:]
    durable = "--durable" in rest
    rest = [a for a in rest if a != "--durable"]
    try:
        import pytest
    except ImportError:
        print("the store contract suite runs under pytest: pip install pytest", file=sys.stderr)
        return 2
    from .contract.backends import check_factory

    try:
        check_factory(target)
    except ValueError as bad:
        print(f"{bad}\n{USAGE}", file=sys.stderr)
        return 2
    return int(pytest.main(pytest_args(target, durable, rest)))


if __name__ == "__main__":
    sys.exit(main())
