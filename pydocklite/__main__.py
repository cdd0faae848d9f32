import sys

from pydocklite.cli.main import main

sys.exit(main())
