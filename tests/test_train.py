"""The training harness end to end on tiny configs (Flax's train_test, with teeth)."""

from __future__ import annotations

import json
from pathlib import Path

import autoencoder
import jax
import jax.numpy as jnp
import models
import numpy as np
import pytest
import report
import settings
import train
from data import Dataset

import nagmom

TINY = {
    "data": {"dataset": "curves", "num_train": 1000, "num_test": 200},
    "model": {"name": "tiny"},
    "optimizer": {"name": "nag", "learning_rate": 0.005, "mu_max": 0.99, "final_steps": 20},
    "run": {"steps": 120, "batch_size": 50, "log_every": 40, "eval_batch_size": 500},
}


def _config(**overrides):
    return settings.from_dict(TINY, overrides)


@pytest.mark.parametrize("optimizer", ["nag", "cm", "sgd"])
def test_training_run_writes_outputs_and_error_falls(tmp_path, optimizer):
    config = _config(**{"optimizer.name": optimizer, "run.steps": 100})  # 40 + 40 + 20
    summary = train.train_and_evaluate(config, tmp_path, progress=False)
    rows = report.read_metrics(tmp_path / "metrics.jsonl")
    assert [row["step"] for row in rows] == [0, 40, 80, 100]
    for row in rows:
        assert {"step", "train_error", "test_error", "momentum", "learning_rate", "seconds"} <= set(
            row
        )
    assert rows[-1]["train_error"] < 0.5 * rows[0]["train_error"]
    assert summary["train_error"] == rows[-1]["train_error"]
    assert summary["initial_train_error"] == rows[0]["train_error"]
    saved = json.loads((tmp_path / "summary.json").read_text())
    for key in ("dataset", "optimizer", "mu_max", "learning_rate", "steps", "initial_train_error",
                "train_error", "seconds", "steps_per_second"):  # fmt: skip
        assert key in saved
    assert saved["steps"] == 100 and saved["optimizer"] == optimizer
    assert (tmp_path / "training_curve.png").stat().st_size > 1000
    assert json.loads((tmp_path / "config.json").read_text())["config"]["run"]["steps"] == 100


def test_logged_momentum_follows_schedule(tmp_path):
    train.train_and_evaluate(_config(), tmp_path, progress=False)
    rows = report.read_metrics(tmp_path / "metrics.jsonl")
    # mu_t = 0.5 until the first stage ends at 250 (> 120 steps); the last 20 steps stay at 0.5.
    assert [row["momentum"] for row in rows] == [0.5, 0.5, 0.5, 0.5]
    tx, momentum = train.make_optimizer(_config().optimizer, total_steps=1000)
    np.testing.assert_allclose([momentum(t) for t in (0, 250, 979, 980)], [0.5, 0.75, 0.875, 0.875])


def test_error_is_measured_at_theta_not_at_the_lookahead_point(tmp_path):
    config = _config()
    dataset = Dataset(*[np.random.default_rng(0).random((n, 784), np.float32) for n in (200, 50)])
    import tasks

    task = tasks.autoencoder(config, dataset)
    kwargs = {"task": task, "config": config, "total_steps": 100}
    state = train.init_state(task, config, 100, train.hyperparameters(config.optimizer), seed=0)
    state = jax.jit(lambda s: train.train_chunk(s, task.data, length=30, **kwargs)[0])(state)
    theta = nagmom.nesterov_eval_params(state.params, state.opt_state)
    expected = task.evaluate(theta, task.data)["train_error"]
    at_theta = task.evaluate(train.eval_params(state, "nag"), task.data)["train_error"]
    at_phi = task.evaluate(state.params, task.data)["train_error"]
    assert float(at_theta) == float(expected)
    assert float(at_theta) != float(at_phi)


