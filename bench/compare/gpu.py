"""The measuring half of compare.py: PyTorch on one CUDA device (imported only to measure).

For each case (plan.Case) and implementation: build the function (PyTorch eager, torch.compile
of it, sentence-transformers, contrastive.torch), check its loss and gradients against float64
(formulas.check at the case's check shape), and only then time forward + backward with CUDA
events and measure the call's peak memory. Out of memory anywhere is recorded, the memory freed
and the run goes on; so is any other error. Nothing here writes files: run() returns the results
structure that report.write formats.
"""

from __future__ import annotations

import datetime
import gc
import math
import platform
import signal
import statistics
import subprocess
import time
import warnings
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F

from . import cpp, formulas, inputs, plan, report

DEVICE = "cuda"
TORCH_DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}
# Rotating inputs: enough copies to hold this many times the L2 cache (so a run reads its inputs
# from DRAM, as a training step does), within a share of the free memory.
COPIES_L2_MULTIPLE = 3
MIN_COPIES, MAX_COPIES = 2, 64
COPIES_MEMORY_SHARE = 0.15
DEFAULT_L2_BYTES = 50 * 1024 * 1024  # when PyTorch does not report the L2 size (H100: 50 MiB)
REPO_ROOT = Path(__file__).resolve().parents[2]


class Interrupted(BaseException):
    """SIGTERM (a timeout) or SIGINT: stop measuring, write what was measured."""


def unavailable_reason() -> Optional[str]:
    """Why nothing can be measured here, or None."""
    if not torch.cuda.is_available():
        return "PyTorch sees no CUDA device (torch.cuda.is_available() is False)"
    try:
        import contrastive
        import contrastive.torch  # noqa: F401  (registers the custom operators)
    except ImportError as error:
        return (f"the contrastive package cannot be imported ({error}); in a build tree run with "
                "PYTHONPATH=build/release/python")
    if not contrastive.gpu_available():
        try:
            contrastive.handle_for(torch.cuda.current_device())
        except RuntimeError as error:
            return f"contrastive finds no usable GPU: {error}"
        return "contrastive.gpu_available() is False"
    return None


# ---- The implementations ----------------------------------------------------------------------
# PyTorch eager: each loss's textbook formula (and sentence-transformers' for in-batch MNR).


# The temperature scales the (B, D) queries, not the (B, M) logits: the cheaper of the two equal
# forms (as in-batch MNR's scale below), so that eager is not charged a B x M pass it can avoid.
def eager_infonce(q, k):
    q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
    logits = (q / plan.TEMPERATURE) @ k.T
    targets = torch.arange(q.shape[0], device=q.device)
    return F.cross_entropy(logits, targets)


def eager_clip(q, k):
    q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
    logits = (q / plan.TEMPERATURE) @ k.T
    targets = torch.arange(q.shape[0], device=q.device)
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2


def eager_mnr_in_batch(anchors, positives, *negatives):
    candidates = torch.cat([positives, *negatives]) if negatives else positives
    anchors, candidates = F.normalize(anchors, dim=-1), F.normalize(candidates, dim=-1)
    logits = (plan.IN_BATCH_SCALE * anchors) @ candidates.T  # the scale on the (B, D) side
    targets = torch.arange(anchors.shape[0], device=anchors.device)
    return F.cross_entropy(logits, targets)


def eager_mnr_per_anchor(anchors, positives, negatives):
    candidates = torch.cat([positives.unsqueeze(1), negatives], dim=1)  # (B, 1 + N, D)
    logits = plan.PER_ANCHOR_SCALE * torch.einsum("bd,bkd->bk", anchors, candidates)
    targets = torch.zeros(anchors.shape[0], dtype=torch.long, device=anchors.device)
    return F.cross_entropy(logits, targets)


def eager_mnr_per_anchor_no_cat(anchors, positives, negatives):
    """The same loss without copying the positive and the negatives into one (B, 1 + N, D)
    tensor: each scored apart, only the (B, 1 + N) logits joined."""
    positive = torch.einsum("bd,bd->b", anchors, positives).unsqueeze(1)  # (B, 1)
    negative = torch.einsum("bd,bnd->bn", anchors, negatives)  # (B, N)
    logits = plan.PER_ANCHOR_SCALE * torch.cat([positive, negative], dim=1)
    targets = torch.zeros(anchors.shape[0], dtype=torch.long, device=anchors.device)
    return F.cross_entropy(logits, targets)


