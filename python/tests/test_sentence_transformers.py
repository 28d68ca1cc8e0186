"""contrastive.sentence_transformers against sentence-transformers' own losses, on the CPU: a tiny
BERT built in-process (random weights, a 40-word vocabulary, no download), the same batch through
both, and the loss and every parameter's gradient compared; the cached (GradCache) losses against
their sentence-transformers counterparts; two SentenceTransformerTrainer steps with the drop-in;
the arguments that do not map.

float32 tolerances: the loss within 1e-5 relative (both compute normalized rows, their products
and a log-sum-exp in float32, in different orders); parameter gradients within 1e-4 relative
plus 1e-5 of the largest gradient entry.

Skipped without sentence-transformers (pip install 'contrastive[sentence-transformers]'); the
trainer test also needs its training extras (datasets, accelerate).
"""

import inspect
import os
import warnings

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch = pytest.importorskip("torch")
st = pytest.importorskip("sentence_transformers")
from sentence_transformers import SentenceTransformer, util  # noqa: E402

from contrastive import sentence_transformers as cst  # noqa: E402

try:
    from sentence_transformers.sentence_transformer import losses as st_losses
except ImportError:  # older layout
    from sentence_transformers import losses as st_losses

LOSS_RTOL, LOSS_ATOL = 1e-5, 1e-6
GRAD_RTOL, GRAD_ATOL = 1e-4, 1e-5  # the absolute part scales with the largest gradient entry

WORDS = ["red", "green", "blue", "cat", "dog", "bird", "runs", "sleeps", "flies", "sings",
         "big", "small", "old", "young", "the", "a", "on", "under", "tree", "house",
         "car", "road", "sky", "sea", "fish", "swims", "eats", "sees", "loud", "quiet",
         "fast", "slow", "hot", "cold", "day", "night", "sun", "moon", "rain", "snow"]
ANCHORS = ["the red cat sleeps", "a dog runs fast", "big bird flies", "the fish swims",
           "old car on the road", "the sun is hot"]
POSITIVES = ["a red cat", "dog runs", "bird flies high", "fish in the sea", "a car on a road",
             "hot sun day"]
NEGATIVES = ["the cold moon", "quiet night snow", "green tree house", "loud car",
             "small young dog", "the sea is cold"]


