"""``chat_template`` values: a Jinja template, or the name of a well-known format.

Augmentoolkit's config invites ``chat_template: chatml``; a tokenizer given that text would render every prompt
as the literal word ``chatml``. Here a config value is resolved once, when the config is validated (every node
that takes a ``chat_template`` uses :func:`resolve_chat_template` as its field validator), so training, rollouts
and the ``--validate`` example all see the same real template:

- text containing ``{{`` or ``{%`` is a Jinja template; its syntax is checked (a syntax error is a config
  error with the line, not a traceback later), and it is rendered once on sample conversations in a bounded
  child process (:func:`pipelines.common.jinja_render.probe_template`): an error while rendering, or a render
  that runs out of time or memory, is a config error too;
- otherwise it must be one of :data:`TEMPLATE_NAMES` (case-insensitive; aliases in :data:`ALIASES`), which map to
  the templates below; any other text is a config error.

The templates are written here (no kept library ships named templates without importing a model stack).
"""
from __future__ import annotations

import difflib
import logging
from typing import Optional

log = logging.getLogger(__name__)

_CHATML = ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + "
           "'<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}"
           "{% endif %}")
_LLAMA3 = ("{{ bos_token }}{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + "
           "'<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}{% endfor %}"
           "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}")
# Mistral and Gemma have no system role: the system message is put before the first user message.
_MISTRAL = ("{{ bos_token }}{% set ns = namespace(system='') %}{% for message in messages %}"
            "{% if message['role'] == 'system' %}{% set ns.system = message['content'] + '\\n\\n' %}"
            "{% elif message['role'] == 'user' %}{{ '[INST] ' + ns.system + message['content'] + ' [/INST]' }}"
            "{% set ns.system = '' %}{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token }}"
            "{% endif %}{% endfor %}")
_GEMMA = ("{{ bos_token }}{% set ns = namespace(system='') %}{% for message in messages %}"
          "{% if message['role'] == 'system' %}{% set ns.system = message['content'] + '\\n\\n' %}{% else %}"
          "{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
          "{{ '<start_of_turn>' + role + '\\n' + (ns.system if role == 'user' else '') + message['content'] | trim"
          " + '<end_of_turn>\\n' }}{% if role == 'user' %}{% set ns.system = '' %}{% endif %}{% endif %}"
          "{% endfor %}{% if add_generation_prompt %}{{ '<start_of_turn>model\\n' }}{% endif %}")
_ZEPHYR = ("{% for message in messages %}{{ '<|' + message['role'] + '|>\\n' + message['content'] + eos_token + "
           "'\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}")
_PHI3 = ("{% for message in messages %}{{ '<|' + message['role'] + '|>\\n' + message['content'] + '<|end|>\\n' }}"
         "{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}")
_ALPACA = ("{% for message in messages %}{% if message['role'] == 'system' %}{{ message['content'] + '\\n\\n' }}"
           "{% elif message['role'] == 'user' %}{{ '### Instruction:\\n' + message['content'] + '\\n\\n' }}"
           "{% elif message['role'] == 'assistant' %}{{ '### Response:\\n' + message['content'] + eos_token + "
           "'\\n\\n' }}{% endif %}{% endfor %}{% if add_generation_prompt %}{{ '### Response:\\n' }}{% endif %}")

TEMPLATE_NAMES: dict[str, str] = {"chatml": _CHATML, "llama-3": _LLAMA3, "mistral": _MISTRAL, "gemma": _GEMMA,
                                  "zephyr": _ZEPHYR, "phi-3": _PHI3, "alpaca": _ALPACA}
ALIASES = {"llama3": "llama-3", "llama-3.1": "llama-3", "llama-31": "llama-3", "qwen": "chatml",
           "qwen2.5": "chatml", "qwen-2.5": "chatml", "gemma2": "gemma", "gemma-2": "gemma", "phi3": "phi-3"}
_announced: set[str] = set()


def is_jinja(text: str) -> bool:
    """Whether ``text`` uses Jinja syntax (an expression or a statement)."""
    return "{{" in text or "{%" in text


def template_for_name(name: str) -> Optional[str]:
    """The template of a known name or alias (case-insensitive), else None."""
    key = name.strip().lower()
    return TEMPLATE_NAMES.get(ALIASES.get(key, key))


def jinja_syntax_error(template: str) -> Optional[str]:
    """A description of the template's Jinja syntax error, or None. Parsed as transformers renders chat
    templates (loop controls on; its ``{% generation %}`` block tag accepted)."""
    import jinja2
    from jinja2.ext import Extension

    class _Generation(Extension):
        tags = {"generation"}

        def parse(self, parser):   # only the syntax is checked here; transformers renders the real block
            next(parser.stream)
            return parser.parse_statements(("name:endgeneration",), drop_needle=True)

    env = jinja2.Environment(extensions=["jinja2.ext.loopcontrols", _Generation])
    try:
        env.parse(template)
    except jinja2.TemplateSyntaxError as exc:
        return f"line {exc.lineno}: {exc.message}"
    return None


def resolve_chat_template(value: Optional[str]) -> Optional[str]:
    """The template a config's ``chat_template`` stands for (None stays None: the tokenizer's own).
    ValueError, with the known names, for text that is neither a valid Jinja template nor a known name."""
    if value is None:
        return None
    if is_jinja(value):
        error = jinja_syntax_error(value)
        if error:
            raise ValueError(f"the Jinja template does not parse ({error})")
        from pipelines.common.jinja_render import probe_template
        problem = probe_template(value)
        if problem:
            raise ValueError(f"the Jinja template cannot be used: {problem}")
        return value
    template = template_for_name(value)
    if template is None:
        names = sorted(TEMPLATE_NAMES) + sorted(ALIASES)
        close = difflib.get_close_matches(value.strip().lower(), names, n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"{value[:60]!r} is neither a Jinja template nor a known template name{hint}; known "
                         f"names: {', '.join(sorted(TEMPLATE_NAMES))} (aliases: {', '.join(sorted(ALIASES))})")
    if value not in _announced:
        _announced.add(value)
        canonical = ALIASES.get(value.strip().lower(), value.strip().lower())
        log.info("chat_template %r: the %s template", value, canonical)
    return template
