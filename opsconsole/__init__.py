"""opsconsole: a terminal console for GPU boxes.

Layers (arrows point down only; see docs/ARCHITECTURE in the README):
tui/, cli/ (presentation) -> telemetry/, kb/, playbooks/, runs/ (core) -> jobs/ (child
processes, the only code that imports torch & co.).
"""

__version__ = "0.1.0"
