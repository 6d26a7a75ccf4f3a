"""Pipeline stages: one module per stage, each a pure core function and a thin Beam wrapper."""
