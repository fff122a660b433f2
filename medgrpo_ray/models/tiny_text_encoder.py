"""A tiny random BERT sentence encoder built offline, standing in for all-MiniLM-L6-v2 in tests.

The WordPiece tokenizer is trained with `tokenizers` on a built-in medical word list (its deterministic part is
kept, see `_train_tokenizer`); the weights are random from `seed`. Similarities are meaningless, but every code
path that loads and runs a real sentence encoder (AutoTokenizer, AutoModel, pooling, batching) runs on it.
"""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

FORMAT_VERSION = 1
_MARKER = "tiny_text_encoder.json"
_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
_WORDS = """
grasper hook clipper scissors irrigator bipolar forceps knife needle driver suture trocar specimen bag clip
gallbladder cystic duct artery liver plate hepatocystic triangle calot mucosa submucosa flap tissue vessel
peritoneum omentum fundus serosa fat adhesion bleeding smoke fluid skin vein arm hand nurse patient surgeon
retract retracts retracting grasp grasps grasping dissect dissects dissection cut cuts cutting clip clips
clipping coagulate coagulates coagulation irrigate irrigates aspirate lift lifts hold holds holding insert
inserts withdraw withdraws press presses tie ties tying suturing stitch incision closure hemostasis dressing
disinfect disinfects cotton swab tourniquet syringe catheter gloves wash hands check order sheet injection
preparation packaging cleaning extraction exposure counter traction field view camera upper lower left right
top bottom center medial lateral anterior posterior towards away steadily gently carefully continuously
the a an of in on at to from over during while with and then is are was being its their this that into
surgical laparoscopic robotic endoscopic nursing clinical procedure phase step action state instrument
anatomy structure region segment video frame seconds summary caption describe activity object box
""".split()


def _corpus() -> list[str]:
    words = sorted(set(_WORDS))
    # sentences from rotating windows give WordPiece realistic pair statistics; fixed order -> fixed vocabulary
    return [" ".join(words[i : i + 12]) for i in range(0, len(words), 3)] + words


def _train_tokenizer(out_dir: Path) -> int:
    """Train WordPiece on the word list, keep the deterministic part of its vocabulary, save an HF tokenizer.

    The trainer breaks frequency ties in hash order, so its intermediate subwords differ from run to run; its
    alphabet (`x`, `##x`) and its whole words do not. The vocabulary kept is those, in sorted order.
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    normalizer, pre_tokenizer = normalizers.BertNormalizer(lowercase=True), pre_tokenizers.BertPreTokenizer()
    trained = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    trained.normalizer, trained.pre_tokenizer = normalizer, pre_tokenizer
    alphabet = list("abcdefghijklmnopqrstuvwxyz0123456789.,:;-/()%")
    trainer = trainers.WordPieceTrainer(vocab_size=4096, special_tokens=_SPECIALS, initial_alphabet=alphabet, show_progress=False)
    trained.train_from_iterator(_corpus(), trainer)
    words = {w for line in _corpus() for w, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(line))}
    kept = {t for t in trained.get_vocab() if len(t) == 1 or (t.startswith("##") and len(t) == 3) or t in words}
    kept = sorted((kept | set(alphabet) | {f"##{c}" for c in alphabet}) - set(_SPECIALS))
    vocab = {t: i for i, t in enumerate(_SPECIALS + kept)}

    tok = Tokenizer(models.WordPiece(vocab=vocab, unk_token="[UNK]"))
    tok.normalizer, tok.pre_tokenizer, tok.decoder = normalizer, pre_tokenizer, decoders.WordPiece()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]",
        mask_token="[MASK]", model_max_length=128,
    )
    fast.save_pretrained(out_dir)
    return len(vocab)


def build_tiny_text_encoder(out_dir: str | Path, seed: int = 0) -> Path:
    """Build (or reuse, if already built with `seed`) a tiny BERT encoder + tokenizer in `out_dir`; returns it."""
    import torch
    from transformers import BertConfig, BertModel

    out = Path(out_dir)
    marker = out / _MARKER
    if marker.exists() and json.loads(marker.read_text()) == {"seed": seed, "format": FORMAT_VERSION}:
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tiny_text_encoder-", dir=out.parent))
    try:
        vocab_size = _train_tokenizer(tmp)
        config = BertConfig(
            vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
            max_position_embeddings=128, pad_token_id=0,
        )
        generator_state = torch.random.get_rng_state()
        torch.manual_seed(seed)
        try:
            model = BertModel(config).eval()
        finally:
            torch.random.set_rng_state(generator_state)
        model.save_pretrained(tmp)
        (tmp / _MARKER).write_text(json.dumps({"seed": seed, "format": FORMAT_VERSION}))  # written last: complete
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out
