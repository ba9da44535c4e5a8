import sys

from resure.cli import main

sys.exit(main())
