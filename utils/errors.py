"""The CLI boundary: errors a user can fix, reported as one ``error: ...`` line, no traceback.

Library modules raise their own error types in their own words (DataError, CheckpointError,
LatencyError, DivergenceError, WriteError are UserErrors; models' SpaceError and GenotypeError are
ValueErrors, because models/ imports nothing from utils/).  The entry scripts translate where a
flag-level hint helps, and ``run_cli`` prints whatever reaches it as one line.
"""
import sys

from models.common import SpaceError
from models.nb201.table import TableError


class UserError(Exception):
    """``exit_code``: the status the command exits with; ``prefix``: what its line starts with (a run
    stopped by a signal says "interrupted (SIGTERM) ...", not "error: ..."); an empty message prints
    no line (a torchrun process other than rank 0, whose rank 0 prints it)."""

    exit_code = 2
    prefix = "error: "


# everything the CLI reports as one line
USER_ERRORS = (UserError, SpaceError, TableError)


def run_cli(main, parser) -> None:
    """Parse the command line, run ``main(args)``; report a UserError or SpaceError as one line, exit 2
    (or the error's exit_code).  Ctrl-C where no run is there to stop at a step boundary (loading data,
    exporting, a second Ctrl-C) prints one line too, and exits 130 as the shell's convention has it."""
    args = parser.parse_args()
    try:
        main(args)
    except USER_ERRORS as e:
        if str(e):
            print(f"{getattr(e, 'prefix', UserError.prefix)}{e}", file=sys.stderr)
        sys.exit(getattr(e, "exit_code", UserError.exit_code))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
