"""Notebook 02: mining (anchor, positive, negative) triplets from purchases. ``settings``: the mining settings;
``mining``: the rule and its assembly, the triplets file; ``strategies``: one negative sampler per strategy;
``purchase_arrays``: the arrays the strategies share.
"""
