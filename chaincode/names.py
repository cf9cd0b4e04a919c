"""The names every part of fedledger uses for the deployed contract (one place, cheap to import)."""

#: The chaincode name the contract is deployed under.
CONTRACT_NAME = "fedledger"
#: The channel it runs on unless a network profile says otherwise.
DEFAULT_CHANNEL = "mychannel"
