"""UserError: bad input that the entry scripts report as one line (``error: ...``), no traceback."""
import sys


class UserError(Exception):
    pass


def run_cli(main, parser) -> None:
    """Parse the command line, run ``main(args)``; report a UserError as one line and exit 2."""
    args = parser.parse_args()
    try:
        main(args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
