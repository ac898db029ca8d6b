"""Entry script of the PyInstaller bundles: the same ``main`` as the ``medviewer`` command."""

import multiprocessing
import sys

from medviewer.cli import main

if __name__ == "__main__":
    multiprocessing.freeze_support()  # a frozen child process must not start the app again
    sys.exit(main())
