"""hm_utils: the shared helpers of the hm-embeddings notebook series, one subpackage per stage.

Stages in pipeline order; a stage imports only ``core`` and the stages before it (``tests/test_package_layout.py``
checks it, imports inside functions included):

- ``core``: constants and paths (``config``), safe writing (``storage``), the hand-off files between notebooks
  (``workdir``), what a notebook records (``notebook_outputs``), metrics, intervals, prediction lists, cosine
  similarity, the in-memory embedding index
- ``synthetic``: the synthetic data set in the competition's layout
- ``data`` (notebook 01): reading the competition CSVs, compact parquet, photos, purchase history, statistics
- ``triplets`` (02): triplet mining and its strategies
- ``embeddings`` (03-05): what vectors see (retrieval, neighbours, health), on vectors alone
- ``model`` (03): the pretrained backbone, the siamese model, losses, the feature store, training, inference
- ``export`` (04): every article's embedding to a file; a catalogue's photos embedded and measured
- ``ranking`` (06): rankers, the learned ranker, rolling-week evaluation, the submission
- ``ensemble`` (07): merging prediction lists
- ``plots``: the figures of every stage
- ``runner``: the papermill runner (``python -m hm_utils.runner``), the HTML report, the Kaggle folder

``docs/DESIGN.md`` has the module map and the data flow. Subpackages are imported on demand, so ``import
hm_utils`` stays light; TensorFlow is loaded only by ``model`` and ``export`` and, lazily, by the functions of
``data.images`` that decode photos.
"""
__version__ = "0.1.0"
