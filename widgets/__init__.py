"""The JupyterLab editor of circuits: `Studio` (ipywidgets; no Node build needed)."""

from .studio import Studio

__all__ = ["Studio"]
