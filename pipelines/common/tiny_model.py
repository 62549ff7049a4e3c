"""The builtin tiny model: a random Qwen2 causal LM with a locally trained byte-level BPE tokenizer.

Nothing reaches a model hub. The model is small enough for GRPO to run (and visibly learn) on a 2-core CPU:
hidden size 64, 2 layers, 4 heads, 2 KV heads, tied embeddings. Its weights are initialised with a large
``initializer_range`` (0.2): with the usual 0.02 the logits stay nearly uniform and the reward never moves
(measured on CPU). ``base_model_name: builtin:tiny`` resolves to a cached copy built on demand.

``builtin:tiny-vllm`` is the same model (vocabulary, tokenizer, chat template, layers) with a head size vLLM's CPU
attention accepts: it refuses head size 16 ("Unsupported CPU attention configuration: head_dim=16"), so this one
has hidden size 128, 2 heads of size 64, 1 KV head and an MLP of 256. The vLLM tests (``pytest -m vllm`` in
``.venv-vllm``) and the vLLM configs run on it; ``builtin:tiny`` keeps its shape, so the quickstart is unchanged.
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from pipelines.common.io import make_readable

logger = logging.getLogger(__name__)

BUILTIN_TINY = "builtin:tiny"
BUILTIN_TINY_VLLM = "builtin:tiny-vllm"
TINY_SEED = 0
# Bump when the recipe changes, so cached builds of an older recipe are not reused.
TINY_VERSION = "v2"


@dataclass(frozen=True)
class TinyShape:
    """The Qwen2 dimensions of one builtin model (everything else is shared)."""

    cache_prefix: str          # the cache folder's name starts with this
    hidden_size: int
    intermediate_size: int
    num_attention_heads: int
    num_key_value_heads: int


# head size = hidden_size / num_attention_heads: 16 for builtin:tiny, 64 for builtin:tiny-vllm
SHAPES: dict[str, TinyShape] = {
    BUILTIN_TINY: TinyShape("tiny", hidden_size=64, intermediate_size=128, num_attention_heads=4,
                            num_key_value_heads=2),
    BUILTIN_TINY_VLLM: TinyShape("tiny-vllm", hidden_size=128, intermediate_size=256, num_attention_heads=2,
                                 num_key_value_heads=1),
}

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

# ChatML: every message as <|im_start|>role\ncontent<|im_end|>\n, then an open assistant turn when asked. With
# ``tools`` (and for tool calls and tool results) it renders Qwen2.5's tool format, with a compact tools block
# (one `name(parameters): description` line per tool, not the whole JSON schema: the model has 512 positions):
# a system block listing the tools in <tools>, each call as <tool_call>{"name", "arguments"}</tool_call> in the
# assistant turn, each result as <tool_response> in a user turn. Without tools a conversation renders exactly as
# plain ChatML.
TINY_CHAT_TEMPLATE = (
    "{% if tools %}{{ '<|im_start|>system\n' }}"
    "{% if messages and messages[0]['role'] == 'system' %}{{ messages[0]['content'] + '\n\n' }}{% endif %}"
    "{{ '# Tools\n<tools>' }}"
    "{% for tool in tools %}{% set f = tool['function'] if tool.get('function') else tool %}"
    "{{ '\n' + f['name'] + '(' + (f.get('parameters', {}).get('properties', {}) | list | join(', ')) + '): ' + "
    "f.get('description', '') }}{% endfor %}"
    "{{ '\n</tools>\nCall one as <tool_call>\n{\"name\": ..., \"arguments\": {...}}\n</tool_call><|im_end|>\n' }}"
    "{% endif %}"
    "{% for message in messages %}"
    "{% if tools and loop.first and message['role'] == 'system' %}"
    "{% elif message['role'] == 'assistant' and message.get('tool_calls') %}"
    "{{ '<|im_start|>assistant\n' + (message['content'] or '') }}"
    "{% for call in message['tool_calls'] %}{% set f = call['function'] if call.get('function') else call %}"
    "{{ ('\n' if (message['content'] or not loop.first) else '') + '<tool_call>\n{\"name\": \"' + f['name'] + "
    "'\", \"arguments\": ' + (f['arguments'] if f['arguments'] is string else (f['arguments'] | tojson)) + "
    "'}\n</tool_call>' }}{% endfor %}{{ '<|im_end|>\n' }}"
    "{% elif message['role'] == 'tool' %}"
    "{{ '<|im_start|>user\n<tool_response>\n' + message['content'] + '\n</tool_response><|im_end|>\n' }}"
    "{% else %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
# How transformers' ``parse_response`` reads a completion of that template back into a message (content and
# tool calls); TRL needs it to find tool calls. Set on the tokenizer only when a run uses tools
# (pipelines.grpo.tools), so completions of runs without tools are decoded exactly as before.
TINY_RESPONSE_TEMPLATE = {
    "defaults": {"role": "assistant"},
    "start_anchor": "<|im_start|>assistant\n",
    "fields": {
        "tool_calls": {"open": "<tool_call>", "close_pattern": r"</tool_call>\s*", "repeats": True,
                       "content": "json", "transform": {"type": "function", "function": "{content}"}},
        "content": {"close_pattern": r"<\|im_end\|>\s*", "content": "text"},
    },
}

# Same pattern as transformers' Qwen2Tokenizer: AutoTokenizer rebuilds the pipeline from that class, so the
# BPE must be trained with the very same normalizer and pre-tokenizer to round-trip.
_PRETOKENIZE_REGEX = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"""
                      r"""\s*[\r\n]+|\s+(?!\S)|\s+""")

