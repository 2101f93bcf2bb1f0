"""The style probe: for an image with a style label, whatever its row asks, how likely the model is to answer
each style's name to one fixed style question ("Question: What style is this painting? Answer:",
model.style_probe.prompt).

Real ArtQuest asks about artist, school, timeframe, type, technique and title, never about style, so the style
terms cannot read the row's own question or answer. The probe is a second prompt on the same image: its
control tokens come from the probe prompt (the PromptMapper reads the probe's OPT embeddings; with
`style_prefix` they act inside OPT, on the prefix and the names' positions), it reuses the
row's frozen ViT and style CNN features (no second image encoding), and OPT scores each style's form on the
probe prefix's key/value cache (NameTrie below: a trie, so the prefix runs once per row and only names
sharing a first token need more positions). The probed rows are extra rows of the forward's one Q-Former and
one OPT pass (Blip2OPTGated.forward), whose key/value cache holds that prefix.

The names are scored exactly and cheaply on a trie of their tokens.

Each style's answer is " <form>" followed by the end token (the "\\n" that ends every training answer). With
the end token a name is never a prefix of another ("Baroque" ends where "Baroque Revival" goes on), so the
names are the leaves of a trie. The probe's distribution over names is that of decoding restricted to the
trie: at each node with several children, a softmax over those children's logits; a node with one child
adds nothing (its probability is 1 under the restriction). So

    log P(name) = sum over the branching nodes on its path of log softmax_children(logits at that node)

which sums to 1 over the names, needs no length normalisation, and does not favour a short form over a longer
one it is a prefix of: the end token competes with the continuation at the node where they part.

Cost: the root's logits are the prefix's last position's, so a name whose first token no other name shares is
scored from them alone. Only branching nodes below the root need positions of their own: one language-model
call over every such node's path at once, on the prefix's key/value cache (repeated, not recomputed).
"""

import torch


class NameTrie:
    """The names' token sequences (each ending with the end token) as a trie of its branching nodes.

    nodes: the token path (tuple) to each branching node, the root () first where it branches;
    children: per node, its child tokens; choices: per name, the (node, child position) pairs on its path;
    flat: per name, the positions of those pairs in the nodes' concatenated children (what score() sums).
    """

    def __init__(self, sequences):
        sequences = [tuple(int(t) for t in s) for s in sequences]
        if not sequences or any(not s for s in sequences):
            raise ValueError("every style name needs at least one token")
        seen = {}
        for index, seq in enumerate(sequences):
            if seq in seen:
                raise ValueError(f"styles {seen[seq]} and {index} have the same tokens {list(seq)}")
            seen[seq] = index
        children = {}
        for seq in sequences:
            for depth in range(len(seq)):
                kids = children.setdefault(seq[:depth], [])
                if seq[depth] not in kids:
                    kids.append(seq[depth])
        self.nodes = sorted((p for p, kids in children.items() if len(kids) > 1), key=lambda p: (len(p), p))
        self.children = [children[p] for p in self.nodes]
        index = {p: i for i, p in enumerate(self.nodes)}
        self.choices = [
            [(index[seq[:d]], children[seq[:d]].index(seq[d])) for d in range(len(seq)) if seq[:d] in index]
            for seq in sequences
        ]
        offsets = [0]
        for kids in self.children:
            offsets.append(offsets[-1] + len(kids))
        self.width = offsets[-1]
        self.flat = [[offsets[node] + child for node, child in path] for path in self.choices]

    @property
    def root_branches(self):
        return bool(self.nodes) and self.nodes[0] == ()

    def deep_nodes(self):
        """Indices of the branching nodes below the root: the only ones that need positions of their own."""
        return [i for i, p in enumerate(self.nodes) if p]

    def selection(self, device):
        """(S, width) 0/1 matrix: name s sums the child log-probabilities at the positions flat[s]."""
        matrix = torch.zeros(len(self.flat), self.width, device=device)
        for name, positions in enumerate(self.flat):
            matrix[name, positions] = 1.0
        return matrix


def _children_log_probs(lm_head, hidden, children):
    """hidden (N, D), children: a list of token ids -> (N, C) log-softmax over those tokens' logits: one
    vocabulary projection per row."""
    logits = lm_head(hidden).float()
    return torch.log_softmax(logits[:, torch.tensor(children, device=hidden.device)], -1)


