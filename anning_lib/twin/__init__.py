"""The digital twin: the park's 3-D scene built from the park model (:mod:`.geometry`, :mod:`.scene`), its
colouring (:mod:`.colours`) and the energy-flow graph of carriers and nodes with its Sankey (:mod:`.flows`)."""
