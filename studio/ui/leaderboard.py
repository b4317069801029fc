"""The Library's Leaderboard accordion: the table and one interval plot per tab (`leaderboard_panel`).

Owns: the layout, the Refresh handler (`/leaderboard`) and drawing the plot: per tab, one row per model,
a dot at its Bradley-Terry rating and a bar for its 95 % interval, on one shared axis per tab (so intervals
compare by eye: overlapping bars are models the votes cannot tell apart yet). The plot is plain SVG built
here: no plotting library is installed, and an SVG is the same picture in every browser.
Ignores: the fit and which votes count (the service's `leaderboard`).
"""

from __future__ import annotations

from html import escape
from typing import Any

import gradio as gr
import pandas as pd

from studio.service import Studio, StudioError
from studio.ui.conversation import user_of

WIDTH, ROW, LEFT, RIGHT = 640, 26, 190, 30
# Table column order: the new fit first, the columns people knew (Elo, battles, win rate, thumbs) after.
COLUMNS = (
    "tab", "rank", "model", "bt", "ci_low", "ci_high", "elo", "battles", "wins", "losses", "draws",
    "win_rate", "thumbs_up", "thumbs_down", "thumbs_up_rate",
)  # fmt: skip


def interval_svg(tab: str, rows: list[dict[str, Any]]) -> str:
    """One tab's error-bar plot; rows are leaderboard rows with `bt`, `ci_low`, `ci_high`."""
    ranked = [r for r in rows if r.get("bt") is not None]
    if not ranked:
        return ""
    low = min(r["ci_low"] for r in ranked)
    high = max(r["ci_high"] for r in ranked)
    pad = max(5.0, (high - low) * 0.05)
    low, high = low - pad, high + pad
    span = WIDTH - LEFT - RIGHT

    def x(value: float) -> float:
        return LEFT + (value - low) / (high - low) * span

    height = ROW * len(ranked) + 40
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" role="img" '
        f'class="leaderboard-plot" data-tab="{escape(tab)}" font-family="sans-serif" font-size="12">',
        f'<text x="4" y="14" font-weight="bold">{escape(tab)}: Bradley-Terry rating, 95 % interval</text>',
    ]
    for k, r in enumerate(ranked):
        y = 32 + k * ROW
        label = escape(f"{r['rank']}. {r['model']}")
        parts += [
            f'<text x="4" y="{y + 4}">{label}</text>',
            f'<line class="ci" x1="{x(r["ci_low"]):.1f}" x2="{x(r["ci_high"]):.1f}" y1="{y}" y2="{y}" '
            'stroke="#4b6cb7" stroke-width="3"/>',
            f'<circle class="bt" cx="{x(r["bt"]):.1f}" cy="{y}" r="4" fill="#1d2f5c">'
            f"<title>{escape(r['model'])}: {r['bt']} [{r['ci_low']}, {r['ci_high']}]</title></circle>",
        ]
    axis_y = height - 6
    for value in (low + pad, (low + high) / 2, high - pad):
        parts.append(f'<text x="{x(value):.1f}" y="{axis_y}" text-anchor="middle">{value:.0f}</text>')
    parts.append("</svg>")
    return "".join(parts)


def leaderboard_view(rows: list[dict[str, Any]]) -> tuple[pd.DataFrame, str]:
    """The table and the plots (one per tab, in tab order) from `Studio.leaderboard()` rows."""
    frame = pd.DataFrame(rows)
    if not len(frame):
        return frame, "<p>No votes yet: A/B votes and thumbs fill the leaderboard.</p>"
    frame = frame[[c for c in COLUMNS if c in frame.columns]]
    tabs = list(dict.fromkeys(r["tab"] for r in rows))
    plots = [interval_svg(tab, [r for r in rows if r["tab"] == tab]) for tab in tabs]
    return frame, "".join(f"<div>{p}</div>" for p in plots if p)


def leaderboard_panel(studio: Studio) -> None:
    """The Library's Leaderboard accordion: whose votes, Refresh, the table and the plots."""
    with gr.Accordion("Leaderboard", open=False, elem_id="library-leaderboard"):
        with gr.Row():
            voter = gr.Textbox(
                label="Votes of",
                placeholder="everyone's (an admin may name one user; anyone their own name)",
                elem_id="library-board-voter",
                scale=3,
            )
            board_btn = gr.Button("Refresh", size="sm", elem_id="library-board-refresh", scale=1)
        gr.Markdown(
            "Ranked by a Bradley-Terry fit of the A/B votes (ties count half), with 95 % intervals from 100 "
            "bootstrap resamples. A rank is 1 + the models whose interval lies wholly above: models whose "
            "intervals overlap share a rank. Self-battles and failed sides do not count."
        )
        board = gr.Dataframe(interactive=False, elem_id="library-board")
        plot = gr.HTML(elem_id="library-plot")

    def refresh(votes_of: str, request: gr.Request) -> tuple[pd.DataFrame, str]:
        try:
            rows = studio.leaderboard(votes_of=votes_of.strip() or None, user=user_of(request))
        except StudioError as exc:
            raise gr.Error(str(exc)) from None
        return leaderboard_view(rows)

    board_btn.click(refresh, voter, [board, plot], api_name="leaderboard")
