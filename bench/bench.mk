# One target per study of issue 5; each prints its table, writes bench/results/<study>.csv/.json/.png and
# renders docs/bench-<study>.md. QUICK=1 runs the short version of a study into bench/quick/.
BENCH_FLAGS := $(if $(QUICK),--quick,)
# Short runs write to bench/quick/ (results and page), never over the documented full run.
BENCH_ENV := $(if $(QUICK),FEDLEDGER_BENCH_OUT=bench/quick,)
BENCH_STUDIES := robustness privacy-utility latency scalability overhead trust aggregate-check shares

.PHONY: bench-commit $(addprefix bench-,$(BENCH_STUDIES)) bench-all
bench-commit: $(STAMP)
	$(BENCH_ENV) $(PY) -m fedledger.bench.commit_latency $(BENCH_FLAGS)

bench-robustness: $(STAMP)
	$(BENCH_ENV) $(PY) -m fedledger.bench.robustness $(BENCH_FLAGS)

# Issue 13: the robustness grid's fedledger cells in plaintext and secret-shared sketch mode (not in bench-all).
.PHONY: bench-robustness-shared
bench-robustness-shared: $(STAMP)
	$(BENCH_ENV) $(PY) -m fedledger.bench.robustness.shared_mode $(BENCH_FLAGS)

bench-privacy-utility: $(STAMP)
	$(BENCH_ENV) $(PY) -m fedledger.bench.privacy_utility $(BENCH_FLAGS)

bench-latency: $(STAMP)
	$(BENCH_ENV) $(PY) -m fedledger.bench.aggregation_latency $(BENCH_FLAGS)

bench-scalability: $(STAMP) fabric-bin
	$(BENCH_ENV) $(PY) -m fedledger.bench.scalability $(BENCH_FLAGS)

bench-overhead: $(STAMP) fabric-bin
	$(BENCH_ENV) $(PY) -m fedledger.bench.overhead $(BENCH_FLAGS)

bench-trust: $(STAMP)
	$(BENCH_ENV) $(PY) -m fedledger.bench.trust $(BENCH_FLAGS)

bench-aggregate-check: $(STAMP) fabric-bin
	$(BENCH_ENV) $(PY) -m fedledger.bench.aggregate_check $(BENCH_FLAGS)

bench-shares: $(STAMP)
	$(BENCH_ENV) $(PY) -m fedledger.bench.shares $(BENCH_FLAGS)

bench-all: bench-commit $(addprefix bench-,$(BENCH_STUDIES))