def _tokenizer(folder):
    from transformers import BertTokenizer
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS
    if "vocab" in inspect.signature(BertTokenizer.__init__).parameters:
        return BertTokenizer(vocab={word: index for index, word in enumerate(vocab)})
    path = os.path.join(folder, "vocab.txt")
    with open(path, "w") as file:
        file.write("\n".join(vocab) + "\n")
    return BertTokenizer(vocab_file=path)


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory):
    """A tiny random BERT and its tokenizer, saved where sentence-transformers loads them from."""
    from transformers import BertConfig, BertModel
    folder = str(tmp_path_factory.mktemp("tiny-bert"))
    torch.manual_seed(0)
    config = BertConfig(vocab_size=5 + len(WORDS), hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=32,
                        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    BertModel(config).save_pretrained(folder)
    _tokenizer(folder).save_pretrained(folder)
    return folder


def _model(folder):
    try:
        from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    except ImportError:
        from sentence_transformers.models import Pooling, Transformer
    transformer = Transformer(folder)
    dimension = (transformer.get_embedding_dimension()
                 if hasattr(transformer, "get_embedding_dimension")
                 else transformer.get_word_embedding_dimension())
    return SentenceTransformer(modules=[transformer, Pooling(dimension)], device="cpu")


def _features(model, *columns):
    preprocess = getattr(model, "preprocess", None) or model.tokenize
    return [preprocess(list(column)) for column in columns]


def _loss_and_gradients(model, loss, features):
    model.zero_grad()
    value = loss([dict(f) for f in features], None)
    value.backward()
    grads = {name: p.grad.detach().clone() for name, p in model.named_parameters()
             if p.grad is not None}
    return value.detach(), grads


def assert_same_training_signal(ours, theirs):
    (loss, grads), (expected, expected_grads) = ours, theirs
    torch.testing.assert_close(loss, expected, rtol=LOSS_RTOL, atol=LOSS_ATOL)
    assert grads.keys() == expected_grads.keys() and grads
    for name, grad in grads.items():
        scale = max(1.0, float(expected_grads[name].abs().max()))
        torch.testing.assert_close(grad, expected_grads[name], rtol=GRAD_RTOL,
                                   atol=GRAD_ATOL * scale, msg=lambda m: f"{name}: {m}")


def _compare(folder, ours, theirs, columns):
    model = _model(folder)
    features = _features(model, *columns)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ours_loss, theirs_loss = ours(model), theirs(model)
    assert_same_training_signal(_loss_and_gradients(model, ours_loss, features),
                                _loss_and_gradients(model, theirs_loss, features))


COLUMNS = {"pairs": (ANCHORS, POSITIVES), "triplets": (ANCHORS, POSITIVES, NEGATIVES),
           "two_negatives": (ANCHORS, POSITIVES, NEGATIVES, POSITIVES[::-1])}


@pytest.mark.parametrize("columns", COLUMNS.values(), ids=COLUMNS.keys())
@pytest.mark.parametrize("similarity", ["cos_sim", "dot_score"])
def test_multiple_negatives_ranking_loss(model_folder, columns, similarity):
    function = getattr(util, similarity)
    scale = 20.0 if similarity == "cos_sim" else 0.05
    _compare(model_folder,
             lambda m: cst.MultipleNegativesRankingLoss(m, scale=scale, similarity_fct=function),
             lambda m: st_losses.MultipleNegativesRankingLoss(m, scale=scale,
                                                               similarity_fct=function),
             columns)


@pytest.mark.parametrize("columns", ["pairs", "triplets"])
def test_multiple_negatives_symmetric_ranking_loss(model_folder, columns):
    _compare(model_folder, lambda m: cst.MultipleNegativesSymmetricRankingLoss(m, scale=10.0),
             lambda m: st_losses.MultipleNegativesSymmetricRankingLoss(m, scale=10.0),
             COLUMNS[columns])


@pytest.mark.parametrize("columns", ["pairs", "triplets"])
def test_cached_multiple_negatives_ranking_loss(model_folder, columns):
    """GradCache in mini-batches of 4 (the batch is 6: a partial one too) against
    sentence-transformers' cached loss and against the uncached loss."""
    _compare(model_folder,
             lambda m: cst.CachedMultipleNegativesRankingLoss(m, scale=20.0, mini_batch_size=4),
             lambda m: st_losses.CachedMultipleNegativesRankingLoss(m, scale=20.0,
                                                                     mini_batch_size=4),
             COLUMNS[columns])
    _compare(model_folder,
             lambda m: cst.CachedMultipleNegativesRankingLoss(m, mini_batch_size=2),
             lambda m: st_losses.MultipleNegativesRankingLoss(m), COLUMNS[columns])


def test_cached_symmetric_loss(model_folder):
    if not hasattr(st_losses, "CachedMultipleNegativesSymmetricRankingLoss"):
        pytest.skip("this sentence-transformers has no CachedMultipleNegativesSymmetricRankingLoss")
    _compare(model_folder,
             lambda m: cst.CachedMultipleNegativesSymmetricRankingLoss(m, mini_batch_size=4),
             lambda m: st_losses.MultipleNegativesSymmetricRankingLoss(m),
             COLUMNS["pairs"])


def test_the_cached_loss_without_gradients(model_folder):
    model = _model(model_folder)
    features = _features(model, ANCHORS, POSITIVES)
    with torch.no_grad():
        ours = cst.CachedMultipleNegativesRankingLoss(model, mini_batch_size=4)(features, None)
        theirs = st_losses.MultipleNegativesRankingLoss(model)(features, None)
    torch.testing.assert_close(ours, theirs, rtol=LOSS_RTOL, atol=LOSS_ATOL)


def test_the_arguments_keep_their_meaning(model_folder):
    model = _model(model_folder)
    loss = cst.MultipleNegativesRankingLoss(model, scale=7.0, similarity_fct=util.dot_score)
    assert isinstance(loss, st_losses.MultipleNegativesRankingLoss)
    assert loss.scale == 7.0 and loss.similarity_fct is util.dot_score
    assert loss.get_config_dict()["scale"] == 7.0
    cached = cst.CachedMultipleNegativesRankingLoss(model, mini_batch_size=3)
    assert isinstance(cached, st_losses.CachedMultipleNegativesRankingLoss)
    assert cached.mini_batch_size == 3 and cached.scale == 20.0


def test_what_does_not_map_is_a_clear_error(model_folder):
    model = _model(model_folder)
    with pytest.raises(ValueError, match="similarity_fct must be sentence_transformers.util"):
        cst.MultipleNegativesRankingLoss(model, similarity_fct=util.euclidean_sim)
    with pytest.raises(ValueError, match="similarity_fct"):
        cst.CachedMultipleNegativesRankingLoss(model, similarity_fct=lambda a, b: a @ b.T)
    if "directions" in inspect.signature(
            st_losses.MultipleNegativesRankingLoss.__init__).parameters:
        with pytest.raises(ValueError, match="directions"):
            cst.MultipleNegativesRankingLoss(
                model, directions=("query_to_doc", "query_to_query"))
        with pytest.raises(ValueError, match="partition_mode='joint'"):
            cst.MultipleNegativesRankingLoss(model, directions=("query_to_doc", "doc_to_query"))
        with pytest.raises(ValueError, match="hardness_mode"):
            cst.MultipleNegativesRankingLoss(model, hardness_mode="hard_negatives",
                                             hardness_strength=5.0)


def test_two_trainer_steps_with_the_drop_in(model_folder, tmp_path):
    """A training script changes one import and one line: two SentenceTransformerTrainer steps on
    the CPU with the drop-in loss, which computes every step's loss, and the weights move."""
    pytest.importorskip("datasets", reason="the trainer needs sentence-transformers[train]")
    pytest.importorskip("accelerate", reason="the trainer needs sentence-transformers[train]")
    from datasets import Dataset
    from sentence_transformers import (SentenceTransformerTrainer,
                                       SentenceTransformerTrainingArguments)

    calls = []

    class Counted(cst.MultipleNegativesRankingLoss):
        def compute_loss_from_embeddings(self, embeddings, labels=None):
            loss = super().compute_loss_from_embeddings(embeddings, labels)
            calls.append(float(loss.detach()))
            return loss

    model = _model(model_folder)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    dataset = Dataset.from_dict({"anchor": ANCHORS * 2, "positive": POSITIVES * 2,
                                 "negative": NEGATIVES * 2})
    arguments = SentenceTransformerTrainingArguments(
        output_dir=str(tmp_path), max_steps=2, per_device_train_batch_size=4, learning_rate=1e-3,
        report_to="none", save_strategy="no", use_cpu=True, seed=0, logging_steps=1)
    trainer = SentenceTransformerTrainer(model=model, args=arguments, train_dataset=dataset,
                                         loss=Counted(model, scale=20.0))
    result = trainer.train()
    assert result.global_step == 2 and len(calls) == 2
    assert all(value == value and value > 0 for value in calls)  # finite, positive losses
    moved = [name for name, p in model.named_parameters()
             if not torch.equal(p.detach(), before[name])]
    assert moved, "no parameter changed"
