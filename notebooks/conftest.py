"""The test suite runs every notebook top to bottom with small budgets (QLEARN_FAST=1)."""

import os

os.environ.setdefault("QLEARN_FAST", "1")
