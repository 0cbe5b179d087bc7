"""Sources of samples: one ``SampleSource`` interface (``base``) and one connector per origin —
a simulation (``simulated``), an MCAP recording (``recorded``) and a live ZeroMQ feed (``live``).

Every consumer that reads samples (score, explain, the GUI's benchmark, the benchmarks) takes a
``SampleSource``. A source yields wire messages unchanged; it never decodes policy (gaps,
duplicates, resets are the engine's) and never runs a model.
"""

from streamer.sources.base import SampleSource, SourceError, SourcePosition

__all__ = ["SampleSource", "SourceError", "SourcePosition"]
