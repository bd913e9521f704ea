import sys

from pillbox.cli import main

sys.exit(main())
