# Native Fabric network targets (included by the root Makefile). Each runs one script in network/.
.PHONY: fabric-bin network-up network-down network-status add-org chaincode-reload

# The chaincode servers and network tools need the `fabric` extra in the project venv.
FABRIC_STAMP := $(VENV)/.fedledger-fabric-installed
$(FABRIC_STAMP): pyproject.toml setup.py
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet -e '.[fabric]'
	@touch $@

fabric-bin:
	@network/fabric-bin.sh

network-up: fabric-bin $(FABRIC_STAMP)
	@network/network-up.sh

network-down:
	@network/network-down.sh

network-status:
	@network/network-status.sh

add-org: network-up
	@network/add-org.sh

chaincode-reload:
	@network/chaincode-reload.sh
