"""The speed benchmarks run, write their JSON, and compare like with like (never timed here)."""

from __future__ import annotations

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import settings
import train
import train_speed
import update_speed

import nagmom

REPO = Path(__file__).resolve().parents[1]


def test_update_speed_writes_rows_with_ratios(tmp_path):
    out = tmp_path / "out"
    argv = ["--sizes", "1000", "--no-mnist", "--repeats", "1", "--out", str(out)]
    assert update_speed.main(argv) == 0
    result = json.loads((out / "update_speed.json").read_text())
    assert [(r["elements"], r["donated"]) for r in result["rows"]] == [(1000, True), (1000, False)]
    row = result["rows"][0]
    assert set(row["seconds"]) == {*update_speed.optimizers(), "hand-written"}
    # The bound is 5 arrays' bytes at the triad's bandwidth.
    np.testing.assert_allclose(
        row["bound_seconds"], 5 * 4 * 1000 / (row["bandwidth_gb_per_s"] * 1e9), rtol=1e-9
    )
    np.testing.assert_allclose(
        row["nesterov_over_bound"], row["seconds"]["nagmom.nesterov"] / row["bound_seconds"]
    )
    assert result["environment"]["backend"] == jax.default_backend()
    np.testing.assert_allclose(
        row["bandwidth_gb_per_s"], 3 * 4 * 1000 / row["triad_seconds"] / 1e9, rtol=1e-9
    )
    assert "| flat 1e3 (1,000) | yes |" in (out / "update_speed.md").read_text()
    names = update_speed.parameter_trees([150_000, 200_000, 10**7], with_mnist=False)
    assert list(names) == ["flat 150,000", "flat 2e5", "flat 1e7"]


def test_update_speed_step_is_update_then_apply():
    """The timed step is ``update`` + ``apply_updates``; with constant momentum ours, Optax's
    NAG and the hand-written step are the same method, so they give the same parameters."""
    params = jnp.linspace(-1.0, 1.0, 50)
    grads = jnp.cos(params)
    finals = []
    for tx in (nagmom.nesterov(0.01, 0.99), optax.sgd(0.01, momentum=0.99, nesterov=True)):
        step = jax.jit(update_speed.update_step(tx), donate_argnums=(0, 1))
        p, s = jnp.copy(params), tx.init(params)
        for _ in range(3):
            p, s = step(p, s, grads)
        finals.append(np.asarray(p))
    v, phi, g = np.zeros(50), np.asarray(params, np.float64), np.asarray(grads, np.float64)
    for _ in range(3):
        v = 0.99 * v - 0.01 * g
        phi = phi - 0.01 * g + 0.99 * v
    step = jax.jit(update_speed.hand_written_step, donate_argnums=(0, 1))
    p, v = {"w": jnp.copy(params)}, {"w": jnp.zeros_like(params)}
    for _ in range(3):
        p, v = step(p, v, {"w": grads})
    finals.append(np.asarray(p["w"]))
    for final in finals:
        np.testing.assert_allclose(final, phi, rtol=1e-6, atol=1e-7)


def test_train_speed_refuses_a_batch_larger_than_the_set(tmp_path, capsys):
    argv = ["--nets", "curves", "--batch-sizes", "50000", "--out", str(tmp_path / "out")]
    with pytest.raises(SystemExit) as exit_info:
        train_speed.main(argv)
    assert exit_info.value.code == 2
    assert "exceed the 20,000 training cases of curves" in capsys.readouterr().err