def eager_repel(user_embedding, neg_item_embeddings):
    user = F.normalize(user_embedding, dim=-1).unsqueeze(1)  # (B, 1, D)
    neg_items = F.normalize(neg_item_embeddings, dim=-1)  # (B, N, D)
    sim_scores = torch.bmm(user, neg_items.transpose(1, 2)).squeeze(1)  # (B, N)
    return torch.relu(sim_scores - plan.MARGIN).mean()


def eager_siglip(image_features, text_features):
    """open_clip's SigLipLoss on one process (normalized features, logit_scale already
    exponentiated): -logsigmoid(labels * logits).sum() / B, labels 2 I - 1."""
    image_features = F.normalize(image_features, dim=-1)
    text_features = F.normalize(text_features, dim=-1)
    logits = plan.SIGLIP_SCALE * image_features @ text_features.T + plan.SIGLIP_BIAS
    batch = image_features.shape[0]
    labels = 2 * torch.eye(batch, device=logits.device, dtype=logits.dtype) - 1
    return -F.logsigmoid(labels * logits).sum() / batch


EAGER = {"infonce": eager_infonce, "clip": eager_clip, "mnr_in_batch": eager_mnr_in_batch,
         "mnr_per_anchor": eager_mnr_per_anchor, "repel": eager_repel, "siglip": eager_siglip}
EAGER_NO_CAT = {"mnr_per_anchor": eager_mnr_per_anchor_no_cat}


def library_function(loss: str, tile: int = 0) -> Callable:
    import contrastive.torch as ct

    tiles = dict(tile_rows=tile, tile_cols=tile) if tile else {}
    if loss in ("infonce", "clip"):
        symmetric = loss == "clip"
        return lambda q, k: ct.infonce(q, k, temperature=plan.TEMPERATURE, symmetric=symmetric,
                                       **tiles)
    if loss == "mnr_in_batch":
        def in_batch(anchors, positives, *negatives):
            # As ct.MultipleNegativesRankingLoss: the concatenation is PyTorch's, as in the others.
            candidates = torch.cat([positives, *negatives]) if negatives else positives
            return ct.mnr_in_batch(anchors, candidates, hard_negatives=len(negatives),
                                   scale=plan.IN_BATCH_SCALE, **tiles)
        return in_batch
    if loss == "mnr_per_anchor":
        return lambda a, p, n: ct.mnr_per_anchor(a, p, n, scale=plan.PER_ANCHOR_SCALE,
                                                 similarity="dot")
    if loss == "repel":
        return lambda a, n: ct.repel(a, n, margin=plan.MARGIN)
    if loss == "siglip":
        return lambda q, k: ct.siglip(q, k, scale=plan.SIGLIP_SCALE, bias=plan.SIGLIP_BIAS, **tiles)
    raise ValueError(f"unknown loss {loss!r}")


class SentenceTransformers:
    """sentence-transformers' MultipleNegativesRankingLoss on precomputed embeddings, imported on
    first use: `function` (or None with `status` and `reason`), `version`, `how`."""

    def __init__(self):
        self.function = None
        self.version = None
        self.how = None
        self.status = report.OK
        self.reason = None
        try:
            with warnings.catch_warnings():  # 6.x deprecates sentence_transformers.losses
                warnings.simplefilter("ignore", DeprecationWarning)
                import sentence_transformers
                from sentence_transformers import util
                try:
                    from sentence_transformers.sentence_transformer import losses
                except ImportError:
                    from sentence_transformers import losses
        except ImportError as error:
            self.status, self.reason = report.NOT_INSTALLED, f"import failed: {error}"
            return
        except Exception as error:  # installed but broken (say, a mismatched transformers)
            self.status = report.ERROR
            self.reason = f"import failed: {type(error).__name__}: {_first_line(error)}"
            return
        self.version = getattr(sentence_transformers, "__version__", "?")
        loss_object = None
        if hasattr(losses.MultipleNegativesRankingLoss, "compute_loss_from_embeddings"):
            try:  # the loss's own code path; the model is not used on embeddings
                loss_object = losses.MultipleNegativesRankingLoss(
                    model=None, scale=plan.IN_BATCH_SCALE, similarity_fct=util.cos_sim)
            except Exception:
                loss_object = None
        if loss_object is not None:
            self.function = (lambda anchors, positives, *negatives:
                             loss_object.compute_loss_from_embeddings(
                                 [anchors, positives, *negatives], None))
            self.how = "MultipleNegativesRankingLoss(scale=20).compute_loss_from_embeddings"
        else:
            def replicated(anchors, positives, *negatives):
                scores = util.cos_sim(anchors, torch.cat([positives, *negatives])) * \
                    plan.IN_BATCH_SCALE
                labels = torch.arange(scores.shape[0], device=scores.device)
                return F.cross_entropy(scores, labels)
            self.function = replicated
            self.how = ("util.cos_sim(anchors, cat(candidates)) * 20 then cross_entropy, as "
                        "MultipleNegativesRankingLoss.forward (no compute_loss_from_embeddings "
                        "in this version)")


