"""Federated LoRA fine-tuning with DP-SGD: the ML core, independent of the ledger.

Modules (import them directly; this package imports nothing, so verifiers do not pull in torch):

- ``models``: offline model loading (``load_model``, ``tiny_model``, ``minilm_path``), LoRA (``apply_lora``),
  adapter state get/set/save under peft's names.
- ``data``: breast-cancer text table, CSV/JSONL loaders, train/held-out split, IID and Dirichlet partitions.
- ``privacy``: ``PrivacyConfig`` / ``PrivacyConfigError`` and ``make_private`` around Opacus' PrivacyEngine.
- ``client``: ``LocalTrainer.train_round(global_state, data) -> RoundResult`` (delta + metadata).
- ``serialization``: safetensors bytes and manifests (numpy only).
- ``aggregate`` / ``strategy``: FedAvg, FedAdam (numpy only).
- ``evaluate``: accuracy, precision, recall, F1; perplexity.
- ``attacks``: malicious-client modes for experiments (off by default).
- ``simulation``: an in-memory federation for tests and experiments.
"""
