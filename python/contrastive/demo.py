"""python -m contrastive.demo [--out similarity.png]: three small examples, one per loss family.

  InfoNCE: z1 = randn(6, 8), z2 = z1 + 0.1 * randn(6, 8) (two views of six samples) after
          np.random.seed(0), cosine, temperature 0.1; the cosine similarity matrix is drawn as an
          annotated heatmap into the --out PNG (with matplotlib: pip install "contrastive[demo]";
          without it the demo says so and skips the picture)
  MNR: np.random.seed(42), anchor = rand(4), positive = rand(4), negatives = rand(3, 4),
          dot product, scale 1: "MNR Loss = 1.6965"
  Repel: np.random.seed(0), users = randn(2, 4), items = randn(2, 3, 4), margin 0.3

Each prints the float64 reference's loss. When a GPU is usable and PyTorch or CuPy is installed to
hold device arrays, the library's GPU path runs too and its loss and gradients are compared with the
reference; otherwise the demo says why it did not run. The exit status is 1 when the GPU disagrees
with the reference or the heatmap cannot be written (a missing matplotlib is not a failure).

Neither PyTorch nor CuPy is imported unless the GPU path runs.
"""

import argparse
import sys
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np

import contrastive
from contrastive import reference

INFONCE_SEED, INFONCE_BATCH, INFONCE_DIM = 0, 6, 8
INFONCE_NOISE = 0.1  # z2 = z1 + INFONCE_NOISE * randn: the "augmented view"
INFONCE_TEMPERATURE = 0.1
MNR_SEED, MNR_DIM, MNR_NEGATIVES = 42, 4, 3
MNR_EXPECTED_LOSS = "1.6965"  # the loss of these inputs, to four decimals
REPEL_SEED, REPEL_BATCH, REPEL_NEGATIVES, REPEL_DIM = 0, 2, 3, 4
REPEL_MARGIN = 0.3

LOSS_TOLERANCE = 1e-4  # relative, float32 GPU against the float64 reference (as examples/demo.cpp)
GRADIENT_TOLERANCE = 1e-3  # absolute, for these O(1) gradients

HEATMAP_TITLE = "Cosine Similarity between z1 and z2 (Augmented Views)"
HEATMAP_SIZE = (8, 6)  # inches
HEATMAP_COLORMAP = "coolwarm"
# seaborn's rule for annotation colours: dark text on light cells, white on dark ones, by the
# cell's relative luminance (W3C: linear sRGB weighted 0.2126 R + 0.7152 G + 0.0722 B).
LUMINANCE_WEIGHTS = (0.2126, 0.7152, 0.0722)
LUMINANCE_THRESHOLD = 0.408
DARK_TEXT, LIGHT_TEXT = ".15", "w"

# A GPU run of one loss: (loss name in contrastive.torch / contrastive.cupy, float64 inputs,
# options) -> (float32 loss, gradients of the inputs as float64 NumPy arrays).
GpuRun = Callable[[str, Sequence[np.ndarray], dict], Tuple[float, List[np.ndarray]]]


# ---- The inputs (NumPy's legacy seeding, so that examples/demo.cpp draws the same) ---------------


def infonce_inputs() -> Tuple[np.ndarray, np.ndarray]:
    np.random.seed(INFONCE_SEED)
    z1 = np.random.randn(INFONCE_BATCH, INFONCE_DIM)
    z2 = z1 + INFONCE_NOISE * np.random.randn(INFONCE_BATCH, INFONCE_DIM)
    return z1, z2


def mnr_inputs() -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One anchor, as a batch of one: anchors (1, d), positives (1, d), negatives (1, N, d)."""
    np.random.seed(MNR_SEED)
    anchor = np.random.rand(MNR_DIM)
    positive = np.random.rand(MNR_DIM)
    negatives = np.random.rand(MNR_NEGATIVES, MNR_DIM)
    return anchor[np.newaxis], positive[np.newaxis], negatives[np.newaxis]


def repel_inputs() -> Tuple[np.ndarray, np.ndarray]:
    np.random.seed(REPEL_SEED)
    users = np.random.randn(REPEL_BATCH, REPEL_DIM)
    items = np.random.randn(REPEL_BATCH, REPEL_NEGATIVES, REPEL_DIM)
    return users, items


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of every row of a with every row of b."""
    def unit(x):
        return x / np.linalg.norm(x, axis=1, keepdims=True)
    return unit(a) @ unit(b).T


