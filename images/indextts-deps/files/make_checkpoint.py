"""Write an IndexTTS2 checkpoint folder with random weights, under the official file names,
and the Hugging Face cache its constructor reads (hf_cache/ inside it), so that the
unmodified `IndexTTS2(cfg_path, model_dir)` and `infer()` run with no download.

    python make_checkpoint.py OUT [--full]

The default is a reduced model: the official config with fewer layers and smaller widths
wherever IndexTTS2's code takes them from the config; where the code hard-codes a size
(the GPT's 1280-wide latent read by s2mel's gpt_layer, the 1024-wide semantic features,
w2v-BERT's 17th hidden state, CAMPPlus) it is kept. `--full` writes the official sizes
(~5 GB: GPT 24 layers x 1280, s2mel DiT 13 x 512, BigVGAN 1536 channels, w2v-BERT 24 x
1024) for timing the real model's CPU inference. Nothing here is a trained model: the
speech is noise-like, but every stage of the real code runs on it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch

REVISION = "0" * 40  # the snapshot name in the offline Hugging Face cache

CONFIG = {
    "dataset": {"bpe_model": "bpe.model", "sample_rate": 24000, "squeeze": False,
                "mel": {"sample_rate": 24000, "n_fft": 2048, "hop_length": 256, "win_length": 2048,
                        "n_mels": 1024, "mel_fmin": 0, "normalize": False}},
    "gpt": {"model_dim": 1280, "max_mel_tokens": 1815, "max_text_tokens": 600, "heads": 20,
            "use_mel_codes_as_input": True, "mel_length_compression": 1024, "layers": 24,
            "number_text_tokens": 12000, "number_mel_codes": 8194, "start_mel_token": 8192,
            "stop_mel_token": 8193, "start_text_token": 0, "stop_text_token": 1,
            "train_solo_embeddings": False, "condition_type": "conformer_perceiver",
            "condition_module": {"output_size": 512, "linear_units": 2048, "attention_heads": 8,
                                 "num_blocks": 6, "input_layer": "conv2d2", "perceiver_mult": 2},
            "emo_condition_module": {"output_size": 512, "linear_units": 1024, "attention_heads": 4,
                                     "num_blocks": 4, "input_layer": "conv2d2", "perceiver_mult": 2}},
    "semantic_codec": {"codebook_size": 8192, "hidden_size": 1024, "codebook_dim": 8,
                       "vocos_dim": 384, "vocos_intermediate_dim": 2048, "vocos_num_layers": 12},
    "s2mel": {
        "preprocess_params": {"sr": 22050, "spect_params": {
            "n_fft": 1024, "win_length": 1024, "hop_length": 256, "n_mels": 80, "fmin": 0,
            "fmax": "None"}},
        "dit_type": "DiT", "reg_loss_type": "l1", "style_encoder": {"dim": 192},
        "length_regulator": {"channels": 512, "is_discrete": False, "in_channels": 1024,
                             "content_codebook_size": 2048, "sampling_ratios": [1, 1, 1, 1],
                             "vector_quantize": False, "n_codebooks": 1, "quantizer_dropout": 0.0,
                             "f0_condition": False, "n_f0_bins": 512},
        "DiT": {"hidden_dim": 512, "num_heads": 8, "depth": 13, "class_dropout_prob": 0.1,
                "block_size": 8192, "in_channels": 80, "style_condition": True,
                "final_layer_type": "wavenet", "target": "mel", "content_dim": 512,
                "content_codebook_size": 1024, "content_type": "discrete", "f0_condition": False,
                "n_f0_bins": 512, "content_codebooks": 1, "is_causal": False,
                "long_skip_connection": True, "zero_prompt_speech_token": False,
                "time_as_token": False, "style_as_token": False, "uvit_skip_connection": True,
                "add_resblock_in_transformer": False},
        "wavenet": {"hidden_dim": 512, "num_layers": 8, "kernel_size": 5, "dilation_rate": 1,
                    "p_dropout": 0.2, "style_condition": True}},
    "gpt_checkpoint": "gpt.pth", "w2v_stat": "wav2vec2bert_stats.pt", "s2mel_checkpoint": "s2mel.pth",
    "emo_matrix": "feat2.pt", "spk_matrix": "feat1.pt", "emo_num": [3, 17, 2, 8, 4, 5, 10, 24],
    "qwen_emo_path": "qwen0.6bemo4-merge/",
    "vocoder": {"type": "bigvgan", "name": "nvidia/bigvgan_v2_22khz_80band_256x"},
    "version": 2.0,
}
BIGVGAN = {  # nvidia/bigvgan_v2_22khz_80band_256x's generator hyperparameters
    "resblock": "1", "upsample_rates": [4, 4, 2, 2, 2, 2], "upsample_kernel_sizes": [8, 8, 4, 4, 4, 4],
    "upsample_initial_channel": 1536, "resblock_kernel_sizes": [3, 7, 11],
    "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5], [1, 3, 5]], "use_tanh_at_final": False,
    "use_bias_at_final": False, "activation": "snakebeta", "snake_logscale": True,
    "num_mels": 80, "num_freq": 1025, "n_fft": 1024, "hop_size": 256, "win_size": 1024,
    "sampling_rate": 22050, "fmin": 0, "fmax": None, "fmax_for_loss": None,
}
W2V_LAYERS = 24


def reduce(config: dict, bigvgan: dict) -> int:
    """Shrink what the config controls; return the w2v-BERT depth (>= 17: its 17th hidden
    state is the semantic feature)."""
    gpt = config["gpt"]
    gpt.update(layers=1, max_mel_tokens=120, max_text_tokens=120, number_text_tokens=256)
    for module in ("condition_module", "emo_condition_module"):
        gpt[module].update(output_size=64, linear_units=64, attention_heads=2, num_blocks=1)
    config["semantic_codec"].update(vocos_dim=32, vocos_intermediate_dim=64, vocos_num_layers=1)
    s2mel = config["s2mel"]
    s2mel["length_regulator"]["channels"] = 64
    s2mel["DiT"].update(hidden_dim=64, num_heads=2, depth=2, content_dim=64)
    s2mel["wavenet"].update(hidden_dim=64, num_layers=2)
    bigvgan.update(upsample_initial_channel=128, resblock_kernel_sizes=[3],
                   resblock_dilation_sizes=[[1, 3, 5]])
    return 17


def write_hf(cache: Path, repo: str, files: dict[str, bytes | Path]) -> None:
    """One repository of an offline Hugging Face cache: refs/main -> snapshots/<rev>/."""
    root = cache / ("models--" + repo.replace("/", "--"))
    (root / "refs").mkdir(parents=True, exist_ok=True)
    (root / "refs" / "main").write_text(REVISION)
    snapshot = root / "snapshots" / REVISION
    for name, content in files.items():
        path = snapshot / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, Path):
            content.replace(path)
        else:
            path.write_bytes(content)


def bpe_model(out: Path, vocab: int) -> None:
    import sentencepiece as spm

    corpus = out / "bpe-corpus.txt"
    text = ("basefactory builds heavy wheels once and ships layered images so that services "
            "start from a tested base the quick brown fox jumps over the lazy dog speech "
            "synthesis runs on every platform with the same torch")
    words = text.split()
    corpus.write_text("\n".join(" ".join(words[i:] + words[:i]).upper() for i in range(len(words))))
    spm.SentencePieceTrainer.train(input=str(corpus), model_prefix=str(out / "bpe"), vocab_size=vocab,
                                   model_type="bpe", character_coverage=1.0, bos_id=0, eos_id=1,
                                   unk_id=2, pad_id=-1, hard_vocab_limit=False, minloglevel=2)
    corpus.unlink()
    (out / "bpe.vocab").unlink()


def qwen(folder: Path) -> None:
    """A tiny Qwen-architecture causal LM and tokenizer (the emotion model's folder)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    vocab = {t: i for i, t in enumerate(["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
                                       + [chr(c) for c in range(32, 127)])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<|endoftext|>"))
    tok.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>",
                                   pad_token="<|endoftext|>")
    fast.chat_template = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}"
                          "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>"
                          "assistant\n{% endif %}")
    fast.save_pretrained(folder)
    config = Qwen2Config(vocab_size=len(vocab), hidden_size=32, intermediate_size=64,
                         num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                         max_position_embeddings=256, tie_word_embeddings=True)
    Qwen2ForCausalLM(config).save_pretrained(folder, safe_serialization=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--full", action="store_true", help="the official sizes")
    args = parser.parse_args(argv)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    config, bigvgan_h = json.loads(json.dumps(CONFIG)), dict(BIGVGAN)
    w2v_layers = W2V_LAYERS if args.full else reduce(config, bigvgan_h)

    from omegaconf import OmegaConf
    OmegaConf.save(OmegaConf.create(config), out / "config.yaml")
    cfg = OmegaConf.load(out / "config.yaml")

    from indextts.gpt.model_v2 import UnifiedVoice
    torch.save(UnifiedVoice(**cfg.gpt).state_dict(), out / "gpt.pth")

    from indextts.s2mel.modules.commons import MyModel
    s2mel = MyModel(cfg.s2mel, use_gpt_latent=True)
    torch.save({"net": {k: m.state_dict() for k, m in s2mel.models.items()}}, out / "s2mel.pth")
    del s2mel

    bpe_model(out, cfg.gpt.number_text_tokens if not args.full else 12000)
    torch.save({"mean": torch.zeros(1024), "var": torch.ones(1024)}, out / "wav2vec2bert_stats.pt")
    rows = sum(cfg.emo_num)
    torch.save(torch.randn(rows, 192), out / "feat1.pt")  # speaker styles (CAMPPlus, 192)
    torch.save(torch.randn(rows, 1280), out / "feat2.pt")  # emotion vectors (GPT width)
    qwen(out / cfg.qwen_emo_path.strip().rstrip("/"))

    cache = out / "hf_cache"
    from transformers import SeamlessM4TFeatureExtractor, Wav2Vec2BertConfig, Wav2Vec2BertModel
    w2v = out / ".w2v"
    SeamlessM4TFeatureExtractor(feature_size=80, num_mel_bins=80, sampling_rate=16000,
                                stride=2, padding_value=1.0).save_pretrained(w2v)
    w2v_config = Wav2Vec2BertConfig(hidden_size=1024, num_hidden_layers=w2v_layers,
                                    num_attention_heads=16, intermediate_size=4096 if args.full else 64,
                                    feature_projection_input_dim=160, add_adapter=False,
                                    conv_depthwise_kernel_size=31 if args.full else 3)
    Wav2Vec2BertModel(w2v_config).save_pretrained(w2v, safe_serialization=True)
    write_hf(cache, "facebook/w2v-bert-2.0", {p.name: p for p in w2v.iterdir()})
    w2v.rmdir()

    import safetensors.torch
    from indextts.utils.maskgct_utils import build_semantic_codec
    codec = out / ".codec.safetensors"
    safetensors.torch.save_model(build_semantic_codec(cfg.semantic_codec), str(codec))
    write_hf(cache, "amphion/MaskGCT", {"semantic_codec/model.safetensors": codec})

    from indextts.s2mel.modules.campplus.DTDNN import CAMPPlus
    campplus = out / ".campplus.bin"
    torch.save(CAMPPlus(feat_dim=80, embedding_size=192).state_dict(), campplus)
    write_hf(cache, "funasr/campplus", {"campplus_cn_common.bin": campplus})

    from indextts.s2mel.modules.bigvgan import bigvgan
    from indextts.s2mel.modules.bigvgan.env import AttrDict
    generator = out / ".bigvgan.pt"
    torch.save({"generator": bigvgan.BigVGAN(AttrDict(bigvgan_h)).state_dict()}, generator)
    write_hf(cache, "nvidia/bigvgan_v2_22khz_80band_256x",
             {"config.json": json.dumps(bigvgan_h).encode(), "bigvgan_generator.pt": generator})

    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"{'official-size' if args.full else 'reduced'} IndexTTS2 checkpoint with random weights:"
          f" {out} ({size / 1e6:.0f} MB)")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
