"""hpo_fitness.png (fitness per member and generation, the elite's lineage highlighted) and the elite table.
Generations are numbered from 1 here as in hpo_history.jsonl: what the plot and the table show is what the file says."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence

from pipelines.grpo.hpo.config import HPOSection


def lineage(elite_id: str, history: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The elite's ancestors, oldest first, ending with the elite itself."""
    by_id = {r["id"]: r for r in history}
    chain, current = [], by_id.get(elite_id)
    while current is not None:
        chain.append(current)
        current = by_id.get(current["parent"]) if current.get("parent") else None
    return chain[::-1]


def final_elite(history: Sequence[dict[str, Any]]) -> Optional[dict[str, Any]]:
    if not history:
        return None
    last = max(r["generation"] for r in history)
    return next((r for r in history if r["generation"] == last and r.get("best")), None)


def plot_x(record: dict[str, Any], size: int) -> float:
    """A member's x position: its generation number (as in hpo_history.jsonl), members side by side around it."""
    return record["generation"] + 0.3 * (record["member"] - (size - 1) / 2) / max(size, 1)


def plot_fitness(history: Sequence[dict[str, Any]], out_path: Path) -> Optional[Path]:
    """Every member's fitness against its generation, a grey line to its parent, the best of each
    generation as a star, the final elite's lineage in red. Written atomically; None without data."""
    points = [r for r in history if r.get("fitness") is not None]
    if not points:
        return None
    from pipelines.grpo.plots import pyplot, save_figure

    plt = pyplot()
    by_id = {r["id"]: r for r in points}
    size = max(r["member"] for r in points) + 1

    def x(r: dict[str, Any]) -> float:
        return plot_x(r, size)

    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    try:
        for r in points:
            parent = by_id.get(r.get("parent"))
            if parent is not None:
                ax.plot([x(parent), x(r)], [parent["fitness"], r["fitness"]],
                        color="0.8", linewidth=0.8, zorder=1)
        ax.scatter([x(r) for r in points], [r["fitness"] for r in points], c=[r["member"] for r in points],
                   cmap="tab10", s=30, zorder=2, label="member")
        best = [r for r in points if r.get("best")]
        ax.scatter([x(r) for r in best], [r["fitness"] for r in best], marker="*", s=160,
                   color="gold", edgecolors="black", zorder=3, label="best of generation")
        elite = final_elite(history)
        if elite is not None:
            chain = [r for r in lineage(elite["id"], history) if r.get("fitness") is not None]
            ax.plot([x(r) for r in chain], [r["fitness"] for r in chain], color="crimson",
                    linewidth=2, zorder=4, label=f"elite lineage ({elite['id']})")
        ax.set_xlabel("generation")
        ax.set_ylabel("fitness (held-out mean combined reward)")
        ax.set_title("Hyperparameter search: fitness per member")
        ax.set_xticks(sorted({r["generation"] for r in points}))
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize="small")
        save_figure(fig, out_path)
    finally:
        plt.close(fig)
    return Path(out_path)


def _value(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def elite_table(elite: dict[str, Any], history: Sequence[dict[str, Any]], hpo: HPOSection) -> str:
    """A text table of the elite's hyperparameters, their search ranges and how its lineage got there."""
    fitness = elite.get("fitness")
    lines = [f"elite: member {elite['id']} of generation {elite['generation']}, fitness "
             f"{'n/a' if fitness is None else f'{fitness:.4f}'}"]
    names = sorted(elite["hparams"])
    width = max([len("hyperparameter")] + [len(n) for n in names])
    lines.append(f"  {'hyperparameter':<{width}}  {'value':>10}  search range")
    for name in names:
        space = hpo.search_space.get(name)
        rng = "" if space is None else (f"[{_value(space.min)}, {_value(space.max)}]"
                                        f"{' log' if space.log else ''}{' int' if space.type == 'int' else ''}")
        lines.append(f"  {name:<{width}}  {_value(elite['hparams'][name]):>10}  {rng}")
    chain = lineage(elite["id"], history)
    lines.append("  lineage: " + " -> ".join(f"{r['id']} [{r['mutation']}]" for r in chain))
    return "\n".join(lines)
