"""A synthetic data set in the competition's layout (catalogue, customers, transactions, drawn photos),
calibrated to the real data's published statistics; ``generate.ensure_synthetic`` makes it once per profile and seed.
"""