_CORPUS_LINES = [
    # ChatML scaffolding and roles
    "<|im_start|>system\nYou are a cheerful assistant.<|im_end|>\n",
    "<|im_start|>user\nTell me about the city.<|im_end|>\n<|im_start|>assistant\nJoy: the city is lovely.<|im_end|>\n",
    "system user assistant",
    # quickstart vocabulary
    "Joy: the city is lovely. Joy: the sea is lovely. Joy: a river is lovely.",
    "Tell me about the city. Describe the sea. Tell me about a river. What do you think of the forest?",
    "mountain sky garden flower tree bird sun moon star rain snow wind cloud morning evening night day",
    "happy glad cheerful bright warm kind good great nice wonderful beautiful lovely sad calm quiet",
    "the a an is are was were be of to in on at for with and or but not it this that you me I we they",
    "Tell Describe Explain Say Write Give Name What Why How Where When Who",
    # reasoning formats and arithmetic (countdown-style rewards)
    "<think> reasoning </think> <answer> 42 </answer>",
    "Using the numbers [3, 7, 25, 50], create an equation that equals 100. (50 - 25) * 4 + 3 = 103",
    "0 1 2 3 4 5 6 7 8 9 10 + - * / = ( ) [ ] , . : ; ! ? ' \"",
    "Answer: yes no true false correct incorrect Step 1 Step 2 Final answer",
    "The quick brown fox jumps over the lazy dog. THE QUICK BROWN FOX JUMPS OVER THE LAZY DOG.",
]


def _train_tokenizer(vocab_size: int = 400):
    """Train a byte-level BPE on the built-in corpus with Qwen2Tokenizer's normalizer and pre-tokenizer."""
    from tokenizers import Regex, Tokenizer, decoders, normalizers, pre_tokenizers
    from tokenizers.models import BPE
    from tokenizers.trainers import BpeTrainer

    tok = Tokenizer(BPE(unk_token=None, continuing_subword_prefix="", end_of_word_suffix="",
                        fuse_unk=False, byte_fallback=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(_PRETOKENIZE_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = BpeTrainer(vocab_size=vocab_size, min_frequency=1, special_tokens=SPECIAL_TOKENS,
                         initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    # Repeating the corpus makes whole words frequent enough to merge into single tokens.
    tok.train_from_iterator(_CORPUS_LINES * 4, trainer=trainer)
    return tok


def build_tiny_model(output_dir: str | Path, seed: int = TINY_SEED, name: str = BUILTIN_TINY) -> Path:
    """Build the builtin model ``name`` (``builtin:tiny`` or ``builtin:tiny-vllm``) and its tokenizer into
    ``output_dir`` (created); deterministic for a seed."""
    import torch
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    raw = _train_tokenizer()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=raw, eos_token="<|im_end|>", pad_token="<|endoftext|>", unk_token="<|endoftext|>",
        padding_side="left", chat_template=TINY_CHAT_TEMPLATE, model_max_length=512,
        additional_special_tokens=["<|im_start|>"],
    )
    eos_id = tokenizer.convert_tokens_to_ids("<|im_end|>")
    pad_id = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    shape = SHAPES[name]
    config = Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=shape.hidden_size, intermediate_size=shape.intermediate_size,
        num_hidden_layers=2, num_attention_heads=shape.num_attention_heads,
        num_key_value_heads=shape.num_key_value_heads, max_position_embeddings=512, tie_word_embeddings=True,
        initializer_range=0.2, rms_norm_eps=1e-6, bos_token_id=None, eos_token_id=eos_id, pad_token_id=pad_id,
    )
    # Seed a private generator state: building must not disturb (nor depend on) the caller's RNG.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen2ForCausalLM(config)
    model.generation_config.eos_token_id = eos_id
    model.generation_config.pad_token_id = pad_id
    model.generation_config.bos_token_id = None
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    _mark_tokenizer_class(out)
    logger.info("built %s (seed %d, vocab %d) in %s", name, seed, len(tokenizer), out)
    return out


def _mark_tokenizer_class(out: Path) -> None:
    """Name Qwen2Tokenizer in tokenizer_config.json, the class AutoTokenizer picks for a qwen2 model anyway."""
    import json

    path = out / "tokenizer_config.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    data["tokenizer_class"] = "Qwen2Tokenizer"
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def tiny_model_path(cache_root: str | Path = Path("outputs/.cache"), name: str = BUILTIN_TINY) -> Path:
    """Where the builtin model ``name`` is (or will be) cached; nothing is built."""
    return Path(cache_root) / f"{SHAPES[name].cache_prefix}-{TINY_VERSION}-seed{TINY_SEED}"


def resolve_model_name(name: str, cache_root: str | Path = Path("outputs/.cache")) -> str:
    """``builtin:tiny`` / ``builtin:tiny-vllm`` -> a cached build of that model (built on first use); anything
    else unchanged.

    Safe for concurrent callers: each builds into its own temp dir and renames it into place; a loser of the
    race discards its copy and uses the winner's (identical, the build being deterministic).
    """
    if name not in SHAPES:
        return name
    cache_root = Path(cache_root)
    target = tiny_model_path(cache_root, name)
    if (target / "config.json").exists() and (target / "tokenizer.json").exists():
        return str(target)
    cache_root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=cache_root, prefix=".tiny-build-"))
    try:
        build_tiny_model(tmp / "model", seed=TINY_SEED, name=name)
        make_readable(tmp / "model")   # mkdtemp and safetensors make 0700/0600
        try:
            os.rename(tmp / "model", target)
        except OSError:
            if not (target / "config.json").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return str(target)
