"""Running the series: ``series`` (the papermill runner, ``python -m hm_utils.runner``), ``console`` (what the
console shows of a running kernel), ``report`` (the HTML report), ``notebooks`` (strip and check notebooks),
``kaggle`` (the Kaggle upload folder).
"""
