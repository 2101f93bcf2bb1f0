"""PromptMapper: (style feature, prompt embeddings) -> a few control tokens.

Learned queries, shifted by the style feature, cross-attend over [style; prompt tokens], so the
control tokens carry both what the image's style is and what the question asks about it.
"""

import torch
import torch.nn as nn


class PromptMapper(nn.Module):
    def __init__(self, style_dim, prompt_dim, hidden_size=256, num_tokens=4, num_heads=4, dropout=0.1):
        super().__init__()
        self.num_tokens = num_tokens
        self.hidden_size = hidden_size
        self.style_proj = nn.Linear(style_dim, hidden_size)
        self.prompt_proj = nn.Linear(prompt_dim, hidden_size)
        self.queries = nn.Parameter(torch.randn(num_tokens, hidden_size) * 0.02)
        self.norm_query = nn.LayerNorm(hidden_size)
        self.norm_memory = nn.LayerNorm(hidden_size)
        self.attention = nn.MultiheadAttention(hidden_size, num_heads, dropout=dropout, batch_first=True)
        self.norm_ffn = nn.LayerNorm(hidden_size)
        self.ffn = nn.Sequential(
            nn.Linear(hidden_size, 4 * hidden_size),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(4 * hidden_size, hidden_size),
        )

    def forward(self, style_feature, prompt_embeds, prompt_mask):
        """style_feature (B, style_dim), prompt_embeds (B, T, prompt_dim), prompt_mask (B, T) 1 = token
        -> control tokens (B, num_tokens, hidden_size)."""
        style = self.style_proj(style_feature).unsqueeze(1)  # (B, 1, H)
        memory = self.norm_memory(torch.cat([style, self.prompt_proj(prompt_embeds.to(style.dtype))], dim=1))
        ignore = torch.cat([prompt_mask.new_ones(prompt_mask.shape[0], 1), prompt_mask], dim=1) == 0
        tokens = self.queries.unsqueeze(0) + style  # (B, N, H)
        attended, _ = self.attention(
            self.norm_query(tokens), memory, memory, key_padding_mask=ignore, need_weights=False
        )
        tokens = tokens + attended
        return tokens + self.ffn(self.norm_ffn(tokens))
