"""Language modelling as a training task: one long text, cut into blocks, next-token loss."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from aiayn.config import RunConfig
from aiayn.data.text import read_text, text_lines
from aiayn.data.tokenizer import TextTokenizer
from aiayn.models.decoder_only import DecoderOnlyLM
from aiayn.prepare.dataset import IdArray, check_dataset, prepared_tokenizer, read_manifest
from aiayn.run.files import TOKENIZER
from aiayn.tasks import load_run, load_tokenizer, run_tokenizer, vocabulary
from aiayn.train.chunked import output_loss
from aiayn.train.loss import rdrop_kl


def encode_text(tok: TextTokenizer, text: str) -> Tensor:
    """A whole text as one id sequence, encoded line by line (newlines kept) for speed, as
    `aiayn prepare` encodes a file."""
    ids = [i for row in tok.encode(text_lines(text)) for i in row]
    return torch.tensor(ids, dtype=torch.long)


def take(ids: Tensor | IdArray, starts: Tensor, length: int) -> Tensor:
    """(len(starts), length): the ids from each start, as int64, from a tensor or the
    token stream of a prepared dataset."""
    if isinstance(ids, Tensor):
        return ids[starts[:, None] + torch.arange(length)]
    lengths = np.full(len(starts), length)
    return torch.from_numpy(ids.runs(starts.numpy(), lengths).reshape(len(starts), length))


def open_stream(
    folder: Path, cfg: RunConfig, run_dir: Path, resume: bool
) -> tuple[TextTokenizer, IdArray, IdArray]:
    """The tokenizer and the training and validation ids of a prepared text."""
    check_dataset(folder, read_manifest(folder, "language_model"), cfg.data)
    # a fine-tuning's tokenizer is its base's
    base = Path(cfg.train.init) if cfg.train.init and not resume else run_dir
    tok = prepared_tokenizer(folder, base, resume or bool(cfg.train.init))
    arrays = [IdArray(folder, f"{split}.ids.npy", tok.vocab_size) for split in ("train", "valid")]
    return tok, arrays[0], arrays[1]


# Validation reads at most this many tokens, in blocks spread evenly over the validation text:
# a held-out tail of a corpus of billions of tokens would take hours at every validation.
VALID_TOKENS = 1 << 20


class RandomBlocks(Sequence[Tensor]):
    """An epoch's batches of random block starts, each (rows,), made when asked for: a text of
    billions of tokens has millions of batches, too many to hold (the list of them took 1.4
    GB for 3 GB of text). The starts are those of one `torch.randint` over the whole epoch,
    drawn from one generator in chunks of CHUNK batches."""

    CHUNK = 4096

    def __init__(self, count: int, rows: int, high: int, seed: int) -> None:
        self.count, self.rows, self.high, self.seed = count, rows, high, seed
        self.generator: torch.Generator | None = None
        # the drawn batches first, first + 1, ...
        self.first, self.chunk = 0, torch.empty(0, rows, dtype=torch.long)

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self.count))]
        if not 0 <= index < self.count:
            raise IndexError(index)
        if self.generator is None or index < self.first:  # from the epoch's start again
            self.generator = torch.Generator().manual_seed(self.seed)
            self.first, self.chunk = 0, self.chunk[:0]
        while index >= self.first + len(self.chunk):
            self.first += len(self.chunk)
            n = min(self.CHUNK, self.count - self.first)
            self.chunk = torch.randint(0, self.high, (n, self.rows), generator=self.generator)
        return self.chunk[index - self.first]


def split_text(cfg: RunConfig) -> tuple[str, str]:
    """(training text, validation text): `data.valid_text`, or the tail of `data.train_text`."""
    d = cfg.data
    if not d.train_text:
        raise ValueError("data.train_text is unset; a language model needs a text file")
    text = read_text(d.train_text)
    if d.valid_text:
        return text, read_text(d.valid_text)
    cut = int(len(text) * (1 - d.valid_fraction))
    return text[:cut], text[cut:]


class LanguageModelTask:
    """Everything the trainer needs to know about next-token prediction."""

    monitor, higher_is_better = "val_loss", False

    def __init__(
        self, cfg: RunConfig, run_dir: Path, resume: bool, log: Callable[[str], None] = print
    ) -> None:
        d = cfg.data
        if d.prepared:
            self.tok, self.train, self.valid = open_stream(Path(d.prepared), cfg, run_dir, resume)
        else:
            train_text, valid_text = split_text(cfg)
            self.tok = run_tokenizer(cfg, run_dir, resume, text_lines(train_text))
            self.train, self.valid = (
                encode_text(self.tok, train_text),
                encode_text(self.tok, valid_text),
            )
        self.block = d.block_size
        for name, ids in (("training", self.train), ("validation", self.valid)):
            if len(ids) <= self.block:
                raise ValueError(
                    f"the {name} text has {len(ids)} tokens, fewer than one block of "
                    f"data.block_size={self.block} + 1"
                )
        log(
            f"{len(self.train):,} training and {len(self.valid):,} validation tokens, "
            f"vocabulary {self.tok.vocab_size:,} ({d.tokenizer})"
        )
        self.cfg = cfg.replace(
            "model", vocab_size=vocabulary(cfg, self.tok), pad_id=self.tok.pad_id
        )
        if self.cfg.model.max_len < self.block:
            raise ValueError(
                f"model.max_len={self.cfg.model.max_len} is shorter than the training blocks "
                f"(data.block_size={self.block})"
            )
        self.model = DecoderOnlyLM(self.cfg.model)

    def save_assets(self, run_dir: Path) -> None:
        self.tok.save(run_dir / TOKENIZER)

    @property
    def rows(self) -> int:
        """Blocks per batch: as many as fit in train.batch_tokens, at least one."""
        return max(self.cfg.train.batch_tokens // self.block, 1)

    def epoch_batches(self, epoch: int) -> RandomBlocks:
        """Random block starts, as many batches as it takes to see about every token once."""
        rows = self.rows
        count = max(len(self.train) // (rows * self.block), 1)
        seed = self.cfg.train.seed * 1_000_003 + epoch
        return RandomBlocks(count, rows, len(self.train) - self.block, seed)

    def loss(
        self, model: nn.Module, blocks: Tensor, device: torch.device, rdrop: float = 0.0
    ) -> tuple[Tensor, Tensor, int]:
        """(summed smoothed loss, summed NLL, scored tokens) of `blocks` (rows, block + 1) by
        `model`; `rdrop` is the weight of R-Drop's term (0: one pass)."""
        rows, passes = len(blocks), 2 if rdrop else 1
        # a padding target (a prepared text may hold the id) is neither scored nor counted;
        # counted here, before the copy to the device, so that no step waits for it
        scored = int((blocks[:, 1:] != self.tok.pad_id).sum()) * passes
        blocks = blocks.repeat(passes, 1).to(device, non_blocking=True)
        t = self.cfg.train
        loss, nll, logits = output_loss(
            lambda: model(blocks[:, :-1]),
            self.model.lm_head,
            blocks[:, 1:],
            t.label_smoothing,
            self.tok.pad_id,
            t.loss_chunk,
        )
        if rdrop:
            keep = blocks[:rows, 1:] != self.tok.pad_id
            loss = loss + rdrop * rdrop_kl(logits, keep)
        return loss, nll, scored

    def collate(self, starts: Tensor) -> Tensor:
        """(rows, block + 1): the ids of each block and the one after it."""
        return take(self.train, starts, self.block + 1)

    def train_loss(
        self, blocks: Tensor, device: torch.device, model: nn.Module
    ) -> tuple[Tensor, Tensor, int]:
        return self.loss(model, blocks, device, self.cfg.train.rdrop)

    @torch.no_grad()
    def validate(self, device: torch.device) -> dict[str, float]:
        """Mean NLL per token over the validation text, cut into consecutive blocks (at most
        VALID_TOKENS' worth, spread evenly over it)."""
        starts = torch.arange(0, len(self.valid) - self.block, self.block)
        most = max(VALID_TOKENS // self.block, 1)
        if len(starts) > most:
            starts = starts[torch.linspace(0, len(starts) - 1, most).long()]
        nll_sum, n = 0.0, 0
        for chunk in starts.split(self.rows * 4):
            blocks = take(self.valid, chunk, self.block + 1)
            _, nll, tokens = self.loss(self.model, blocks, device)
            nll_sum, n = nll_sum + float(nll), n + tokens
        return {"val_loss": nll_sum / max(n, 1)}


def load_language_model(
    run_dir: str | Path, weights: str | None = None, log: Callable[[str], None] = print
) -> tuple[DecoderOnlyLM, TextTokenizer]:
    cfg, model = load_run(run_dir, "decoder_only", weights, log)
    return model, load_tokenizer(Path(run_dir), TOKENIZER, cfg.model.vocab_size)
