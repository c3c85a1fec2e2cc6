"""Figures of every stage (matplotlib through ``figures.pyplot``): ``figures`` (set-up, data overview, training
curves), ``panels`` (image panels), ``embeddings`` (05), ``ranking`` (06). No stage imports ``plots``.
"""
