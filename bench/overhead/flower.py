"""The ``flower`` mode: the same federation through flwr's own legacy ``Server`` loop, without Ray or gRPC.

:class:`InProcessProxy` hands each instruction straight to the member's ``Client``; everything else
(``Server.fit`` → configure_fit → fit_clients → ``FedAvg.aggregate_fit`` → central evaluation) is Flower's.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from flwr.client import Client, NumPyClient
from flwr.common import DisconnectRes, ndarrays_to_parameters, parameters_to_ndarrays
from flwr.server import Server, SimpleClientManager
from flwr.server.client_proxy import ClientProxy
from flwr.server.strategy import FedAvg

from fedledger.bench.ml import breast_cancer
from fedledger.bench.overhead.measure import Clock, Run, Setup, load_model, train_config


class InProcessProxy(ClientProxy):
    """A Flower ClientProxy that hands each instruction straight to the client object (no Ray, no gRPC)."""

    def __init__(self, cid: str, client: Client) -> None:
        super().__init__(cid)
        self.client = client

    def get_properties(self, ins: Any, timeout: float | None, group_id: int | None) -> Any:
        return self.client.get_properties(ins)

    def get_parameters(self, ins: Any, timeout: float | None, group_id: int | None) -> Any:
        return self.client.get_parameters(ins)

    def fit(self, ins: Any, timeout: float | None, group_id: int | None) -> Any:
        return self.client.fit(ins)

    def evaluate(self, ins: Any, timeout: float | None, group_id: int | None) -> Any:
        return self.client.evaluate(ins)

    def reconnect(self, ins: Any, timeout: float | None, group_id: int | None) -> Any:
        return DisconnectRes(reason="")


def run_flower(setup: Setup, repeat: int) -> Run:
    """The federation as a Flower FedAvg run of the same model, data, partition and trainer seeds."""
    from fedledger.tensors import to_numpy
    from fedledger.trainer.data import partition_dirichlet, to_tensor_dataset, train_test_split
    from fedledger.trainer.evaluate import evaluate
    from fedledger.trainer.local_trainer import LocalTrainer
    from fedledger.trainer.models import get_adapter_state, set_adapter_state

    model, tokenizer = load_model(setup)
    train = train_config(setup)
    clock = Clock()
    dataset = breast_cancer()
    train_set, test_set = train_test_split(dataset, test_fraction=setup.test_fraction, seed=setup.seed)
    parts = partition_dirichlet(train_set.labels, setup.members, alpha=setup.alpha, seed=setup.seed)
    test_tensors = to_tensor_dataset(test_set, tokenizer, max_length=train.max_length)
    names = sorted(to_numpy(get_adapter_state(model)))

    class Member(NumPyClient):
        def __init__(self, index: int, part: np.ndarray) -> None:
            from dataclasses import replace

            self.trainer = LocalTrainer(model, train=replace(train, seed=train.seed + 1000 * index))
            self.data = to_tensor_dataset(train_set.subset(part), tokenizer, max_length=train.max_length)

        def fit(self, parameters: list[np.ndarray], config: dict[str, Any]) -> tuple[list[np.ndarray], int, dict]:
            state = dict(zip(names, parameters, strict=True))
            result = self.trainer.train_round(state, self.data, round_id=int(config["server_round"]))
            delta = to_numpy(result.delta)
            return [state[k] + delta[k] for k in names], result.num_samples, {}

    def central_evaluation(server_round: int, parameters: list[np.ndarray], _config: dict) -> tuple[float, dict]:
        set_adapter_state(model, dict(zip(names, parameters, strict=True)))
        metrics = evaluate(model, test_tensors, num_labels=dataset.num_labels, device=train.device)
        history.append({k: float(v) for k, v in metrics.items()})
        return float(metrics.get("loss", 0.0)), {k: float(v) for k, v in metrics.items()}

    history: list[dict[str, float]] = []
    initial = to_numpy(get_adapter_state(model))
    strategy = FedAvg(
        fraction_fit=1.0,
        fraction_evaluate=0.0,
        min_fit_clients=setup.members,
        min_available_clients=setup.members,
        evaluate_fn=central_evaluation,
        on_fit_config_fn=lambda server_round: {"server_round": server_round},
        initial_parameters=ndarrays_to_parameters([initial[k] for k in names]),
    )
    manager = SimpleClientManager()
    for i, part in enumerate(parts):
        manager.register(InProcessProxy(str(i), Member(i, part).to_client()))
    server = Server(client_manager=manager, strategy=strategy)
    server.set_max_workers(1)  # the members share one model object in this process, as in the other modes
    server.fit(num_rounds=setup.rounds, timeout=None)
    seconds, cpu = clock.stop()
    final = history[-1]
    state = dict(zip(names, parameters_to_ndarrays(server.parameters), strict=True))
    accepted = setup.members * setup.rounds
    return Run("flower", repeat, seconds, final["accuracy"], final["f1"], accepted, {}, state, None, cpu)
