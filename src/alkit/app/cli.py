"""``alkit label``: the labeling app's command line."""
from __future__ import annotations

import argparse


def add_label_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Placeholder until the labeling app lands: registers nothing."""
