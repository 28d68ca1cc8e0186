"""Writes seed_infonce.json: the demo's InfoNCE example (B = 6, D = 8, cosine, temperature 0.1,
mean) computed by NumPy in float64. Run by hand (needs numpy); the tests read the JSON."""
import json
import pathlib

import numpy as np

np.random.seed(0)
batch_size, embedding_dim, temperature = 6, 8, 0.1
z1 = np.random.randn(batch_size, embedding_dim)
z2 = z1 + 0.1 * np.random.randn(batch_size, embedding_dim)
z1n = z1 / np.linalg.norm(z1, axis=1, keepdims=True)
z2n = z2 / np.linalg.norm(z2, axis=1, keepdims=True)
sim = z1n @ z2n.T
exp_sim = np.exp(sim / temperature)
probs = exp_sim / exp_sim.sum(axis=1, keepdims=True)
loss = -np.log(np.diag(probs)).mean()


def infonce_loss(t):
    logits = sim / t
    lse = np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1)) + logits.max(1)
    return float((lse - np.diag(logits)).mean())


# The library takes the temperature as a float: the same loss at float32(0.1), for exact tests.
loss_f32_temperature = infonce_loss(float(np.float32(temperature)))

golden = {
    "description": "Seed demo 3 (InfoNCE): numpy seed 0; z1 = randn(6, 8); "
    "z2 = z1 + 0.1 * randn(6, 8); "
    "cosine similarity, temperature 0.1, mean of -log softmax_row(S / t)[i, i]. float64, "
    "written by make_seed_infonce.py.",
    "temperature": temperature,
    "z1": z1.tolist(),
    "z2": z2.tolist(),
    "similarity": sim.tolist(),
    "loss": float(loss),
    "loss_f32_temperature": loss_f32_temperature,
}
path = pathlib.Path(__file__).with_name("seed_infonce.json")
path.write_text(json.dumps(golden, indent=1) + "\n")
print(f"loss = {loss!r} -> {path}")
