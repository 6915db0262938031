#!/usr/bin/env python
"""The example project's command-line utility."""

import os
import sys
from pathlib import Path

if __name__ == "__main__":
    # Run from a clone without installing: the package lives one folder up.
    sys.path.insert(1, str(Path(__file__).resolve().parent.parent))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
