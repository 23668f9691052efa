"""Weights in other formats: Hugging Face import and export, CTranslate2, torch.nn.Transformer."""
