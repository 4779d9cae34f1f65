"""fabula: diverse corpora of short fiction, written by language models.

The public API is small; the CLI (``fabula --help``) is the main way in.
"""

from fabula.errors import BackendError, FabulaError, MissingDependency, PackError, StoreError, UsageError
from fabula.packs import Pack, load_pack
from fabula.plan import Planner
from fabula.records import Card, Character, Draft, Verdict

__version__ = "0.1.0"

__all__ = [
    "BackendError", "Card", "Character", "Draft", "FabulaError", "MissingDependency", "Pack",
    "PackError", "Planner", "StoreError", "UsageError", "Verdict", "load_pack", "__version__",
]
