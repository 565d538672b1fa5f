"""The `plait` command's foundation: the click group, the `runs` group, the options every
command shares, and how a user's mistake becomes one line on stderr. Command modules import
from here; `plait.cli` imports the command modules, which registers them. So that `plait --help`
stays cheap, they import at their top only click, this module, `loading`, `render` and light
rules from `core/`; the engine, workflow code, rich and asyncio are imported inside the commands
that need them (their types under TYPE_CHECKING), as here (tests/unit/test_startup.py).

The Engine's messages speak to API users: where one names a parameter or a method
(`force=True`, `new_run_id`, `engine.approve`), it is right for them and wrong on a command
line. So the command that calls it says it in its own words, naming flags and commands: it
checks first, or catches that one error where only it can arise and words it again. Every such
message has an acceptance test; the Engine's own stay pinned by the contract tests."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import click

from .._errors import (
    ConfigError,
    DefinitionError,
    InputError,
    RevisionConflict,
    RunConflict,
    RunNotFound,
    RunStateError,
    StateError,
    StateNotFound,
    StoreError,
    WorkflowNotFound,
)
from ..core.cron import CronError
from ..stores import DEFAULT_URL
from .loading import (
    CliError,
    read_json,
)

if TYPE_CHECKING:
    from ..engine.engine import Engine

P = ParamSpec("P")
R = TypeVar("R")

EXIT_FAILED = 1
EXIT_INTERRUPTED = 130

LOG_LEVELS = ("debug", "info", "warning", "error")


_USER_ERRORS = (
    ConfigError,
    CronError,
    InputError,
    DefinitionError,
    RunNotFound,
    WorkflowNotFound,
    RunConflict,
    RunStateError,
    RevisionConflict,
    StateNotFound,
    StateError,
    StoreError,
)


def user_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn plait errors a user causes (bad input, unknown run, unusable store) into CliError."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except _USER_ERRORS as exc:
            raise CliError(str(exc)) from None

    return wrapper


# -- shared options ------------------------------------------------------------------------------

db_option = click.option(
    "--db",
    "db",
    envvar="PLAIT_DB",
    default=DEFAULT_URL,
    show_default=True,
    metavar="URL",
    help="Store URL: sqlite:///relative.db, sqlite:////absolute.db, postgresql://user@host/db or "
    "memory:// (env PLAIT_DB).",
)


concurrency_option = click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    default=16,
    show_default=True,
    help="Steps run at once (handlers; a worker may hold more claimed, up to 256, while steps "
    "are short).",
)


def grace_option(help: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    return click.option(
        "--grace",
        type=click.FloatRange(min=0),
        default=10.0,
        show_default=True,
        metavar="SECONDS",
        help=help,
    )


def log_option(default: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    return click.option(
        "--log-level",
        type=click.Choice(LOG_LEVELS, case_sensitive=False),
        envvar="PLAIT_LOG_LEVEL",
        default=default,
        show_default=True,
        help="Log messages of this level and above on stderr (env PLAIT_LOG_LEVEL).",
    )


json_option = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")


def label_option(help: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    return click.option("--label", "label_texts", multiple=True, metavar="KEY=VALUE", help=help)


def parse_labels(texts: tuple[str, ...]) -> dict[str, str] | None:
    """--label KEY=VALUE options as labels (None: none); a bad one is a CliError naming it."""
    from ..core.identity import parse_label  # here: plait --help imports no more

    labels: dict[str, str] = {}
    for text in texts:
        try:
            key, value = parse_label(text)
        except InputError as exc:
            raise CliError(f"--label: {exc}") from None
        if key in labels:
            raise CliError(f"--label: label {key!r} is given twice")
        labels[key] = value
    return labels or None


def identity_options(fn: Callable[P, R]) -> Callable[P, R]:
    """--name, --label and --metadata: a started run's identity beside its id."""
    fn = click.option(
        "--metadata",
        "metadata_text",
        metavar="JSON",
        help="A JSON object kept with the run (at most 16 KiB), or @file.json.",
    )(fn)
    fn = label_option(
        "A label of the run (repeat for more): plait runs list --label filters by them."
    )(fn)
    return click.option("--name", metavar="TEXT", help="A human name for the run.")(fn)


