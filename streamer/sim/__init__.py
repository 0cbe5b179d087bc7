"""Simulation: the radar physics (``simulator``: pure numpy, explicit RNG, reproducible however it
is read), simulated sensors on the wire (``publisher``) and labelled training sets (``datasets``).

Never opens a file or a socket in the physics; never imports torch.
"""
