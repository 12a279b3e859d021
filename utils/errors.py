"""The CLI boundary: errors a user can fix, reported as one ``error: ...`` line, no traceback.

Library modules raise their own error types in their own words (DataError, CheckpointError,
LatencyError, DivergenceError are UserErrors; models' SpaceError and GenotypeError are ValueErrors,
because models/ imports nothing from utils/).  The entry scripts translate where a flag-level hint
helps, and ``run_cli`` prints whatever reaches it as one line.
"""
import sys

from models.space import SpaceError


class UserError(Exception):
    pass


# everything the CLI reports as one line
USER_ERRORS = (UserError, SpaceError)


def run_cli(main, parser) -> None:
    """Parse the command line, run ``main(args)``; report a UserError or SpaceError as one line, exit 2."""
    args = parser.parse_args()
    try:
        main(args)
    except USER_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