def test_bad_sizes_are_refused(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        update_speed.main(["--sizes", "0", "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    assert "--sizes must be positive whole numbers" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_hand_written_step_is_the_harness_network_and_loss():
    """train_speed's hand-written step computes the same loss as the harness's task on the same
    parameters and cases (so the speed ratio compares equal work), for both output kinds."""
    for net in ("curves", "faces"):
        config = settings.load(REPO / "configs" / f"{net}.toml")
        task = train.build_task(config, train_speed.synthetic_dataset(net))
        params = task.init_params(jax.random.key(0))
        cases = task.data["train"][:64]
        weights = train_speed.flat_weights(params)
        loss = train_speed.hand_written_loss(config, len(weights) // 2)
        np.testing.assert_allclose(loss(weights, cases), task.loss(params, cases), rtol=2e-5)
        shapes = train_speed.layer_shapes(params)
        assert shapes[0] == (train_speed.INPUT_SIZES[net], 400 if net == "curves" else 2000)
        # The FLOP count is XLA's own for the compiled gradient step, less its elementwise work
        # (under 1%); counting the first layer's input gradient too would be 6-14% more.
        compiled = jax.jit(jax.value_and_grad(loss)).lower(weights, task.data["train"][:200])
        analysis = compiled.compile().cost_analysis()
        analysis = analysis[0] if isinstance(analysis, list) else analysis
        counted = train_speed.flops_per_step(shapes, 200)
        assert counted <= analysis["flops"] <= 1.01 * counted, (counted, analysis["flops"])


def test_hand_written_chunk_is_nag_with_the_paper_schedule():
    """Two hand-written steps equal two steps of nagmom.nesterov with the same (here quickly
    rising: mu = 0.5, 0.75, 0.83) schedule on the same minibatches."""
    config = settings.load(REPO / "configs" / "curves.toml", {"optimizer.stage_length": 1})
    task = train.build_task(config, train_speed.synthetic_dataset("curves"))
    weights = train_speed.flat_weights(task.init_params(jax.random.key(0)))
    cases = jnp.asarray(task.data["train"][:400])
    chunk = train_speed.hand_written_chunk(config, 2, len(weights) // 2)
    got, _, t, _ = jax.jit(chunk)(weights, [jnp.zeros_like(w) for w in weights], 0, cases)
    assert int(t) == 2
    loss = train_speed.hand_written_loss(config, len(weights) // 2)
    tx, _ = train.make_optimizer(config.optimizer, config.run.steps)
    phi, state = weights, tx.init(weights)
    for step in range(2):
        grads = jax.grad(loss)(phi, cases[step * 200 : (step + 1) * 200])
        updates, state = tx.update(grads, state, phi)
        phi = optax.apply_updates(phi, updates)
    for a, b in zip(got, phi, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_train_speed_writes_rows(tmp_path):
    out = tmp_path / "out"
    argv = ["--nets", "curves", "--steps", "2", "--repeats", "1", "--batch-sizes", "100"]
    assert train_speed.main([*argv, "--out", str(out)]) == 0
    result = json.loads((out / "train_speed.json").read_text())
    (row,) = result["rows"]
    assert set(row["steps_per_second"]) == {
        "harness",
        "hand-written",
        "harness, 1-step chunks",
        "harness, 10-step chunks",
        "harness, not donated",
        "harness, batch 100",
    }
    assert row["batch_sizes"]["harness, batch 100"] == 100 and row["batch_sizes"]["harness"] == 200
    shapes = [tuple(s) for s in row["layers"]]
    for name, rate in row["steps_per_second"].items():
        expected = rate * train_speed.flops_per_step(shapes, row["batch_sizes"][name]) / 1e9
        np.testing.assert_allclose(row["gflops_per_second"][name], expected, rtol=1e-9)
    assert row["parameters"] == 842_340 and result["matmul_peak_gflops_per_second"] > 0
    # By hand: the products sum to 840,000 multiply-adds per case; forward, weight gradient and
    # input gradient (none at the 784 x 400 first layer), 2 FLOPs each, 200 cases.
    assert train_speed.flops_per_step(shapes, 200) == 2 * 200 * (3 * 840_000 - 784 * 400)
    assert train_speed.flops_per_step(shapes, 200) == 882_560_000
    assert set(row["compile_seconds"]) == {"harness", "hand-written"}
    assert "| curves (842,340) | harness |" in (out / "train_speed.md").read_text()


def test_sweep_speed_writes_the_ratio(tmp_path):
    import sweep_speed

    out = tmp_path / "out"
    argv = ["--config", str(REPO / "configs" / "table1_curves.toml"), "--steps", "2"]
    assert sweep_speed.main([*argv, "--repeats", "1", "--out", str(out)]) == 0
    result = json.loads((out / "sweep_speed.json").read_text())
    assert result["members"] == 6 and result["steps"] == 2
    np.testing.assert_allclose(
        result["speedup"], result["sequential_seconds"] / result["grid_seconds"]
    )
    assert result["environment"]["device_count"] >= 1
