"""fabula: diverse corpora of short fiction, written by language models.

Everything the command line does is here too (see ``fabula.api``)::

    import fabula

    corpus = fabula.Corpus("corpus")
    corpus.write(10, seed=1)                      # or backend=fabula.Server(base_url=..., model=...)
    for story in corpus:
        print(story.title, story.card.hero.full)
    fabula.report("corpus")                       # the figures of `fabula report --json`
"""

from fabula.api import Corpus, EmbeddedModel, FakeModel, RayCluster, Server, Story, report  # noqa: E402
from fabula.errors import BackendError, FabulaError, MissingDependency, PackError, StoreError, UsageError  # noqa: E402
from fabula.packs import Pack, load_pack  # noqa: E402
from fabula.plan import Planner  # noqa: E402
from fabula.records import Card, Character, Draft, Verdict  # noqa: E402
from fabula.version import __version__  # noqa: E402

__all__ = [
    "BackendError",
    "Card",
    "Character",
    "Corpus",
    "Draft",
    "EmbeddedModel",
    "FabulaError",
    "FakeModel",
    "MissingDependency",
    "Pack",
    "PackError",
    "Planner",
    "RayCluster",
    "Server",
    "StoreError",
    "Story",
    "UsageError",
    "Verdict",
    "load_pack",
    "report",
    "__version__",
]
