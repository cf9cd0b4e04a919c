"""fedledger: federated LoRA fine-tuning with every contribution validated and recorded on a ledger."""

import logging

__version__ = "0.1.0"

# A library never configures logging for its user; this only silences "no handler" warnings.
logging.getLogger(__name__).addHandler(logging.NullHandler())