def _first_line(error: BaseException, limit: int = 300) -> str:
    """The start of an error's message: its first two non-empty lines (a compiler's first line
    is often only "backend='inductor' raised:")."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return " / ".join(lines[:2])[:limit]


def _is_oom(error: BaseException) -> bool:
    oom_type = getattr(torch.cuda, "OutOfMemoryError", None)
    if oom_type is not None and isinstance(error, oom_type):
        return True
    return "out of memory" in str(error).lower()  # older PyTorch; wrapped compile errors


def free_memory() -> None:
    gc.collect()
    torch.cuda.synchronize()
    torch.cuda.empty_cache()


# ---- Inputs -----------------------------------------------------------------------------------


def make_inputs(case: plan.Case, seed: int, copies: int, for_check: bool = False) -> List[List]:
    """`copies` lists of leaves (requires_grad) in the case's dtype (inputs.structured_inputs,
    then rounded). For a check, Repel's terms within formulas.REPEL_AMBIGUITY of the margin
    have their negative negated (see formulas.repel_ambiguous)."""
    generator = torch.Generator(device=DEVICE)
    generator.manual_seed(seed)
    dtype = TORCH_DTYPES[case.dtype]

    def randn(shape):
        return torch.randn(shape, generator=generator, device=DEVICE)

    result = []
    for _ in range(copies):
        tensors = [x.to(dtype) for x in inputs.structured_inputs(case, randn)]
        if for_check and case.loss == "repel":
            ambiguous = formulas.repel_ambiguous(formulas.TorchOps(torch), tensors[0], tensors[1],
                                                 case.dtype)
            tensors[1][ambiguous] = -tensors[1][ambiguous]
        result.append([t.requires_grad_() for t in tensors])
    return result


def copies_for(case: plan.Case, l2_bytes: int, free_bytes: int) -> int:
    per_copy = plan.input_elements(case) * plan.DTYPE_BYTES[case.dtype]
    wanted = math.ceil(COPIES_L2_MULTIPLE * l2_bytes / per_copy)
    affordable = int(COPIES_MEMORY_SHARE * free_bytes // per_copy)
    return max(MIN_COPIES, min(MAX_COPIES, wanted, affordable))


# ---- Measuring --------------------------------------------------------------------------------


def forward_backward(function: Callable, leaves: Sequence):
    """The timed operation: the loss and the gradient of every input."""
    loss = function(*leaves)
    return loss, torch.autograd.grad(loss, leaves)


def run_check(function: Callable, case: plan.Case, check_case: plan.Case, seed: int,
              implementation: str = plan.EAGER, tile: int = 0) -> Dict:
    """`function`'s loss and gradients at check_case against float64, within the
    implementation's tolerance (formulas.tolerance_for); `tile` is recorded (the library's
    forced tile, plan.Case.check_tile)."""
    leaves = make_inputs(check_case, seed, 1, for_check=True)[0]
    loss, grads = forward_backward(function, leaves)
    verdict = formulas.check(formulas.TorchOps(torch), case.dtype, case.loss,
                             [x.detach() for x in leaves], loss.detach().float(), grads,
                             formulas.tolerance_for(implementation, case.dtype))
    verdict["shape"] = check_case.label()
    if tile:
        verdict["tile"] = tile
    return verdict


def _quantile(sorted_samples: Sequence[float], q: float) -> float:
    index = min(len(sorted_samples) - 1, max(0, int(round(q * (len(sorted_samples) - 1)))))
    return sorted_samples[index]


def time_interleaved(functions: Dict[str, Callable], copies: Sequence, warmup: int,
                     repeats: int, max_seconds: float, warmup_seconds: float) -> Dict[str, Dict]:
    """Forward + backward of every function, interleaved: warm-up rounds (each function once a
    round) until at least `warmup` rounds and `warmup_seconds` have passed, then timed rounds,
    each function once per round with CUDA events on the current stream and the order rotated
    from round to round, so that no implementation always runs first or last on a GPU that is
    warming up. Up to `repeats` rounds, fewer (at least plan.MIN_RUNS) when they would take over
    max_seconds per function. Each run takes the next copy of the inputs. Returns, per name, the
    median (p10, p90) or {"error": exception} for a function that raised (it leaves the
    rotation)."""
    names = list(functions)
    count = len(copies)
    failed: Dict[str, BaseException] = {}
    run = 0

    def call(name):
        nonlocal run
        result = forward_backward(functions[name], copies[run % count])
        run += 1
        del result

    def one_round(order):
        for name in order:
            if name in failed:
                continue
            try:
                call(name)
            except Interrupted:
                raise
            except Exception as error:  # noqa: BLE001  (OOM and the like: that name's result)
                failed[name] = error
                free_memory()

    begin, rounds = time.perf_counter(), 0
    round_seconds = 0.0
    while rounds < max(1, warmup) or time.perf_counter() - begin < warmup_seconds:
        round_begin = time.perf_counter()
        one_round(names)
        torch.cuda.synchronize()
        round_seconds = time.perf_counter() - round_begin  # the last, warm round
        rounds += 1
        if len(failed) == len(names):
            break
    live = [name for name in names if name not in failed]
    runs = repeats
    if live and round_seconds * repeats > max_seconds * len(live):
        runs = min(repeats, max(plan.MIN_RUNS,
                                int(max_seconds * len(live) / max(round_seconds, 1e-9))))
    events: Dict[str, List] = {name: [] for name in live}
    for index in range(runs):
        shift = index % max(1, len(live))
        for name in live[shift:] + live[:shift]:
            if name in failed:
                continue
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            try:
                start.record()
                call(name)
                end.record()
            except Interrupted:
                raise
            except Exception as error:  # noqa: BLE001
                failed[name] = error
                free_memory()
                continue
            events[name].append((start, end))
    torch.cuda.synchronize()
    out: Dict[str, Dict] = {}
    for name in names:
        if name in failed:
            out[name] = {"error": failed[name]}
            continue
        samples = sorted(start.elapsed_time(end) for start, end in events[name])
        out[name] = {"median_ms": statistics.median(samples), "p10_ms": _quantile(samples, 0.1),
                     "p90_ms": _quantile(samples, 0.9), "runs": len(samples), "copies": count,
                     "warmup_rounds": rounds, "interleaved_with": len(live) - 1}
    return out


def peak_memory(function: Callable, leaves: Sequence) -> int:
    """Bytes the call allocates at its peak beyond what was allocated before it (its returned
    gradients included)."""
    gc.collect()
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    result = forward_backward(function, leaves)
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() - before
    del result
    return int(peak)


class Runner:
    def __init__(self, config):
        self.config = config
        self.checks: Dict = {}  # (implementation, check case key) -> verdict
        self.sentence_transformers: Optional[SentenceTransformers] = None
        self.start = time.monotonic()
        self.stopped: Optional[str] = None
        props = torch.cuda.get_device_properties(torch.cuda.current_device())
        self.l2_bytes = int(getattr(props, "L2_cache_size", 0) or DEFAULT_L2_BYTES)
        self.cpp = cpp.load(config.cpp_json) if config.cpp_json else None
        self.floors = self.cpp["floors"] if self.cpp else {}
        self.gpu_state_before = gpu_state()

    # -- one implementation on one case --

    def _function(self, name: str, case: plan.Case, tile: Optional[int] = None) -> Callable:
        if name == plan.EAGER:
            return EAGER[case.loss]
        if name == plan.EAGER_NO_CAT:
            return EAGER_NO_CAT[case.loss]
        if name == plan.COMPILE:
            torch._dynamo.reset()  # a clean compilation per case: its time is the first call's
            # fullgraph: a graph break would silently leave part of it eager (and slower).
            return torch.compile(EAGER[case.loss], dynamic=False, fullgraph=True)
        if name == plan.ST:
            return self.sentence_transformers.function
        if tile is None:
            tile = self.config.tile if name == plan.LIBRARY_TILED else 0
        return library_function(case.loss, tile)

    def prepare(self, name: str, case: plan.Case, check_case: plan.Case, copies):
        """Builds (and compiles) the function, checks it against float64 and measures its peak
        memory: (result so far, the function to time or None when it cannot be timed)."""
        result: Dict = {}
        if name == plan.LIBRARY_TILED:
            result["tile"] = self.config.tile
        stage = "setup"
        oom = False
        function = None
        try:
            function = self._function(name, case)
            if name == plan.COMPILE:
                stage = "compilation"
                begin = time.perf_counter()
                first = forward_backward(function, copies[0])
                torch.cuda.synchronize()
                result["compile_s"] = time.perf_counter() - begin
                del first
            stage = "check"
            # The library's default is checked on the path its timed shape takes.
            tile = case.check_tile() if name == plan.LIBRARY else 0
            key = (name, check_case.key(), tile)
            if key not in self.checks:
                checked = self._function(name, case, tile) if tile else function
                self.checks[key] = run_check(checked, case, check_case, self.config.seed + 1,
                                             name, tile)
            result["check"] = self.checks[key]
            if not result["check"]["passed"]:
                result.update(status=report.CHECK_FAILED,
                              reason="differs from float64 (see the check column): not timed")
                return result, None
            stage = "memory"
            result["peak_bytes"] = peak_memory(function, copies[0])
            return result, function
        except Interrupted:
            raise
        except Exception as error:  # noqa: BLE001  (any failure is a result, not a crash)
            if _is_oom(error):
                oom = True
            else:
                result.update(status=report.ERROR,
                              reason=f"{stage}: {type(error).__name__}: {_first_line(error)}")
        if oom:
            if name == plan.COMPILE:
                torch._dynamo.reset()
            free_memory()
            result.update(status=report.OOM, reason=f"during the {stage}")
        elif name == plan.COMPILE:
            torch._dynamo.reset()
        return result, None

    def time_prepared(self, prepared: Dict[str, Callable], results: Dict, copies) -> None:
        """Times the prepared functions interleaved (time_interleaved) into their results."""
        if not prepared:
            return
        timed = time_interleaved(prepared, copies, self.config.warmup, self.config.repeats,
                                 self.config.max_seconds, self.config.preset.warmup_seconds)
        for name, timing in timed.items():
            error = timing.get("error")
            if error is None:
                results[name].update(timing)
                results[name]["status"] = report.OK
            elif _is_oom(error):
                results[name].update(status=report.OOM, reason="during the timing")
            else:
                results[name].update(status=report.ERROR, reason=(
                    f"timing: {type(error).__name__}: {_first_line(error)}"))

    # -- the run --

    def _stop_reason(self) -> Optional[str]:
        if self.stopped:
            return self.stopped
        budget = self.config.time_budget
        if budget is not None and time.monotonic() - self.start > budget:
            return f"the --time-budget of {budget:g} s was spent"
        return None

    def _entry(self, case: plan.Case) -> Dict:
        return {"case": case.to_dict(), "check_case": case.check_case().to_dict(),
                "check_tile": case.check_tile(),
                "floor": cpp.floor_for(self.floors, case) if self.floors else None,
                "results": {}}

    def not_run(self, case: plan.Case) -> Dict:
        entry = self._entry(case)
        for name in plan.implementations(case, self.config.tile):
            entry["results"][name] = {"status": report.NOT_RUN, "reason": self.stopped}
        return entry

    def run_case(self, case: plan.Case) -> Dict:
        """Every implementation of a case: set up, compiled, checked and its memory measured one
        after the other, the library first (plan.measurement_order); then the ones that passed
        timed together, interleaved (time_interleaved)."""
        check_case = case.check_case()
        entry = self._entry(case)
        names = plan.implementations(case, self.config.tile)
        results = entry["results"]
        copies = None
        prepared: Dict[str, Callable] = {}
        try:
            for name in plan.measurement_order(names):
                stop = self._stop_reason()
                if stop:
                    results[name] = {"status": report.NOT_RUN, "reason": stop}
                    continue
                if name == plan.COMPILE and not self.config.compile_enabled:
                    results[name] = {"status": report.SKIPPED, "reason": "--no-compile"}
                    continue
                if name == plan.COMPILE and not case.compile:
                    limit = (self.config.compile_max_batch or self.config.preset.compile_max_batch)
                    only = (None if self.config.compile_max_batch else
                            self.config.preset.compile_losses)
                    smallest = (None if self.config.compile_max_batch else
                                self.config.preset.compile_min_batch)
                    results[name] = {"status": report.SKIPPED, "reason": (
                        (f"compiled only at B = {limit}" if smallest == limit else
                         f"compiled only at B ≤ {limit}")
                        + (f" and on {', '.join(plan.SHORT_NAMES[x] for x in only)}"
                           if only else "") + " in this run")}
                    continue
                if name == plan.ST:
                    if self.sentence_transformers is None:
                        self.sentence_transformers = SentenceTransformers()
                    st = self.sentence_transformers
                    if st.function is None:
                        results[name] = {"status": st.status, "reason": st.reason}
                        continue
                if copies is None:
                    try:
                        free, _ = torch.cuda.mem_get_info()
                        copies = make_inputs(case, self.config.seed,
                                             copies_for(case, self.l2_bytes, free))
                    except Exception as error:  # noqa: BLE001
                        if not _is_oom(error):
                            raise
                        copies = "oom"
                    if copies == "oom":
                        free_memory()
                if copies == "oom":
                    results[name] = {"status": report.OOM, "reason": "creating the inputs"}
                    continue
                print(f"compare: {case.loss} {case.dtype} {case.label()}: {name} ...",
                      flush=True)
                results[name], function = self.prepare(name, case, check_case, copies)
                if function is not None:
                    prepared[name] = function
                if name == plan.ST and "status" not in results[name]:
                    results[name]["detail"] = self.sentence_transformers.how
            stop = self._stop_reason()
            if stop:
                for name in prepared:
                    results[name].update(status=report.NOT_RUN, reason=f"checked; {stop}")
            else:
                self.time_prepared(prepared, results, copies)
        except Interrupted as stop:
            self.stopped = str(stop)
            for name in names:
                if "status" not in results.get(name, {}):
                    results.setdefault(name, {}).update(status=report.NOT_RUN,
                                                        reason=self.stopped)
        finally:
            prepared.clear()
            if any(name == plan.COMPILE for name in names):
                torch._dynamo.reset()
            del copies
            free_memory()
        # Table order, whatever the order of measuring.
        entry["results"] = {name: results[name] for name in names if name in results}
        return entry


def _on_signal(number, _frame):
    raise Interrupted(f"stopped by {signal.Signals(number).name}")


def _git(*args) -> Optional[str]:
    try:
        out = subprocess.run(["git", "-C", str(REPO_ROOT), *args], capture_output=True,
                             text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _driver_version() -> Optional[str]:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    lines = out.stdout.strip().splitlines()
    return lines[0].strip() if out.returncode == 0 and lines else None


# nvidia-smi queries only (nothing here changes a setting): what the card ran at.
GPU_STATE_FIELDS = ("name", "driver_version", "clocks.sm", "clocks.mem", "clocks.max.sm",
                    "clocks.max.mem", "power.draw", "power.limit", "temperature.gpu",
                    "clocks_throttle_reasons.active")


def gpu_state() -> Optional[Dict[str, str]]:
    """The card's clocks, power and temperature now (nvidia-smi --query-gpu), or None."""
    try:
        out = subprocess.run(["nvidia-smi", f"--query-gpu={','.join(GPU_STATE_FIELDS)}",
                              "--format=csv,noheader"], capture_output=True, text=True,
                             timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    lines = out.stdout.strip().splitlines()
    if out.returncode != 0 or not lines:
        return None
    values = [v.strip() for v in lines[0].split(",")]
    return dict(zip(GPU_STATE_FIELDS, values)) if len(values) == len(GPU_STATE_FIELDS) else None


def _state_text(state: Optional[Dict[str, str]]) -> str:
    if not state:
        return "not available (nvidia-smi)"
    return (f"SM {state['clocks.sm']} (max {state['clocks.max.sm']}), memory "
            f"{state['clocks.mem']}, {state['power.draw']} of {state['power.limit']}, "
            f"{state['temperature.gpu']} C, throttle reasons "
            f"{state['clocks_throttle_reasons.active']}")


def _meta(config, runner: Runner) -> Dict:
    import contrastive

    device = torch.cuda.current_device()
    props = torch.cuda.get_device_properties(device)
    card = config.card or torch.cuda.get_device_name(device)
    driver = _driver_version()
    now = datetime.datetime.now(datetime.timezone.utc)
    commit = _git("rev-parse", "--short", "HEAD")
    if commit and _git("status", "--porcelain", "--untracked-files=no"):
        commit += " (modified)"
    st = runner.sentence_transformers
    st_text = ("not needed (no in-batch MNR case)" if st is None else
               f"sentence-transformers {st.version}" if st.version else
               f"sentence-transformers {st.status}")
    preset = config.preset
    state_after = gpu_state()
    compile_limit = config.compile_max_batch or preset.compile_max_batch
    return {
        "card": card,
        "date": now.strftime("%Y-%m-%d"),
        "time_utc": now.strftime("%Y-%m-%d %H:%M:%S UTC"),
        "card_detail": (f"{card} (torch.cuda.get_device_name: {torch.cuda.get_device_name(device)}"
                        f"; compute capability {props.major}.{props.minor}, "
                        f"{props.total_memory / 2**30:.1f} GiB, "
                        f"L2 {runner.l2_bytes / 2**20:.0f} MiB"
                        + (f", driver {driver}" if driver else "") + ")"),
        "software": (f"PyTorch {torch.__version__} (CUDA {torch.version.cuda}), contrastive "
                     f"{getattr(contrastive, '__version__', '?')}, {st_text}, Python "
                     f"{platform.python_version()}"),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "driver": driver,
        "gpu_state_before": runner.gpu_state_before,
        "gpu_state_after": state_after,
        "gpu_state": (f"before: {_state_text(runner.gpu_state_before)}; after: "
                      f"{_state_text(state_after)} (nvidia-smi queries; no setting changed)"),
        "sentence_transformers": None if st is None else (st.version or st.status),
        "commit": commit,
        "command": config.command,
        "preset": preset.name,
        "preset_detail": (f"{preset.name}: losses {', '.join(config.losses)}; dtypes "
                          f"{', '.join(config.dtypes)}; torch.compile(dynamic=False, default mode)"
                          + (" off (--no-compile)" if not config.compile_enabled else
                             f" at B ≤ {compile_limit}" if compile_limit else " at every B")
                          + (f"; contrastive also with {config.tile}×{config.tile} tiles"
                             if config.tile else "")),
        "warmup": config.warmup,
        "repeats": config.repeats,
        "timing": (f"CUDA events around each forward+backward (the loss, then "
                   f"torch.autograd.grad of every input) on PyTorch's current stream; every "
                   f"implementation of a case set up, compiled and checked first (the library "
                   f"first), then all timed together, interleaved: warm-up rounds (each once a "
                   f"round) for at least {config.warmup} rounds and "
                   f"{preset.warmup_seconds:g} s, then up to {config.repeats} rounds, the order "
                   f"rotated each round; median and p10–p90 per implementation (fewer rounds, at "
                   f"least {plan.MIN_RUNS}, where they would take over {config.max_seconds:g} s "
                   f"per implementation); inputs rotated among copies holding "
                   f"{COPIES_L2_MULTIPLE}× the L2 where {COPIES_MEMORY_SHARE:.0%} of the free "
                   f"memory allows (at least {MIN_COPIES}); fp32 without TF32 in every "
                   f"implementation. torch.compile's first call (compilation) is timed apart."),
        "memory": ("torch.cuda.max_memory_allocated() over one forward+backward after "
                   "reset_peak_memory_stats(), minus torch.cuda.memory_allocated() before it, the "
                   "same for every implementation: the call's own peak through PyTorch's "
                   "allocator, its returned gradients and everything it allocates there "
                   "(intermediates, the library's workspace and saved values) included, its "
                   "inputs not. GEMM workspaces: the library's is part of the workspace each "
                   "call allocates, so it is counted; PyTorch's cuBLAS workspace is allocated once "
                   "per handle and stream, before the measured call, so it is not (it is about "
                   "32 MiB and would not change a ratio at these shapes). The C++ benchmark's "
                   "loss_memory_GB counts the library's workspace and saved values only, without "
                   "gradients"),
        "inputs": (f"bench/compare/inputs.py, seed {config.seed}, rounded to the dtype: rows of "
                   f"about unit norm, noise plus a direction shared by each tower (weight "
                   f"{inputs.SHARED}), positives and keys {inputs.POSITIVE} × their anchor + such "
                   f"rows, hard negatives {inputs.HARD} × their anchor + such rows; Repel's "
                   f"negatives z + {inputs.REPEL_CORRELATION} u (about half the terms above the "
                   f"margin)"),
        "check": (f"before timing, each implementation's loss and gradients against float64 "
                  f"(bench/compare/formulas.py in torch float64 on the same rounded inputs) at the "
                  f"case's shape, or at B halved until the reference's largest array has at most "
                  f"2^{int(math.log2(plan.CHECK_ELEMENTS))} elements ('at B=...'); where the "
                  f"library's timed shape takes the tiled path, its check forces tiles of "
                  f"(check B)/{plan.CHECK_TILE_SPLIT} so that the tiled path is the one checked; "
                  f"tolerances of the baselines: "
                  + "; ".join(f"{dtype} loss rel {t.loss_rtol:g}, gradients {t.grad:g} of their "
                              f"largest entry" for dtype, t in formulas.TOLERANCES.items())
                  + "; of the library: "
                  + "; ".join(f"{dtype} loss rel {t.loss_rtol:g}, gradients {t.grad:g}"
                              for dtype, t in formulas.LIBRARY_TOLERANCES.items())
                  + "; Repel check inputs have no term within "
                  + " / ".join(f"{v:g} ({k})" for k, v in formulas.REPEL_AMBIGUITY.items())
                  + " of the margin"),
        "floor": (f"from {', '.join(str(p) for p in config.cpp_json)} (the C++ benchmarks' own "
                  f"measurement, library and floor timed in that process, matched by loss, dtype "
                  f"and shape: cuBLAS GEMMs for InfoNCE and in-batch MNR, a device copy of the "
                  f"same bytes for per-anchor MNR and Repel; CLIP has none)"
                  + "".join(f"; {Path(s['path']).name}: {s['problem']}"
                            for s in (runner.cpp or {}).get("sources", []) if s.get("problem"))
                  if config.cpp_json else "no --cpp-json given: no floor"),
        "baselines": ("PyTorch eager as written in bench/compare/gpu.py: the temperature or scale "
                      "applied to the (B, D) rows, not the B x M logits; per-anchor MNR also "
                      "without the torch.cat of positive and negatives ('no cat'); bf16 inputs "
                      "without autocast, with PyTorch's default reduced-precision reductions in "
                      "bf16 GEMMs; torch.compile of the same functions with fullgraph=True, "
                      "dynamic=False"),
        "run": f"{time.monotonic() - runner.start:.0f} s, finished {now.strftime('%H:%M:%S UTC')}",
        "tile": config.tile,
        "cpp_json": [str(p) for p in config.cpp_json] if config.cpp_json else None,
        "interrupted": runner.stopped,
    }


def run(config) -> Dict:
    """Measures every case of the config; returns the results structure (report's docstring)."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    for name in ("cache_size_limit", "recompile_limit"):  # one compilation per shape
        if hasattr(torch._dynamo.config, name):
            setattr(torch._dynamo.config, name, max(64, getattr(torch._dynamo.config, name)))
    runner = Runner(config)
    previous = {s: signal.signal(s, _on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    cases = []
    try:
        for case in config.cases():
            try:
                cases.append(runner.run_case(case))
            except Interrupted as stop:  # between two measurements
                runner.stopped = runner.stopped or str(stop)
                cases.append(runner.not_run(case))
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    return {"schema": report.SCHEMA, "meta": _meta(config, runner), "cpp": runner.cpp,
            "cases": cases}