def numpy_infonce(z1: np.ndarray, z2: np.ndarray, temperature: float) -> float:
    """InfoNCE written directly in NumPy (softmax over each row, -log of the diagonal, mean)."""
    logits = cosine_similarity(z1, z2) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return float(-np.log(np.diag(probabilities)).mean())


# ---- The GPU path ------------------------------------------------------------------------------


def _torch_run() -> Tuple[GpuRun, str]:
    import torch  # imported only when the GPU path runs

    from contrastive import torch as losses

    if not torch.cuda.is_available():
        raise RuntimeError("PyTorch sees no CUDA device")

    def run(name, inputs, options):
        tensors = [torch.tensor(x, dtype=torch.float32, device="cuda", requires_grad=True)
                   for x in inputs]
        loss = getattr(losses, name)(*tensors, **options)
        loss.backward()
        return float(loss), [t.grad.double().cpu().numpy() for t in tensors]

    return run, f"PyTorch {torch.__version__} on {torch.cuda.get_device_name()}"


def _cupy_run() -> Tuple[GpuRun, str]:
    import cupy  # imported only when the GPU path runs

    from contrastive import cupy as losses

    def run(name, inputs, options):
        arrays = [cupy.asarray(x, dtype=cupy.float32) for x in inputs]
        loss, *grads = getattr(losses, name)(*arrays, **options, with_grad=True)
        return float(loss), [cupy.asnumpy(g).astype(np.float64) for g in grads[:len(inputs)]]

    return run, f"CuPy {cupy.__version__}"


def find_gpu() -> Tuple[Optional[GpuRun], str]:
    """A way to run the GPU path and what it is, or None and why there is none."""
    if not contrastive.gpu_available():
        try:
            contrastive.handle_for(0)
            reason = "no usable CUDA device"
        except RuntimeError as error:
            reason = str(error)
        return None, reason
    problems = []
    for framework, make in (("PyTorch", _torch_run), ("CuPy", _cupy_run)):
        try:
            return make()
        except ImportError:
            problems.append(f"{framework} is not installed")
        except RuntimeError as error:
            problems.append(f"{framework}: {error}")
    return None, ("a GPU is usable but there is nothing to hold device arrays ("
                  + "; ".join(problems) + ")")


def compare(gpu: Optional[GpuRun], name: str, inputs: Sequence[np.ndarray], options: dict,
            reference_loss: float, reference_grads: Sequence[np.ndarray]) -> bool:
    """Runs `name` on the GPU and prints how it compares; False when it fails or disagrees."""
    if gpu is None:
        return True
    try:
        loss, grads = gpu(name, inputs, options)
    except (RuntimeError, ValueError, TypeError) as error:  # the library's errors
        print(f"GPU path failed: {error}")
        return False
    difference = max(float(np.max(np.abs(g.reshape(-1) - r.reshape(-1))))
                     for g, r in zip(grads, reference_grads))
    print(f"GPU (float32) loss:        {loss:.6f}")
    print(f"largest |GPU - reference| gradient difference: {difference:.3g}")
    loss_error = abs(loss - reference_loss)
    if not (loss_error <= LOSS_TOLERANCE * max(1.0, abs(reference_loss))
            and difference <= GRADIENT_TOLERANCE):
        print("MISMATCH between the GPU and the reference")
        return False
    return True


# ---- The heatmap ---------------------------------------------------------------------------------


def _annotation_colour(rgba) -> str:
    def linear(channel):
        return channel / 12.92 if channel <= 0.03928 else ((channel + 0.055) / 1.055) ** 2.4
    luminance = sum(w * linear(c) for w, c in zip(LUMINANCE_WEIGHTS, rgba[:3]))
    return DARK_TEXT if luminance > LUMINANCE_THRESHOLD else LIGHT_TEXT


def draw_heatmap(similarity: np.ndarray, path: str) -> None:
    """An annotated heatmap (as seaborn's heatmap(annot=True, fmt=".2f", cmap="coolwarm")) with
    matplotlib alone: rows z1_i, columns z2_j."""
    from matplotlib.figure import Figure  # no pyplot: no GUI backend is involved

    rows, columns = similarity.shape
    figure = Figure(figsize=HEATMAP_SIZE)
    axes = figure.subplots()
    image = axes.imshow(similarity, cmap=HEATMAP_COLORMAP, aspect="auto")
    for i in range(rows):
        for j in range(columns):
            value = similarity[i, j]
            axes.text(j, i, f"{value:.2f}", ha="center", va="center",
                      color=_annotation_colour(image.cmap(image.norm(value))))
    axes.set_xticks(range(columns), labels=[f"z2_{j}" for j in range(columns)])
    axes.set_yticks(range(rows), labels=[f"z1_{i}" for i in range(rows)])
    axes.tick_params(length=0)
    for spine in axes.spines.values():
        spine.set_visible(False)
    figure.colorbar(image, ax=axes).outline.set_visible(False)
    axes.set_title(HEATMAP_TITLE)
    figure.tight_layout()
    figure.savefig(path)


