"""Plots used by the course notebooks.

Every function draws on an ``ax`` it is given (or creates one) and returns the figure,
so a notebook can compose plots and a test can inspect what was drawn. Nothing here
calls ``plt.show()``.
"""
