"""Federated LoRA fine-tuning with DP-SGD: the members, the aggregator and the round driver.

Modules (import them directly; this package imports nothing, so verifiers do not pull in torch):

- ``models``: offline model loading (``load_model``, ``tiny_model``, ``minilm_path``), LoRA (``apply_lora``),
  adapter state get/set/save under peft's names.
- ``data``: breast-cancer text table, CSV/JSONL loaders, train/held-out split, IID and Dirichlet partitions.
- ``privacy``: ``PrivacyConfig`` / ``PrivacyConfigError`` and ``make_private`` around Opacus' PrivacyEngine.
- ``local_trainer``: ``LocalTrainer.train_round(global_state, data) -> RoundResult`` (delta + metadata).
- ``member``: ``Member``, one consortium member's process over the ledger and the update store.
- ``rounds``: ``RoundDriver``, the one round loop, with its hooks and strategy checkpoints.
- ``aggregator``: ``Aggregator``, the contract-backed ledger of the round driver.
- ``aggregate`` / ``strategy``: FedAvg, FedAdam (numpy only).
- ``evaluate``: accuracy, precision, recall, F1; perplexity.
- ``audit`` / ``provenance``: re-verifying a run against the ledger; the model card.

The wire format is the shared codec :mod:`fedledger.tensors`; attacks, baselines and simulations live in
:mod:`fedledger.experiments`.
"""