# ---- The three examples --------------------------------------------------------------------------


def infonce_example(gpu: Optional[GpuRun], out: str) -> bool:
    z1, z2 = infonce_inputs()
    options = dict(temperature=INFONCE_TEMPERATURE, similarity="cosine", symmetric=False,
                   reduction="mean")
    ref = reference.infonce(z1, z2, positive_offset=0, **options)
    loss = float(ref["loss"][0])
    similarity = cosine_similarity(z1, z2)
    print(f"== InfoNCE: B = {INFONCE_BATCH}, D = {INFONCE_DIM}, "
          f"temperature {INFONCE_TEMPERATURE:.2f}, cosine ==")
    print("cosine similarity z1 x z2:")
    for row in similarity:
        print("  " + "".join(f"{value:6.2f}" for value in row))
    print(f"reference (float64) loss: {loss:.6f} (the temperature as the library's float32)")
    print(f"the same formula in NumPy: {numpy_infonce(z1, z2, INFONCE_TEMPERATURE):.6f}")
    ok = compare(gpu, "infonce", (z1, z2), options, loss, (ref["grad_q"], ref["grad_k"]))
    try:
        draw_heatmap(similarity, out)
    except ImportError:
        print("heatmap skipped: matplotlib is not installed "
              "(pip install matplotlib, or install the package with the demo extra)")
        return ok
    except OSError as error:
        print(f"heatmap not written: {error}")
        return False
    print(f"heatmap written to {out}")
    return ok


def mnr_example(gpu: Optional[GpuRun]) -> bool:
    anchors, positives, negatives = mnr_inputs()
    options = dict(scale=1.0, similarity="dot", reduction="mean")
    ref = reference.mnr_per_anchor(anchors, positives, negatives, **options)
    loss = float(ref["loss"][0])
    print(f"\n== MNR, per-anchor negatives: d = {MNR_DIM}, {MNR_NEGATIVES} negatives, "
          f"dot product ==")
    print(f"MNR Loss = {loss:.4f} (expected: {MNR_EXPECTED_LOSS})")
    print(f"reference (float64) loss: {loss:.6f}")
    return compare(gpu, "mnr_per_anchor", (anchors, positives, negatives), options, loss,
                   (ref["grad_anchors"], ref["grad_positives"], ref["grad_negatives"]))


def repel_example(gpu: Optional[GpuRun]) -> bool:
    users, items = repel_inputs()
    options = dict(margin=REPEL_MARGIN, reduction="mean", mean_over_active=False)
    ref = reference.repel(users, items, **options)
    loss = float(ref["loss"][0])
    print(f"\n== Repel: B = {REPEL_BATCH}, N = {REPEL_NEGATIVES}, "
          f"D = {REPEL_DIM}, margin {REPEL_MARGIN} ==")
    print("cosine similarities: " + " ".join(f"{s:.3f}" for s in ref["similarities"].ravel()))
    print(f"Repel Loss: {loss:.6f}")
    print(f"reference (float64) loss: {loss:.6f} ({ref['active_terms']:g} of "
          f"{REPEL_BATCH * REPEL_NEGATIVES} terms above the margin)")
    return compare(gpu, "repel", (users, items), options, loss,
                   (ref["grad_anchors"], ref["grad_negatives"]))


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m contrastive.demo",
                                     description="Three small examples: InfoNCE, MNR, Repel.")
    parser.add_argument("--out", default="similarity.png",
                        help="where to write the InfoNCE similarity heatmap (PNG)")
    args = parser.parse_args(argv)

    gpu, description = find_gpu()
    if gpu is None:
        print(f"GPU path did not run: {description}")
        print("showing the float64 reference (the library's C++ reference, on the CPU)\n")
    else:
        print(f"GPU path: {description}; each loss is compared with the float64 reference\n")
    ok = infonce_example(gpu, args.out)
    ok = mnr_example(gpu) and ok
    ok = repel_example(gpu) and ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
