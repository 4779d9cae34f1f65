"""`fabula report`: diversity metrics for folders of stories, side by side."""

from fabula.reporting.metrics import measure

__all__ = ["measure"]
