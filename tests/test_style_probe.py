"""The style probe: the trie's exact scores, the length rule, probe rows, and what its terms train."""

from types import SimpleNamespace

import pytest
import torch
from helpers.tiny_model import build_tiny

from lavis_gated.models.style_probe import NameTrie, name_log_probs
from lavis_gated.tasks.losses import probe_rows
from lavis_gated.tasks.style_captioning import StyleCaptioningTask

ARTQUEST_TYPES = ["artist", "school", "timeframe", "type", "technique", "title"]


def artquest_batch(size=4, seed=0):
    """Rows asking ArtQuest's questions (none about style), labelled but for the last."""
    g = torch.Generator().manual_seed(seed)
    return {
        "image": torch.randn(size, 3, 32, 32, generator=g),
        "text_input": ["who painted this?", "which school?", "when was it painted?", "what is the title?"][
            :size
        ],
        "answer": ["Giotto di Bondone", "Italian", "1301-1350", "The Visitation"][:size],
        "style": ["pop art", "cubism", "impressionism", ""][:size],
        "question_type": ["artist", "school", "timeframe", "title"][:size],
    }


# ---- the trie, on a language model whose next-token logits are set by hand ---------------------------------


class BigramLM:
    """A stand-in decoder + lm_head: the hidden state of a position is the one-hot of its token, and lm_head
    maps it to the chosen next-token logits (V x V), so P(next | previous token) is set per test."""

    def __init__(self, vocab, logits):
        self.vocab, self.table = vocab, torch.as_tensor(logits, dtype=torch.float32)
        self.calls = []

    def lm_head(self, hidden):
        return hidden @ self.table

    def decoder(self, input_ids, attention_mask, past_key_values, use_cache, return_dict):
        self.calls.append(tuple(input_ids.shape))
        assert attention_mask.shape[1] == past_key_values[0][0].shape[2] + input_ids.shape[1]
        return SimpleNamespace(last_hidden_state=torch.nn.functional.one_hot(input_ids, self.vocab).float())


def bigram_scores(lm, sequences, after):
    """name_log_probs for one row whose prefix ends with token `after`."""
    past = ((torch.zeros(1, 1, 3, 1), torch.zeros(1, 1, 3, 1)),)
    last = torch.nn.functional.one_hot(torch.tensor([after]), lm.vocab).float()
    return name_log_probs(lm.decoder, lm.lm_head, past, last, NameTrie(sequences))[0]


END, BAROQUE, REVIVAL, ROCOCO, PREFIX = 0, 1, 2, 3, 4


@pytest.mark.parametrize("p_end, longer_wins", [(0.9, False), (0.1, True)])
def test_length_rule_a_form_that_is_a_prefix_of_another_does_not_win_by_being_short(p_end, longer_wins):
    """Forms " Baroque" and " Baroque Revival", each followed by the end token: after " Baroque" the end token
    and " Revival" compete, so the short form wins only where the model would end the answer there. A sum
    of the forms' own token log-probabilities would always rank the prefix at least as high."""
    logits = torch.full((5, 5), -30.0)
    logits[PREFIX, BAROQUE], logits[PREFIX, ROCOCO] = 0.0, -1.0
    logits[BAROQUE, END], logits[BAROQUE, REVIVAL] = torch.tensor([p_end, 1 - p_end]).log()
    logits[REVIVAL, END] = 0.0
    logits[ROCOCO, END] = 0.0
    lm = BigramLM(5, logits)
    scores = bigram_scores(lm, [[BAROQUE, END], [BAROQUE, REVIVAL, END], [ROCOCO, END]], PREFIX)
    assert torch.logsumexp(scores, 0).item() == pytest.approx(0.0, abs=1e-6)  # a distribution over names
    p_baroque = torch.softmax(torch.tensor([0.0, -1.0]), 0)[0].item()
    assert scores.exp().tolist() == pytest.approx(
        [p_baroque * p_end, p_baroque * (1 - p_end), 1 - p_baroque], rel=1e-5
    )
    assert (scores[1] > scores[0]).item() is longer_wins


def test_trie_scores_unique_first_tokens_from_the_prefix_alone():
    """Names whose first token no other name shares need no position of their own: one decoder call covers
    only the branching nodes below the root, for every row at once."""
    lm = BigramLM(6, torch.randn(6, 6, generator=torch.Generator().manual_seed(0)))
    bigram_scores(lm, [[1, 0], [2, 0], [3, 0]], 4)
    assert lm.calls == []  # every first token unique: the prefix's last logits are enough
    bigram_scores(lm, [[1, 0], [1, 2, 0], [1, 3, 5, 0], [1, 3, 0], [4, 0]], 5)
    assert lm.calls == [(2, 2)]  # nodes (1,) and (1, 3): one call, paths padded to 2 tokens


def test_trie_refuses_two_styles_with_the_same_tokens():
    with pytest.raises(ValueError, match="same tokens"):
        NameTrie([[1, 0], [2, 0], [1, 0]])


