import sys

from qlearn.cli import main

sys.exit(main())
