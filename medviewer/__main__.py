"""Allow ``python -m medviewer``."""

from medviewer.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