# ---- the probe on the tiny model ---------------------------------------------------------------------------


@pytest.mark.parametrize("gating", ["film", "style_prefix", "adapter"])
def test_probe_equals_decoding_restricted_to_the_names_on_a_pass_of_its_own(gating):
    """The probe's log P(name) on the shared prefix cache equals scoring each name with full forward passes
    of the probe prompt plus the name's tokens, restricted at each branching point to the names' tokens,
    with the control tokens where the kind puts them (style_prefix: inside OPT, names' positions included).
    Gates are opened first: at init they hide the control tokens."""
    model = build_tiny(
        style_names=["Ukiyo_e", "Pop_Art", "Pop_Art_Revival", "cubism"], gating={"type": gating}
    )
    model.style_vocabulary.use_forms(model.opt_tokenizer, ["Ukiyo-e", "Pop Art", "Pop Art Revival", "cubism"])
    with torch.no_grad():
        for name, parameter in model.kv_modulation.named_parameters():
            if name == "alpha" or name.startswith("gate"):
                parameter.fill_(0.7)
    model.eval()
    samples = artquest_batch(3)
    with torch.no_grad():
        scores = model({**samples, "style_probe_rows": [True, False, True]})["probe_name_log_probs"]
        assert scores[1].tolist() == [0.0] * 4  # not probed
        sequences = [ids + [model.eos_token_id] for ids in model.style_vocabulary.form_ids]
        trie = NameTrie(sequences)
        assert len(trie.deep_nodes()) >= 1  # " Pop Art" and " Pop Art Revival" share tokens and branch
        frozen = model.frozen_features(samples["image"])
        probe_ids = torch.tensor([model.style_probe.prompt_ids])
        for row in (0, 2):
            one = {k: v[row : row + 1] for k, v in frozen.items()}
            prefix, _ = model.encode_image(one, probe_ids, torch.ones_like(probe_ids))
            for name, seq in enumerate(sequences):
                expected = 0.0
                for depth in range(len(seq)):
                    path = tuple(seq[:depth])
                    if path not in trie.nodes:
                        continue
                    text = torch.tensor([model.style_probe.prompt_ids + list(path)])
                    embeds = torch.cat([prefix, model.opt_model.get_input_embeddings()(text)], 1)
                    in_opt = model.conditioned_on_style(
                        "opt", one["style_features"], probe_ids, torch.ones_like(probe_ids)
                    )
                    with in_opt:
                        logits = model.opt_model(inputs_embeds=embeds, return_dict=True).logits[0, -1]
                    children = trie.children[trie.nodes.index(path)]
                    restricted = torch.log_softmax(logits[children], -1)
                    expected += restricted[children.index(seq[depth])].item()
                assert scores[row, name].item() == pytest.approx(expected, abs=1e-4)
        assert torch.logsumexp(scores[[0, 2]], -1).tolist() == pytest.approx([0.0, 0.0], abs=1e-5)


def test_probe_reads_its_own_prompt_not_the_rows_question():
    """Rows asking different ArtQuest questions of the same image get the same probe scores."""
    model = build_tiny()
    model.eval()
    samples = artquest_batch(2)
    samples["image"] = samples["image"][:1].repeat(2, 1, 1, 1)
    with torch.no_grad():
        scores = model({**samples, "style_probe_rows": [True, True]})["probe_name_log_probs"]
    assert torch.allclose(scores[0], scores[1], atol=1e-5)


def test_probe_prompt_is_configurable_and_checked():
    model = build_tiny(style_probe={"prompt": "Question: Which movement? Answer:"})
    assert model.style_probe.prompt_ids == model.opt_tokenizer("Question: Which movement? Answer:").input_ids
    with pytest.raises(ValueError, match="style_probe.prompt"):
        build_tiny(style_probe={"prompt": "Question: {} Answer:"})


