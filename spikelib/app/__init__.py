"""The application layer, the only one that may import every other: run configurations (TOML), the
main job, the SNN-vs-ANN study, reports and the command line.
"""
