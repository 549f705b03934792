"""Tiny GPT-2 models over-fitted on a few texts, for attack tests whose answer is known."""

import torch

from piimem.models import init_tiny_gpt2, train_tokenizer


def overfit_tiny_gpt2(texts: list[str], tokenizer_texts: list[str], *, vocab_size: int = 400, steps: int = 200,
                      n_embd: int = 64, n_positions: int = 64, seed: int = 1, max_loss: float = 0.2):
    """(tokenizer, model): a tokenizer trained on `tokenizer_texts`, a 2-layer GPT-2 trained to repeat `texts`
    (each with EOS, full-batch AdamW); asserts that the final loss is below `max_loss`."""
    tok = train_tokenizer(tokenizer_texts, vocab_size)
    model = init_tiny_gpt2(tok, n_layer=2, n_embd=n_embd, n_head=2, n_positions=n_positions, seed=seed)
    docs = [tok(s + tok.eos_token)["input_ids"] for s in texts]
    width = max(map(len, docs))
    ids = torch.full((len(docs), width), tok.pad_token_id)
    mask = torch.zeros_like(ids)
    for i, seq in enumerate(docs):
        ids[i, : len(seq)] = torch.tensor(seq)
        mask[i, : len(seq)] = 1
    labels = ids.masked_fill(mask == 0, -100)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
        model.train()
        for _ in range(steps):
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
    model.eval()
    assert loss.item() < max_loss, f"the tiny model did not over-fit (loss {loss.item():.3f})"
    return tok, model