def test_scan_chunks_equal_single_steps():
    config = _config()
    dataset = Dataset(*[np.random.default_rng(1).random((n, 784), np.float32) for n in (300, 50)])
    import tasks

    task = tasks.autoencoder(config, dataset)
    kwargs = {"task": task, "config": config, "total_steps": 100}
    state = train.init_state(task, config, 100, train.hyperparameters(config.optimizer), seed=3)
    scanned, _ = jax.jit(lambda s: train.train_chunk(s, task.data, length=7, **kwargs))(state)
    plan, _ = train.batch_plan(state, task.data, task, 7)
    step = jax.jit(lambda s, p: train.train_step(s, task.data, p, **kwargs)[0])
    for t in range(7):
        state = step(state, jax.tree.map(lambda x, t=t: x[t], plan))
    assert int(scanned.step) == int(state.step) == 7
    for a, b in zip(jax.tree.leaves(scanned.params), jax.tree.leaves(state.params), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_divergence_stops_with_the_step_and_keeps_metrics(tmp_path):
    config = _config(**{"optimizer.learning_rate": 1e30, "optimizer.name": "cm"})
    with pytest.raises(train.TrainingDivergedError, match="between steps 0 and 40"):
        train.train_and_evaluate(config, tmp_path, progress=False)
    rows = report.read_metrics(tmp_path / "metrics.jsonl")
    assert rows[0]["step"] == 0 and rows[-1]["train_loss"] in ("nan", "inf", "-inf")


def test_model_parameter_counts():
    def count(name):
        model = models.AUTOENCODERS[name](output_size=784)
        params = jax.eval_shape(
            model.init, jax.random.key(0), jax.ShapeDtypeStruct((1, 784), "float32")
        )
        return sum(np.prod(p.shape) for p in jax.tree.leaves(params))

    encoder = [(784, 400), (400, 200), (200, 100), (100, 50), (50, 25), (25, 6)]
    curves = sum(i * o + o for i, o in encoder) + sum(o * i + i for i, o in encoder)
    assert count("curves") == curves == 842_340
    encoder = [(784, 1000), (1000, 500), (500, 250), (250, 30)]
    mnist = sum(i * o + o for i, o in encoder) + sum(o * i + i for i, o in encoder)
    assert count("mnist") == mnist == 2_837_314


def test_sparse_init_on_every_layer():
    model = models.CurvesAutoencoder()
    params = model.init(jax.random.key(0), np.zeros((1, 784), np.float32))["params"]
    for layer in params.values():
        kernel = np.asarray(layer["kernel"])
        assert np.all((kernel != 0).sum(axis=0) == min(15, kernel.shape[0]))
        np.testing.assert_array_equal(layer["bias"], 0.0)


@pytest.mark.parametrize(
    "change, match",
    [
        ({"run": {"steps": -5}}, "run.steps must be a finite number >= 1"),
        ({"run": {"steps": "many"}}, "run.steps must be int"),
        ({"run": {"stepz": 5}}, "unknown key run.stepz; allowed: steps"),
        ({"optimizer": {"name": "adam"}}, "optimizer.name must be one of nag, cm, sgd"),
        ({"optimizer": {"mu_max": 1.5}}, r"optimizer.mu_max must lie in \[0, 1\]"),
        ({"extra": {}}, r"unknown table \[extra\]"),
        ({"data": {"dataset": "cifar"}}, "data.dataset must be one of curves, mnist"),
    ],
)
def test_config_errors_name_the_key(change, match):
    raw = {table: {**values, **change.get(table, {})} for table, values in TINY.items()}
    raw.update({k: v for k, v in change.items() if k not in TINY})
    with pytest.raises(settings.ConfigError, match=match):
        settings.from_dict(raw)


def test_batch_larger_than_data_is_a_config_error(tmp_path):
    config = _config(**{"run.batch_size": 5000})
    with pytest.raises(settings.ConfigError, match=r"run.batch_size \(5000\) is larger"):
        train.train_and_evaluate(config, tmp_path, progress=False)


def test_entry_script_prints_one_line_errors(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[data]\ndataset = "curves"\n[model]\nname = "tiny"\n[run]\nsteps = 10\n'
        '[optimizer]\nname = "nag"\nlearning_rate = 0.1\nmomentum = 3\n'
    )
    assert autoencoder.main(["--config", str(bad), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "unknown key optimizer.momentum" in err
    assert len(err.splitlines()) == 1
    assert autoencoder.main(["--config", str(tmp_path / "missing.toml")]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert autoencoder.main(["--config", str(tmp_path)]) == 1
    assert "is a directory" in capsys.readouterr().err
    assert autoencoder.main(["--steps", "-3", "--out", str(tmp_path / "o")]) == 1
    assert "error: command line: run.steps must be" in capsys.readouterr().err
    (tmp_path / "afile").write_text("")
    assert autoencoder.main(["--steps", "3", "--out", str(tmp_path / "afile")]) == 1
    assert "is a file, not a directory" in capsys.readouterr().err


def test_shipped_configs_parse():
    import cli

    paths = sorted((cli.REPO / "configs").glob("*.toml"))
    assert len(paths) >= 4
    for path in paths:
        kind = settings.Config
        if path.name.startswith("rnn_"):
            kind = settings.RnnConfig
        elif path.name.startswith("table1_"):
            kind = settings.TableConfig
        settings.load(path, kind=kind)


RNN_TINY = {
    "data": {"task": "addition", "length": 10, "num_test": 200},
    "model": {"hidden_size": 16, "input_scale": 0.1},
    "optimizer": {"name": "nag", "learning_rate": 0.01, "schedule": "rnn", "mu_0": 0.95,
                  "warmup_steps": 100},
    "run": {"steps": 400, "batch_size": 50, "log_every": 200},
}  # fmt: skip


def test_rnn_run_shares_the_loop_and_loss_falls(tmp_path):
    config = settings.from_dict(RNN_TINY, kind=settings.RnnConfig)
    summary = train.train_and_evaluate(config, tmp_path, progress=False)
    rows = report.read_metrics(tmp_path / "metrics.jsonl")
    assert [row["step"] for row in rows] == [0, 200, 400]
    np.testing.assert_allclose([row["momentum"] for row in rows], [0.9, 0.95, 0.95], rtol=1e-7)
    assert rows[-1]["loss"] < 0.5 * rows[0]["loss"]
    for key in ("task", "optimizer", "mu_0", "learning_rate", "steps", "loss", "zero_one_error"):
        assert key in summary
    assert summary["task"] == "addition" and summary["mu_0"] == 0.95
    assert 0.0 <= summary["zero_one_error"] <= 1.0
    assert (tmp_path / "training_curve.png").exists()


def test_rnn_output_bias_is_the_mean_target():
    import tasks

    config = settings.from_dict(RNN_TINY, kind=settings.RnnConfig)
    task = tasks.sequence(config)
    params = task.init_params(jax.random.key(0))
    # Addition of two U(0, 1) values: mean target 1.
    np.testing.assert_allclose(params["Dense_0"]["bias"], [1.0], atol=0.02)
    memorization = settings.from_dict(
        {**RNN_TINY, "data": {"task": "memorization5", "length": 25}}, kind=settings.RnnConfig
    )
    params = tasks.sequence(memorization).init_params(jax.random.key(0))
    # Blank 20 of 25 steps, each bit value 2.5 of 25: the log frequencies.
    expected = np.log([2.5 / 25, 2.5 / 25, 20 / 25])
    np.testing.assert_allclose(params["Dense_0"]["bias"], expected, atol=0.02)


def test_rnn_entry_script_rejects_autoencoder_keys(tmp_path, capsys):
    import rnn

    bad = tmp_path / "bad.toml"
    bad.write_text('[data]\ntask = "addition"\nlength = 80\ndataset = "mnist"\n[run]\nsteps = 5\n'
                   '[optimizer]\nname = "nag"\nlearning_rate = 0.1\n')  # fmt: skip
    assert rnn.main(["--config", str(bad), "--out", str(tmp_path / "out")]) == 1
    assert "unknown key data.dataset" in capsys.readouterr().err


def _final_state(workdir, step):
    import orbax.checkpoint as ocp

    with ocp.StandardCheckpointer() as checkpointer:
        return checkpointer.restore((workdir / "checkpoints" / str(step) / "default").absolute())


def test_interrupted_run_resumes_to_the_same_parameters(tmp_path, monkeypatch):
    config = _config(**{"run.steps": 100, "run.checkpoint_every": 80})
    straight = train.train_and_evaluate(config, tmp_path / "straight", progress=False)

    write = report.MetricsWriter.write
    interrupted = []

    def interrupt_at_step_40(self, row):
        write(self, row)
        if row["step"] == 40 and not interrupted:
            interrupted.append(True)
            raise KeyboardInterrupt

    monkeypatch.setattr(report.MetricsWriter, "write", interrupt_at_step_40)
    with pytest.raises(KeyboardInterrupt):
        train.train_and_evaluate(config, tmp_path / "resumed", progress=False)
    monkeypatch.setattr(report.MetricsWriter, "write", write)
    assert (tmp_path / "resumed" / "checkpoints" / "40").exists()
    assert not (tmp_path / "resumed" / "summary.json").exists()
    resumed = train.train_and_evaluate(config, tmp_path / "resumed", progress=False)
    assert resumed["resumed_from_step"] == 40
    assert resumed["train_error"] == straight["train_error"]
    a = _final_state(tmp_path / "straight", 100)
    b = _final_state(tmp_path / "resumed", 100)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)
    rows = report.read_metrics(tmp_path / "resumed" / "metrics.jsonl")
    assert [r["step"] for r in rows] == [0, 40, 80, 100]
    # A finished run is not trained again; a different config is refused.
    again = train.train_and_evaluate(config, tmp_path / "resumed", progress=False)
    assert again["train_error"] == straight["train_error"]
    with pytest.raises(settings.ConfigError, match="another config"):
        train.train_and_evaluate(_config(), tmp_path / "resumed", progress=False)


def test_grid_runs_as_one_program_and_equals_single_runs(tmp_path):
    config = _config(**{"run.steps": 40})
    grid = {"learning_rate": [0.001, 0.005], "seed": [0, 1]}
    task = train.build_task(config)
    summary = train.train(task, config, tmp_path / "grid", grid=grid, progress=False)
    members = summary["members"]
    assert [(m["learning_rate"], m["seed"]) for m in members] == [
        (0.001, 0), (0.001, 1), (0.005, 0), (0.005, 1)
    ]  # fmt: skip
    single = train.train(
        task,
        _config(**{"run.steps": 40, "optimizer.learning_rate": 0.005, "run.seed": 1}),
        tmp_path / "single",
        progress=False,
    )
    np.testing.assert_allclose(members[3]["train_error"], single["train_error"], rtol=1e-5)
    assert members[0]["train_error"] != members[2]["train_error"]
    rows = report.read_metrics(tmp_path / "grid" / "metrics.jsonl")
    assert {r["member"] for r in rows} == {0, 1, 2, 3}


def test_best_cells_picks_lowest_finite_mean_error():
    import tables

    members = [
        {"mu_max": 0.9, "learning_rate": 0.1, "seed": 0, "train_error": float("nan")},
        {"mu_max": 0.9, "learning_rate": 0.01, "seed": 0, "train_error": 2.0},
        {"mu_max": 0.9, "learning_rate": 0.01, "seed": 1, "train_error": 4.0},
        {"mu_max": 0.9, "learning_rate": 0.001, "seed": 0, "train_error": 2.5},
        {"mu_max": 0.9, "learning_rate": 0.001, "seed": 1, "train_error": 2.5},
        {"mu_max": 0.99, "learning_rate": 0.1, "seed": 0, "train_error": float("nan")},
    ]
    cells = tables.best_cells(members, "nag")
    assert [(c["mu_max"], c["learning_rate"]) for c in cells] == [(0.9, 0.001), (0.99, None)]
    assert cells[0]["train_error"] == 2.5 and np.isnan(cells[1]["train_error"])
    assert tables.paper_value("curves", "nag", 0.999) == 0.074
    assert tables.paper_value("mnist", "sgd", 0.0) == 2.1
    assert tables.paper_value("curves", "nag", 0.5) is None


def test_table1_on_a_tiny_grid(tmp_path, capsys):
    import table1

    raw = {
        **TINY,
        "run": {**TINY["run"], "steps": 40},
        "table": {"optimizers": ["sgd", "nag"], "mu_maxes": [0.9, 0.99],
                  "learning_rates": [0.001, 0.005], "seeds": [0]},
    }  # fmt: skip
    path = tmp_path / "table.toml"
    path.write_text(_toml(raw))
    out = tmp_path / "out"
    assert table1.main(["--config", str(path), "--out", str(out), "--no-progress"]) == 0
    result = json.loads((out / "table1.json").read_text())
    assert [(c["optimizer"], c["mu_max"]) for c in result["cells"]] == [
        ("sgd", 0.0), ("nag", 0.9), ("nag", 0.99)
    ]  # fmt: skip
    for cell in result["cells"]:
        assert cell["learning_rate"] in (0.001, 0.005)
        assert cell["train_error"] == min(cell["errors_by_learning_rate"].values())
    nag = report.read_metrics(out / "nag" / "metrics.jsonl")
    assert len({r["member"] for r in nag}) == 4  # one program: 2 momenta x 2 learning rates
    table = (out / "table1.md").read_text()
    assert "| CURVES | SGD | NAG 0.9 | NAG 0.99 |" in table and "0.48" in table
    assert (out / "table1.png").stat().st_size > 1000
    assert "NAG 0.99" in capsys.readouterr().out


def _toml(raw):
    def value(v):
        return json.dumps(v) if not isinstance(v, bool) else str(v).lower()

    return "\n".join(
        f"[{table}]\n" + "\n".join(f"{k} = {value(v)}" for k, v in values.items())
        for table, values in raw.items()
    )


@pytest.mark.parametrize(
    "start, length",
    [(0, 7), (3, 10), (9, 25), (20, 1), (3, 1), (7, 2), (3, 5), (3, 9), (4, 8), (0, 4)],
)
def test_minibatch_rows_are_epoch_permutations(start, length):
    import tasks

    num_cases, batch = 23, 5  # 4 batches per epoch, 3 cases dropped from each permutation
    key = jax.random.key(0)

    def order(epoch):
        return np.asarray(jax.random.permutation(jax.random.fold_in(key, epoch), num_cases))

    rows, after = tasks._epoch_rows(
        num_cases, key, jnp.asarray(start), length, batch, jnp.asarray(order(start // 4))
    )
    rows = np.asarray(rows)
    assert rows.shape == (length, batch)
    for i, step in enumerate(range(start, start + length)):
        epoch, index = divmod(step, 4)
        np.testing.assert_array_equal(rows[i], order(epoch)[index * batch : (index + 1) * batch])
    # The carried order is the one of the epoch the next chunk starts in.
    np.testing.assert_array_equal(after, order((start + length) // 4))


def test_minibatch_order_carried_across_chunks_and_under_vmap():
    """Chained chunks (the order carried between them) draw the same rows as one long chunk,
    also for a vmapped grid of keys sharing an unbatched step; every epoch is a permutation."""
    import tasks

    num_cases, batch = 23, 5  # 4 batches per epoch
    keys = jax.random.split(jax.random.key(1), 3)

    def chunk(length):
        def rows(key, start, order):
            return tasks._epoch_rows(num_cases, key, start, length, batch, order)

        return jax.jit(jax.vmap(rows, in_axes=(0, None, 0)))

    first = jax.vmap(lambda k: tasks._epoch_order(num_cases, k, 0))(keys)
    whole, _ = chunk(17)(keys, jnp.asarray(0), first)
    # With the step unbatched the next epoch's order stays a branch (not a select of both sides).
    assert " cond[" in str(jax.make_jaxpr(chunk(3))(keys, jnp.asarray(0), first))
    order, start, pieces = first, 0, []
    for n in (3, 1, 5, 4, 4):
        rows, order = chunk(n)(keys, jnp.asarray(start), order)
        pieces.append(np.asarray(rows))
        start += n
    chained = np.concatenate(pieces, axis=1)
    np.testing.assert_array_equal(chained, np.asarray(whole))
    for member in chained:
        for epoch in range(4):
            assert len(set(member[4 * epoch : 4 * epoch + 4].ravel())) == 20
    assert not np.array_equal(chained[0, :4], chained[0, 4:8])  # epochs ordered differently
    assert not np.array_equal(chained[0], chained[1])  # members draw their own orders


def test_autoencoder_errors_match_numpy():
    import tasks

    config = _config(**{"run.eval_batch_size": 64})  # 150 cases: not a multiple of 64
    rng = np.random.default_rng(0)
    dataset = Dataset(rng.random((150, 784), np.float32), rng.random((70, 784), np.float32))
    task = tasks.autoencoder(config, dataset)
    params = task.init_params(jax.random.key(0))
    errors = jax.jit(task.evaluate)(params, task.data)

    def numpy_error(x):
        return np.mean(np.sum((_numpy_reconstruction(params, x) - x) ** 2, axis=1))

    np.testing.assert_allclose(errors["train_error"], numpy_error(dataset.train), rtol=1e-5)
    np.testing.assert_allclose(errors["test_error"], numpy_error(dataset.test), rtol=1e-5)


def _numpy_reconstruction(params, x):
    """The autoencoder's output in float64 NumPy: every layer logistic but the code layer."""
    h = np.asarray(x, np.float64)
    layers = list(params.values())
    for i, layer in enumerate(layers):
        h = h @ np.asarray(layer["kernel"], np.float64) + np.asarray(layer["bias"], np.float64)
        if i != len(layers) // 2 - 1:
            h = 1 / (1 + np.exp(-h))
    return h


def test_autoencoder_training_loss_is_cross_entropy_against_numpy():
    """The minibatch loss of logistic outputs is the mean over cases of the cross-entropy summed
    over pixels, -sum(x log p + (1 - x) log(1 - p)), computed here from p itself."""
    import tasks

    rng = np.random.default_rng(1)
    dataset = Dataset(rng.random((100, 784), np.float32), rng.random((10, 784), np.float32))
    task = tasks.autoencoder(_config(), dataset)
    params = task.init_params(jax.random.key(2))
    batch = dataset.train[:50]
    p = _numpy_reconstruction(params, batch)
    x = np.asarray(batch, np.float64)
    expected = np.mean(-np.sum(x * np.log(p) + (1 - x) * np.log(1 - p), axis=1))
    np.testing.assert_allclose(jax.jit(task.loss)(params, batch), expected, rtol=1e-5)


def test_logged_errors_are_at_theta(tmp_path):
    config = _config(**{"run.steps": 40})
    task = train.build_task(config)
    summary = train.train(task, config, tmp_path, progress=False)
    state = train.init_state(task, config, 40, train.hyperparameters(config.optimizer), 0)
    kwargs = {"task": task, "config": config, "total_steps": 40}
    state, _ = jax.jit(lambda s: train.train_chunk(s, task.data, length=40, **kwargs))(state)
    theta = nagmom.nesterov_eval_params(state.params, state.opt_state)
    np.testing.assert_allclose(
        summary["train_error"], task.evaluate(theta, task.data)["train_error"], rtol=1e-6
    )
    assert not np.isclose(
        summary["train_error"], task.evaluate(state.params, task.data)["train_error"], rtol=1e-6
    )


def test_final_phase_reaches_the_harness_schedule():
    config = settings.from_dict(
        TINY, {"optimizer.stage_length": 10, "optimizer.final_steps": 20, "run.steps": 100}
    )
    _, momentum = train.make_optimizer(config.optimizer, total_steps=100)
    np.testing.assert_allclose(
        [momentum(t) for t in (0, 10, 79, 80, 99)], [0.5, 0.75, 0.9375, 0.9, 0.9], rtol=1e-6
    )


@pytest.mark.parametrize("number", [2, 3])
def test_tables_2_and_3_on_a_tiny_grid(tmp_path, number, capsys):
    import table2
    import table3

    raw = {
        **TINY,
        "optimizer": {**TINY["optimizer"], "final_steps": 10},
        "run": {**TINY["run"], "steps": 20, "log_every": 20},
        "table": {"mu_maxes": [0.9], "learning_rates": [0.001, 0.005], "seeds": [0]},
    }
    path = tmp_path / "table.toml"
    path.write_text(_toml(raw))
    out = tmp_path / "out"
    script = table2 if number == 2 else table3
    assert script.main(["--config", str(path), "--out", str(out), "--no-progress"]) == 0
    result = json.loads((out / f"table{number}.json").read_text())
    labels = [c["column"] for c in result["cells"]]
    if number == 2:
        assert labels == ["without final phase", "with final phase"]
        configs = [json.loads((out / f"column{i}" / "config.json").read_text()) for i in (0, 1)]
        assert [c["config"]["optimizer"]["final_steps"] for c in configs] == [0, 10]
        assert [c["paper"] for c in result["cells"]] == [0.096, 0.074]
    else:
        assert labels == [f"init scale x{s:g}" for s in (0.25, 0.5, 1, 2, 4)]
        scales = [
            json.loads((out / f"column{i}" / "config.json").read_text())["config"]["model"][
                "init_scale"
            ]
            for i in range(5)
        ]
        assert scales == [0.25, 0.5, 1.0, 2.0, 4.0]
        errors = [c["train_error"] for c in result["cells"]]
        assert len(set(errors)) == 5  # the scale reaches the model
    for cell in result["cells"]:
        assert cell["learning_rate"] in (0.001, 0.005) and cell["mu_max"] == 0.9
    assert f"| CURVES NAG | {labels[0]}" in (out / f"table{number}.md").read_text()
    assert (out / f"table{number}.png").stat().st_size > 1000
    assert labels[-1] in capsys.readouterr().out


def test_sparse_against_dense_init_comparison(tmp_path):
    import compare_init

    raw = {
        **TINY,
        "run": {**TINY["run"], "steps": 20, "log_every": 20},
        "table": {"mu_maxes": [0.9], "learning_rates": [0.005], "seeds": [0]},
    }
    path = tmp_path / "table.toml"
    path.write_text(_toml(raw))
    out = tmp_path / "out"
    assert compare_init.main(["--config", str(path), "--out", str(out), "--no-progress"]) == 0
    result = json.loads((out / "tableinit.json").read_text())
    assert [c["column"] for c in result["cells"]] == ["sparse init", "dense init (Glorot normal)"]
    inits = [json.loads((out / f"column{i}" / "config.json").read_text()) for i in (0, 1)]
    assert [c["config"]["model"]["init"] for c in inits] == ["sparse", "dense"]
    assert result["cells"][0]["train_error"] != result["cells"][1]["train_error"]
    assert (out / "tableinit.png").stat().st_size > 1000  # every curve had rows
    import tables

    with pytest.raises(ValueError, match="no rows for 'sparse'"):
        series = [("sparse", out / "column0" / "metrics.jsonl", 0.01, 0.9)]
        tables._plot_curves(tmp_path / "empty.png", "no such learning rate", series)


def test_dense_init_is_dense():
    model = models.TinyAutoencoder(initialization="dense")
    params = model.init(jax.random.key(0), np.zeros((1, 784), np.float32))["params"]
    kernel = np.asarray(params["Dense_0"]["kernel"])
    assert np.count_nonzero(kernel) == kernel.size
    np.testing.assert_allclose(kernel.std(), np.sqrt(2 / (784 + 32)), rtol=0.05)


_DATA_PARALLEL_SCRIPT = """
import functools, sys, tempfile
from pathlib import Path
sys.path.insert(0, {benchmarks!r})
import jax, numpy as np
import settings, train

assert jax.device_count() == 4
raw = {tiny!r}
raw["run"].update(steps=40, batch_size=40, log_every=20, checkpoint_every=20)
one = settings.from_dict(raw)
four = settings.from_dict(raw, {{"run.data_parallel": True}})
task = train.build_task(one)
hparams = {{"learning_rate": 0.005, "mu_max": 0.99}}
state = jax.jit(functools.partial(train.init_state, task, one, 40))(hparams, 0)

# One compiled chunk of 20 steps on one device and data-parallel on four.
chunk = functools.partial(train.train_chunk, length=20, task=task, config=one, total_steps=40)
ref, ref_loss = jax.jit(chunk)(state, task.data)
dp_state, dp_data, batch_sharding = train.data_parallel(state, task.data, 40)
dp_chunk = jax.jit(functools.partial(chunk, batch_sharding=batch_sharding), donate_argnums=0)
assert "all-reduce" in dp_chunk.lower(dp_state, dp_data).compile().as_text()  # really split
dp, dp_loss = dp_chunk(dp_state, dp_data)
np.testing.assert_allclose(dp_loss, ref_loss, rtol=1e-5)
for a, b in zip(jax.tree.leaves(dp.params), jax.tree.leaves(ref.params), strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
for p, v in zip(jax.tree.leaves(dp.params), jax.tree.leaves(dp.opt_state.velocity), strict=True):
    assert len(p.sharding.device_set) == 4 and p.sharding.is_fully_replicated
    assert v.sharding.is_equivalent_to(p.sharding, v.ndim), (v.sharding, p.sharding)

# The whole loop (here a vmapped grid) gives the same errors on four devices.
with tempfile.TemporaryDirectory() as tmp:
    grid = {{"learning_rate": [0.005, 0.001]}}
    a = train.train(task, one, Path(tmp) / "one", grid=grid, progress=False)
    b = train.train(task, four, Path(tmp) / "four", grid=grid, progress=False)
    assert (a["devices"], b["devices"]) == (1, 4)
    ea, eb = ([m["train_error"] for m in s["members"]] for s in (a, b))
    np.testing.assert_allclose(eb, ea, rtol=1e-5)
    # Data parallelism is how a run executes, not what it computes: a one-device run cut after
    # its step-20 checkpoint resumes on four devices, to the same errors.
    import shutil
    (Path(tmp) / "one" / "summary.json").unlink()
    shutil.rmtree(Path(tmp) / "one" / "checkpoints" / "40")
    again = train.train(task, four, Path(tmp) / "one", grid=grid, progress=False)
    assert (again["devices"], again["resumed_from_step"]) == (4, 20), again
    np.testing.assert_allclose([m["train_error"] for m in again["members"]], ea, rtol=1e-5)
    # A batch that does not split is refused before anything is written.
    bad = settings.from_dict(raw, {{"run.data_parallel": True, "run.batch_size": 50}})
    try:
        train.train(task, bad, Path(tmp) / "bad", progress=False)
    except settings.ConfigError as e:
        assert "does not split evenly over the 4 devices" in str(e), e
    else:
        raise AssertionError("batch 50 on 4 devices was accepted")
    assert not (Path(tmp) / "bad" / "config.json").exists()

# RNN minibatches are time-major: the cases (axis 1) are split, not the time steps.
rnn_raw = {rnn!r}
rnn_raw["run"].update(batch_size=40)
rnn = settings.from_dict(rnn_raw, kind=settings.RnnConfig)
rnn_task = train.build_task(rnn)
rnn_state = jax.jit(functools.partial(train.init_state, rnn_task, rnn, 400))(
    {{"learning_rate": 0.01, "mu_0": 0.95}}, 0
)
rnn_chunk = functools.partial(
    train.train_chunk, length=5, task=rnn_task, config=rnn, total_steps=400
)
rnn_ref, rnn_ref_loss = jax.jit(rnn_chunk)(rnn_state, rnn_task.data)
s, d, rnn_sharding = train.data_parallel(rnn_state, rnn_task.data, 40, rnn_task.batch_axis)
assert rnn_sharding.spec == jax.sharding.PartitionSpec(None, "batch")
rnn_dp = jax.jit(functools.partial(rnn_chunk, batch_sharding=rnn_sharding))
rnn_hlo = rnn_dp.lower(s, d).compile().as_text()
assert "all-reduce" in rnn_hlo
got, got_loss = rnn_dp(s, d)
np.testing.assert_allclose(got_loss, rnn_ref_loss, rtol=1e-5)
for a, b in zip(jax.tree.leaves(got.params), jax.tree.leaves(rnn_ref.params), strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
try:
    train.data_parallel(state, task.data, 50)
except settings.ConfigError as e:
    assert "does not split evenly over the 4 devices" in str(e), e
else:
    raise AssertionError("batch 50 on 4 devices was accepted")
print("OK")
"""


def test_data_parallel_on_four_devices_matches_one_device():
    """run.data_parallel splits each minibatch over 4 CPU devices (the compiled step
    all-reduces), gives the 1-device result to float tolerance, and keeps the velocity's
    sharding equal to the parameters'."""
    from multidevice import run_on_four_cpu_devices

    benchmarks = str(Path(__file__).resolve().parents[1] / "benchmarks")
    run_on_four_cpu_devices(
        _DATA_PARALLEL_SCRIPT.format(benchmarks=benchmarks, tiny=TINY, rnn=RNN_TINY)
    )


_TWO_PROCESS_SCRIPT = """
import json, sys, time
from pathlib import Path
process_id, coordinator, benchmarks, out, raw = sys.argv[1:]
sys.path.insert(0, benchmarks)
import jax
jax.config.update("jax_cpu_collectives_implementation", "gloo")
jax.distributed.initialize(coordinator, num_processes=2, process_id=int(process_id))
import cli, settings, train
config = settings.from_dict(json.loads(raw), {"run.data_parallel": True})
summary = train.train(train.build_task(config), config, Path(out), progress=False)
time.sleep(1.5 * int(process_id))  # the processes' clocks now read different seconds
print(json.dumps({"process": jax.process_index(), "devices": summary["devices"],
                  "train_error": summary["train_error"],
                  "default_out": str(cli.default_out(Path("configs/x.toml")))}))
"""


def test_two_processes_train_data_parallel_and_write_once(tmp_path):
    """Launched as two jax.distributed processes (one CPU device each), the run splits every
    minibatch over both, gives the one-process result, only the first process writes, and both
    take the same default --out."""
    from multidevice import run_as_processes

    raw = {**TINY, "run": {**TINY["run"], "steps": 40, "batch_size": 40, "log_every": 20}}
    benchmarks = str(Path(__file__).resolve().parents[1] / "benchmarks")
    outputs = run_as_processes(
        _TWO_PROCESS_SCRIPT, [benchmarks, str(tmp_path / "two"), json.dumps(raw)]
    )
    results = [json.loads(out.strip().splitlines()[-1]) for out in outputs]
    assert sorted(r["process"] for r in results) == [0, 1]
    assert {r["devices"] for r in results} == {2}
    assert len({r["default_out"] for r in results}) == 1
    one = train.train_and_evaluate(settings.from_dict(raw), tmp_path / "one", progress=False)
    for r in results:
        np.testing.assert_allclose(r["train_error"], one["train_error"], rtol=1e-5)
    rows = report.read_metrics(tmp_path / "two" / "metrics.jsonl")
    assert [row["step"] for row in rows] == [0, 20, 40]  # written once, not once per process
    summary = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert summary["devices"] == 2 and summary["train_error"] == results[0]["train_error"]


def test_tables_in_a_process_that_does_not_write(tmp_path, monkeypatch):
    """A later process of a multi-process launch (``report.writes_files()`` false) runs Table 2
    to the same result as the writing process, writing no file of its own."""
    import tables

    raw = {
        **TINY,
        "optimizer": {**TINY["optimizer"], "final_steps": 10},
        "run": {**TINY["run"], "steps": 20, "log_every": 20},
        "table": {"mu_maxes": [0.9], "learning_rates": [0.005], "seeds": [0]},
    }
    config = settings.from_dict(raw, kind=settings.TableConfig)
    written = tables.run_nag_variants(config, tmp_path / "writer", table=2, progress=False)
    monkeypatch.setattr(report, "writes_files", lambda: False)
    silent = tables.run_nag_variants(config, tmp_path / "silent", table=2, progress=False)
    assert [c["train_error"] for c in silent["cells"]] == [
        c["train_error"] for c in written["cells"]
    ]
    files = [p for p in (tmp_path / "silent").rglob("*") if p.is_file()]
    assert [p for p in files if "checkpoints" not in p.parts] == []  # orbax writes its own
    assert (tmp_path / "writer" / "table2.md").exists()


def test_several_processes_must_be_data_parallel(tmp_path, monkeypatch):
    """Without data parallelism the processes of a jax.distributed launch would each train the
    whole run alone (and orbax cannot save their local arrays): refused before any file."""
    monkeypatch.setattr(jax, "process_count", lambda: 2)
    with pytest.raises(settings.ConfigError, match="2 processes .* run.data_parallel"):
        train.train_and_evaluate(_config(), tmp_path / "run", progress=False)
    assert not (tmp_path / "run" / "config.json").exists()


def test_distributed_flag_initializes_and_implies_data_parallel(tmp_path, monkeypatch):
    import cli

    calls, seen = [], []
    monkeypatch.setattr(jax.distributed, "initialize", lambda: calls.append(True))

    def runner(config, out, progress):
        seen.append(config.run.data_parallel)
        return {}

    path = tmp_path / "tiny.toml"
    path.write_text(_toml(TINY))
    for flags, expected in (([], True), (["--no-data-parallel"], False)):
        argv = ["--config", str(path), "--out", str(tmp_path / "out"), "--distributed", *flags]
        assert cli.main(argv, description="", default_config=path, kind=settings.Config,
                        runner=runner) == 0  # fmt: skip
        assert seen.pop() is expected
    assert len(calls) == 2


_FIELDS = (jnp.zeros([], jnp.int32), {"w": jnp.zeros(3)}, (), jnp.zeros(2, jnp.uint32))
_HPARAMS = {"learning_rate": jnp.zeros([])}


@pytest.mark.parametrize(
    "saved, restored",
    [
        # A state saved before ``plan_state`` joined ``TrainState`` (5 fields, not 6).
        ((*_FIELDS, _HPARAMS), train.TrainState(*_FIELDS, _HPARAMS, jnp.zeros(4, jnp.int32))),
        # The same fields with another shape (e.g. a per-member step).
        ({"w": jnp.zeros(3), "step": jnp.zeros([])}, {"w": jnp.zeros(3), "step": jnp.zeros(2)}),
    ],
    ids=["older-fields", "other-shape"],
)
def test_checkpoint_of_another_state_layout_is_a_config_error(tmp_path, saved, restored):
    checkpoints = train._Checkpoints(tmp_path)
    checkpoints.save(5, saved)
    checkpoints.close()
    checkpoints = train._Checkpoints(tmp_path)
    with pytest.raises(settings.ConfigError, match="step 5 .* another version: choose another"):
        checkpoints.restore(restored)
    checkpoints.close()
