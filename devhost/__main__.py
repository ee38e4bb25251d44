import sys

from devhost.cli import main

if __name__ == "__main__":  # activity workers are spawned and import this module again
    sys.exit(main())
