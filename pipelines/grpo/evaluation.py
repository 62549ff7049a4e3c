"""Held-out evaluation (as in AgileRL): generate for held-out prompts, score with the reward stack, log.

Logged keys: ``eval/reward_mean`` (combined reward before scaling), ``eval/rewards/<component>/mean``,
``eval/accuracy`` (fraction of completions whose combined reward reaches ``evaluation.max_reward``), and
``eval/completion_length``. Held-out rows are drawn before the training rows by the data layer, so they
are never trained on. Scores are not recorded into training metrics or the high-scoring export.

Generation uses the training engine when the backend has one (:func:`eval_engine`): Unsloth's vLLM
(``fast_generate`` with the current LoRA) or TRL's vLLM (weights synced to the current step, as training does);
HF ``generate`` otherwise. On a 0.5B model vLLM made 19.8x the new tokens/s of HF generate (STACK.md).
"""
from __future__ import annotations

import logging
import math
from typing import Any, Optional, Sequence

from pipelines.common.stops import cut_completions, cut_text_at_stop, stopping_generate
from pipelines.grpo.artifacts import EVAL_REWARD_KEY

log = logging.getLogger(__name__)


def summarize(results: Sequence[Any], max_reward: Optional[float], lengths: Sequence[int]) -> dict[str, float]:
    """Mean combined reward, per-component means and accuracy from the stack's ScoreResults."""
    out: dict[str, float] = {}
    combined = [r.combined for r in results if r.combined is not None and not math.isnan(r.combined)]
    if combined:
        out[EVAL_REWARD_KEY] = sum(combined) / len(combined)
    components: dict[str, list[float]] = {}
    for r in results:
        for name, value in r.rewards.items():
            if value is not None:
                components.setdefault(name, []).append(float(value))
    for name, values in components.items():
        out[f"eval/rewards/{name}/mean"] = sum(values) / len(values)
    if max_reward is not None and results:
        hits = sum(1 for r in results if r.combined is not None and r.combined >= max_reward - 1e-9)
        out["eval/accuracy"] = hits / len(results)
    if lengths:
        out["eval/completion_length"] = sum(lengths) / len(lengths)
    out["eval/completions"] = float(len(results))
    return out


HF, UNSLOTH_VLLM, TRL_VLLM = "hf_generate", "unsloth_vllm", "trl_vllm"
UNSLOTH_LORA_NAME = "grpo_trainer_lora_model"   # the name Unsloth's own GRPO trainer loads its live LoRA under


def eval_engine(backend: str, generates_with_vllm: bool, world_size: int = 1) -> str:
    """The engine held-out evaluation generates with: the one training uses, when it has one.

    TRL's vLLM is used in a single process only: evaluation runs on the main process alone, and TRL's vLLM
    generation gathers prompts across processes in server mode (a collective the other ranks would not join).
    """
    if not generates_with_vllm:
        return HF
    if backend == "unsloth":
        return UNSLOTH_VLLM
    return TRL_VLLM if world_size == 1 else HF


def make_evaluator(cfg: Any, rows: list[dict[str, Any]], stack: Any, tokenizer: Any,
                   engine: str = HF) -> "Evaluator":
    """The evaluator a GRPO config's ``evaluation`` section asks for: its generations and reward threshold, with
    the training run's completion length, stop sequences, sampling temperature/top_p and seed."""
    tp, ev = cfg.training_parameters, cfg.evaluation
    extra = tp.model_extra or {}
    log.info("held-out evaluation generates with %s", engine)
    return Evaluator(rows, stack, tokenizer, num_generations=ev.num_generations,
                     max_new_tokens=tp.max_completion_length, max_reward=ev.max_reward,
                     stops=tp.model_stop_sequences, temperature=extra.get("temperature", 1.0),
                     top_p=extra.get("top_p", 1.0), seed=cfg.seed, engine=engine)