def test_probe_rows_draw_each_labelled_row_with_the_share_by_its_id():
    """Each labelled row is probed with chance `share` by a hash of (draw, its id): the same rows whatever
    the batch's order or split (so N processes probe what one does), another subset in another epoch, the
    share on average at any batch size (no "at least one" per batch), a cap keeping the lowest draws."""
    style_ids = [2, -1, 0, 1] * 500  # three labelled rows in four, whatever their questions
    keys = [f"train-{i}" for i in range(len(style_ids))]
    rows = probe_rows(style_ids, 0.25, None, keys, draw="7|0")
    labelled = [i for i, s in enumerate(style_ids) if s >= 0]
    assert not any(rows[i] for i in range(len(rows)) if style_ids[i] < 0)
    assert sum(rows) / len(labelled) == pytest.approx(0.25, abs=0.03)
    halves = probe_rows(style_ids[:1000], 0.25, None, keys[:1000], "7|0") + probe_rows(
        style_ids[1000:], 0.25, None, keys[1000:], "7|0"
    )
    assert halves == rows  # a row's draw does not depend on the rest of its batch
    order = list(reversed(range(len(rows))))
    shuffled = probe_rows([style_ids[i] for i in order], 0.25, None, [keys[i] for i in order], "7|0")
    assert shuffled == [rows[i] for i in order]
    other_epoch = probe_rows(style_ids, 0.25, None, keys, draw="7|1")
    assert other_epoch != rows and sum(other_epoch) / len(labelled) == pytest.approx(0.25, abs=0.03)
    small = [sum(probe_rows([0, 0], 0.25, None, [f"r{e}-{i}" for i in range(2)], "0|0")) for e in range(400)]
    assert 0.25 * 2 * 0.8 < sum(small) / len(small) < 0.25 * 2 * 1.2  # a batch of 2: 0.5 rows per batch
    assert min(small) == 0
    assert probe_rows(style_ids, 1.0, None, keys, "7|0") == [s >= 0 for s in style_ids]
    capped = probe_rows(style_ids[:8], 1.0, 2, keys[:8], "7|0")
    assert sum(capped) == 2
    assert probe_rows(style_ids[:8], 0.5, None, None) is not None  # no ids: torch's generator draws


def test_training_probes_a_share_of_the_rows_and_evaluation_every_labelled_row():
    model = build_tiny()
    task = StyleCaptioningTask(style_name_weight=1.0, style_probe_share=0.3)
    model.train()
    samples = {**artquest_batch(), "question_id": ["q0", "q1", "q2", "q3"]}
    drawn = [
        task.per_sample_losses(model, {**samples, "epoch": epoch})["probe_rows"].tolist()
        for epoch in range(8)
    ]
    assert all(not rows[3] for rows in drawn)  # unlabelled: never
    assert len({tuple(rows) for rows in drawn}) > 1  # another subset from epoch to epoch
    assert drawn[0] == task.per_sample_losses(model, {**samples, "epoch": 0})["probe_rows"].tolist()
    model.eval()
    with torch.no_grad():
        parts = task.per_sample_losses(model, artquest_batch())
    assert parts["probe_rows"].tolist() == [True, True, True, False]  # every labelled row, no style question
    assert (parts["probe_prediction"][:3] >= 0).all() and parts["probe_prediction"][3] == -1
    assert parts["style_kl"][3] == 0 and parts["style_name_loss"][3] == 0
    with pytest.raises(ValueError, match="style_probe_share"):
        StyleCaptioningTask(style_probe_share=0.0)


def label_ranks(model, task, samples):
    model.eval()
    with torch.no_grad():
        out = model({**samples, "style_probe_rows": [s != "" for s in samples["style"]]})
    ids = model.style_ids(samples, out["style_ids"].device)
    scores = out["probe_name_log_probs"]
    labelled = ids >= 0
    label_scores = scores[labelled].gather(1, ids[labelled, None])
    return (scores[labelled] > label_scores).sum(1), label_scores.squeeze(1)


def test_naming_loss_raises_the_labels_rank_in_the_probe():
    """A few steps of the naming loss alone (no LM term) make the probe put each row's label first."""
    model = build_tiny()
    task = StyleCaptioningTask(lm_weight=0.0, style_name_weight=1.0, style_probe_share=1.0)
    samples = artquest_batch()
    ranks_before, scores_before = label_ranks(model, task, samples)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    model.train()
    for _ in range(15):
        loss = task.train_step(model, samples)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    ranks_after, scores_after = label_ranks(model, task, samples)
    assert ranks_before.sum() > 0  # the random model does not already name every label first
    assert ranks_after.tolist() == [0, 0, 0]
    assert (scores_after > scores_before).all()


def kl_gradients(teacher, detach):
    model = build_tiny()
    model.train()
    task = StyleCaptioningTask(
        lm_weight=0.0,
        style_kl_weight=1.0,
        style_kl_teacher=teacher,
        style_kl_detach=detach,
        style_probe_share=1.0,
    )
    task.train_step(model, artquest_batch()).backward()
    params = dict(model.named_parameters())

    def moved(name):
        grad = params[name].grad
        return grad is not None and grad.abs().sum().item() > 0

    probe_side = moved("query_tokens") and moved("opt_proj.weight")
    probe_side = probe_side and any(
        p.grad is not None and p.grad.abs().sum() > 0 for p in model.kv_modulation.parameters()
    )
    return probe_side, moved("style_head.weight")


@pytest.mark.parametrize(
    "teacher, detach, probe_side, image_side",
    [
        ("image", True, True, False),  # the style head teaches: only the probe's path learns
        ("probe", True, False, True),  # the probe teaches: only the style head learns
        ("image", False, True, True),  # no detach: both sides move
    ],
)
def test_detach_setting_changes_which_parameters_get_kl_gradients(teacher, detach, probe_side, image_side):
    assert kl_gradients(teacher, detach) == (probe_side, image_side)