def approval_policy_options(fn: Callable[P, R]) -> Callable[P, R]:
    """--approval-policy MODE, --allow NAME..., --block NAME...: a run's own approval policy,
    which replaces the workflow's for that run (`parse_approval_policy`)."""
    fn = click.option(
        "--block",
        "block_names",
        multiple=True,
        metavar="NAME",
        help="With --approval-policy: a step (a workflow file's: an action) that fails "
        "(action_blocked); repeat for more.",
    )(fn)
    fn = click.option(
        "--allow",
        "allow_names",
        multiple=True,
        metavar="NAME",
        help="With --approval-policy: a step (a workflow file's: an action) that runs without "
        "approval; repeat for more.",
    )(fn)
    return click.option(
        "--approval-policy",
        "policy_mode",
        type=click.Choice(["auto", "ask", "deny"]),
        help="The run's own approval policy, replacing the workflow's: auto (steps run), ask "
        "(each waits for plait runs approve), deny (each fails, action_denied), but those "
        "under --allow run and those under --block fail.",
    )(fn)


def parse_approval_policy(mode: str | None, allow: tuple[str, ...], block: tuple[str, ...]) -> Any:
    """The plait.ApprovalPolicy of --approval-policy, --allow and --block, or None."""
    if mode is None:
        if allow or block:
            given = "--allow" if allow else "--block"
            raise CliError(
                f"{given} names what a run's approval policy lets run or fails: give "
                "--approval-policy auto, ask or deny too"
            )
        return None
    for option, names in (("--allow", allow), ("--block", block)):
        for name in names:
            if not name.strip():
                raise CliError(f"{option} takes a step or action name, got {name!r}")
    from ..workflow.options import ApprovalPolicy  # here: plait --help imports no workflow code

    return ApprovalPolicy(mode, allow=allow, block=block)


if_exists_option = click.option(
    "--if-exists",
    type=click.Choice(["check", "return"]),
    default="check",
    show_default=True,
    help="A run id that exists: check (that run if its input is the same, else an error) or "
    "return (that run, whatever its input).",
)


def in_cli_words(message: str, id_option: str) -> str:
    """A RunConflict's message, its advice in the command line's words."""
    said = message.replace("choose another run id", f"choose another {id_option}")
    return said.replace("pass if_exists='return'", "pass --if-exists return")


def parse_metadata(text: str | None) -> dict[str, Any] | None:
    """--metadata: a JSON object, or @file.json."""
    if text is None:
        return None
    value = read_json(text, "--metadata")
    if not isinstance(value, dict):
        raise CliError('--metadata must be a JSON object such as \'{"ticket": "T-1"}\'')
    return value


def open_engine(db: str, **options: Any) -> Engine:
    from ..engine.engine import Engine

    return Engine(db, **options)


def existing_engine(db: str, *, writes: bool = False) -> Engine:
    """An engine on a store that must already exist: reading and operator commands never create
    a database or a schema (the store refuses one that does not exist when it opens). Unless
    the command `writes`, the store is opened read-only: a backup copy can be read."""
    from ..engine.engine import Engine

    return Engine(db, create=False, read_only=not writes)


# -- commands ------------------------------------------------------------------------------------


class PlaitGroup(click.Group):
    """click's group, but a usage mistake (an unknown option or command, a bad or missing value)
    is one line in the style of every other error, `plait: error: …`, still with exit code 2,
    instead of click's usage block and `Error: …`."""

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.UsageError as exc:
            raise usage_error(exc) from None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)  # parses the subcommand's arguments, then runs it
        except click.UsageError as exc:
            raise usage_error(exc) from None


def usage_error(exc: click.UsageError) -> click.ClickException:
    """click's message as a CliError, in our words' shape: click's "Invalid value for '--limit':
    0 is not in the range 1<=x<=10000." becomes "invalid value for '--limit': 0 is not in the
    range 1<=x<=10000; see plait runs list --help"."""
    if isinstance(exc, click.exceptions.NoArgsIsHelpError):
        return exc  # `plait` or `plait runs` alone: the help, as click prints it
    text = " ".join(exc.format_message().split()).rstrip(".")
    if text[:1].isupper() and text[1:2].islower():
        text = text[0].lower() + text[1:]
    where = exc.ctx.command_path if exc.ctx is not None else "plait"
    return CliError(f"{text}; see {where} --help")


@click.group(
    cls=PlaitGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(package_name="plait", prog_name="plait")
def cli() -> None:
    """plait: a durable DAG workflow engine."""


@cli.group()
def runs() -> None:
    """Read runs (list, show, events, diff, waiting) and act on them (cancel, pause, resume,
    retry, approve, reject, signal, fork)."""


by_option = click.option(
    "--by", metavar="WHO", help="Who acts, for the run's log (default: user@host)."
)
