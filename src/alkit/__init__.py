"""alkit: pool-based active learning on images."""
from importlib.metadata import PackageNotFoundError, version

from alkit.api import demo, run, run_config
from alkit.data import Dataset, load_dataset
from alkit.errors import AlkitError

try:
    __version__ = version("alkit")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0"

__all__ = ["AlkitError", "Dataset", "__version__", "demo", "load_dataset", "run", "run_config"]
