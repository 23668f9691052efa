"""How this machine runs the model: choices of speed that change no result beyond rounding.

The paper's modules (`aiayn.nn`) take these at named seams; see `aiayn.nn.seams`.
"""