class Evaluator:
    """Generates ``num_generations`` completions for each held-out row with the current weights."""

    def __init__(self, rows: list[dict[str, Any]], stack: Any, tokenizer: Any, *, num_generations: int,
                 max_new_tokens: int, max_reward: Optional[float], stops: Sequence[str] = (),
                 temperature: float = 1.0, top_p: float = 1.0, seed: int = 0, batch_size: int = 16,
                 engine: str = HF, sampling_params_cls: Any = None):
        self.rows, self.stack, self.tokenizer = rows, stack, tokenizer
        self.num_generations, self.max_new_tokens = num_generations, max_new_tokens
        self.max_reward, self.stops = max_reward, [s for s in stops if s]
        self.temperature, self.top_p, self.seed, self.batch_size = temperature, top_p, seed, batch_size
        self.engine, self.sampling_params_cls = engine, sampling_params_cls   # the vLLM SamplingParams seam
        self.engine_generate: Any = None   # TRL_VLLM: the trainer's engine_generate(prompt_ids, n), set per run
        self.last_step: Optional[int] = None

    def vllm_sampling_kwargs(self, step: int) -> dict[str, Any]:
        """``SamplingParams`` of the Unsloth engine: the same settings as the HF path."""
        kwargs: dict[str, Any] = {"n": self.num_generations, "temperature": self.temperature, "top_p": self.top_p,
                                  "max_tokens": self.max_new_tokens, "seed": self.seed + step}
        if self.stops:
            kwargs.update(stop=list(self.stops), include_stop_str_in_output=True)
        return kwargs

    def _engine_ids(self, model: Any, texts: list[str], step: int) -> list[list[int]]:
        """New token ids, ``num_generations`` per prompt in prompt order, from the training engine."""
        if self.engine == UNSLOTH_VLLM:
            cls = self.sampling_params_cls
            if cls is None:
                from vllm import SamplingParams as cls  # noqa: N813
            outputs = model.fast_generate(texts, sampling_params=cls(**self.vllm_sampling_kwargs(step)),
                                          use_tqdm=False,
                                          lora_request=model.load_lora(UNSLOTH_LORA_NAME, load_tensors=True))
            return [list(c.token_ids) for out in outputs for c in out.outputs]
        prompt_ids = [self.tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
        return [list(ids) for ids in self.engine_generate(prompt_ids, self.num_generations)]

    def _hf_ids(self, model: Any, texts: list[str]) -> list[list[int]]:
        import torch

        tok = self.tokenizer
        enc = tok(texts, return_tensors="pt", padding=True, padding_side="left", add_special_tokens=False)
        enc = {k: v.to(model.device) for k, v in enc.items()}
        with stopping_generate(model, tok, self.stops), torch.no_grad():
            out = model.generate(**enc, max_new_tokens=self.max_new_tokens, do_sample=True,
                                 temperature=self.temperature, top_p=self.top_p,
                                 num_return_sequences=self.num_generations, pad_token_id=tok.pad_token_id,
                                 eos_token_id=tok.eos_token_id)
        return out[:, enc["input_ids"].shape[1]:].tolist()

    def generate(self, model: Any, rows: list[dict[str, Any]], step: int = 0) -> tuple[list[str], list[int]]:
        """Completions (text cut at EOS and the stop strings) and their token counts, for ``rows``."""
        tok = self.tokenizer
        texts = [tok.apply_chat_template(r["prompt"], tokenize=False, add_generation_prompt=True) for r in rows]
        new = self._hf_ids(model, texts) if self.engine == HF else self._engine_ids(model, texts, step)
        eos, pad = tok.eos_token_id, tok.pad_token_id
        ids = []
        for seq in new:
            cut = next((i for i, t in enumerate(seq) if t in (eos, pad)), len(seq))
            ids.append(seq[:cut])
        if self.stops:
            ids, _ = cut_completions(ids, tok, self.stops, eos)
        texts = [cut_text_at_stop(tok.decode(s, skip_special_tokens=True), self.stops)[0] for s in ids]
        return texts, [len(s) for s in ids]

    def run(self, model: Any, step: int) -> dict[str, float]:
        """Evaluate with the model's current weights; the global RNG is left as it was (training unaffected)."""
        import torch

        was_training = model.training
        model.eval()
        results, lengths = [], []
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.seed + step)
                for start in range(0, len(self.rows), self.batch_size):
                    batch = self.rows[start:start + self.batch_size]
                    completions, lens = self.generate(model, batch, step)
                    expanded = [r for r in batch for _ in range(self.num_generations)]
                    results += self.stack.score_batch(None, completions, expanded, step, record=False,
                                                      raise_errors=False)
                    lengths += lens
        finally:
            if was_training:
                model.train()
        self.last_step = step
        metrics = summarize(results, self.max_reward, lengths)
        log.info("evaluation at step %d on %d held-out prompts: %s", step, len(self.rows),
                 ", ".join(f"{k}={v:.4g}" for k, v in metrics.items()))
        return metrics


def evaluation_callback(evaluator: Evaluator, interval: int, trainer_ref: list) -> Any:
    """A TrainerCallback that evaluates every ``interval`` steps and at the end of training."""
    from transformers import TrainerCallback

    class EvaluationCallback(TrainerCallback):
        def _evaluate(self, state, model) -> None:
            trainer = trainer_ref[0]
            if not state.is_world_process_zero or evaluator.last_step == state.global_step:
                return
            unwrapped = trainer.accelerator.unwrap_model(model if model is not None else trainer.model)
            if evaluator.engine == TRL_VLLM:
                evaluator.engine_generate = trainer.engine_generate
            trainer.emit_metrics(evaluator.run(unwrapped, state.global_step))

        def on_step_end(self, args, state, control, model=None, **kwargs):
            if state.global_step % interval == 0:
                self._evaluate(state, model)

        def on_train_end(self, args, state, control, model=None, **kwargs):
            self._evaluate(state, model)

    return EvaluationCallback()
