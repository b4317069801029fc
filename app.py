"""`python app.py [--host H] [--port P] [--models PATH]` does the same as `studio serve ...`."""

import sys

from studio.cli import main

if __name__ == "__main__":
    sys.exit(main(["serve", *sys.argv[1:]]))