def name_log_probs(decoder, lm_head, past_key_values, last_hidden, trie):
    """(R, S) log P(name s | prefix) for R rows that share one prefix length.

    past_key_values: per decoder layer (keys, values), each (R, H, T, D_head), of the prefix; last_hidden
    (R, D): its last position's hidden state (which predicts the first answer token); trie: a NameTrie.
    """
    rows, device = last_hidden.shape[0], last_hidden.device
    parts = [None] * len(trie.nodes)
    if trie.root_branches:
        parts[0] = _children_log_probs(lm_head, last_hidden, trie.children[0])
    deep = trie.deep_nodes()
    if deep:
        paths = [trie.nodes[i] for i in deep]
        longest = max(len(p) for p in paths)
        # right padding: positions after a path's last token cannot change its hidden state (causal attention)
        inputs = torch.tensor([list(p) + [p[-1]] * (longest - len(p)) for p in paths], device=device)
        group = len(deep)
        span = past_key_values[0][0].shape[2]
        repeated = tuple(tuple(t.repeat_interleave(group, 0) for t in layer) for layer in past_key_values)
        out = decoder(
            input_ids=inputs.repeat(rows, 1),
            attention_mask=torch.ones(rows * group, span + longest, dtype=torch.long, device=device),
            past_key_values=repeated,
            use_cache=False,
            return_dict=True,
        )
        last = torch.tensor([len(p) - 1 for p in paths], device=device).repeat(rows)
        hidden = out.last_hidden_state[torch.arange(rows * group, device=device), last].view(rows, group, -1)
        for k, node in enumerate(deep):
            parts[node] = _children_log_probs(lm_head, hidden[:, k], trie.children[node])
    if not parts:  # a single name: certain
        return last_hidden.new_zeros((rows, 1), dtype=torch.float32)
    return torch.cat(parts, -1) @ trie.selection(device).T


def scattered(values, rows, batch_size):
    """(R, S) values of `rows` (list of ints) -> (B, S), zero in the other rows."""
    out = values.new_zeros((batch_size, values.shape[1]))
    return out.index_copy(0, torch.tensor(rows, device=values.device), values)


class StyleProbe:
    """The probe prompt's token ids and the trie of the current style forms (rebuilt when they change)."""

    def __init__(self, tokenizer, prompt, end_token_id):
        if not prompt or "{}" in prompt:
            raise ValueError(
                f"model.style_probe.prompt is {prompt!r}: give the whole probe question, e.g. "
                "'Question: What style is this painting? Answer:' (it takes no {} placeholder)"
            )
        self.prompt = prompt
        self.prompt_ids = tokenizer(prompt).input_ids  # with BOS, as the row prompts
        self.end_token_id = end_token_id
        self._trie_key, self._trie = None, None

    def trie(self, form_token_ids):
        """The NameTrie of the styles' forms (lists of ids), each followed by the end token."""
        key = tuple(tuple(ids) for ids in form_token_ids)
        if key != self._trie_key:
            self._trie = NameTrie([list(ids) + [self.end_token_id] for ids in key])
            self._trie_key = key
        return self._trie

    def name_log_probs(self, model, past_key_values, last_hidden_state, first_row, num_query):
        """(R, S) fp32 log P(style s's form | image, probe prompt) for the probe rows of a pass of OPT.

        The probe rows are rows first_row.. of the pass (the forward's B + R rows): num_query query tokens,
        then the probe prompt, then padding. past_key_values: per decoder layer (keys, values), each
        (B + R, H, T, D_head); last_hidden_state (B + R, T, D). Only the prompt's positions are kept: causal
        attention means the padding after it changed none of them. The caller holds the probe rows'
        conditioning (style_prefix) and OPT's precision."""
        end = num_query + len(self.prompt_ids)
        past = tuple(tuple(t[first_row:, :, :end] for t in layer) for layer in past_key_values)
        trie = self.trie(model.style_vocabulary.form_ids)
        opt = model.opt_model
        return name_log_probs(
            opt.model.decoder, opt.lm_head, past, last_hidden_state[first_row:, end - 1], trie
        )
