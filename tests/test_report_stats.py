"""The report's statistics on synthetic tables with planted effects: configuration chains, conditional
hyperparameters, budget strata and the rule that no winner is named without p < 0.05."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy.stats import kruskal, mannwhitneyu
from test_report_build import SMALL_SPACE, report, synthetic_trials, write_inputs

from pipeline.config import parse_params
from pipeline.report import Inputs
from pipeline.report.chains import BUDGET, CHAIN_TRIALS, collapse, root_of
from pipeline.report.conditions import ACTIVE_WHEN, describe_condition, is_active
from pipeline.report.load import Trials, parent_map
from pipeline.report.significance import budget_ranks, choice_verdict, holm
from pipeline.report.stats import INACTIVE, describe_dimensions, per_choice
from pipeline.verdicts import (
    ABLATION,
    NO_CLEAR_DIFFERENCE,
    WINNER,
    Verdict,
    fmt_p,
    merge,
    read_verdicts,
    write_verdicts,
)


def trials_of(rows: list[dict], maximize: bool = True) -> Trials:
    table = pd.DataFrame(rows)
    for column in ("continued_from",):
        if column not in table:
            table[column] = None
    table["trial_id"] = table["trial_id"].astype(str)
    table["finished"] = table["status"].eq("FINISHED") & table["score"].notna()
    return Trials(table=table, objective="val_accuracy", maximize=maximize, source="test",
                  parents=parent_map(table))


def row(trial_id: str, score: float | None, budget: int, parent: str | None = None, **hp) -> dict:
    return {"trial_id": trial_id, "status": "FINISHED" if score is not None else "FAILED", "score": score,
            "continued_from": parent, "round": 0 if parent is None else 1, "target_epochs": budget,
            **{f"hp.{k}": v for k, v in hp.items()}}


# ------------------------------------------------------------------ chains

def test_a_continued_configuration_is_one_row_with_its_final_budget():
    trials = trials_of([
        row("0006", 0.73, 1, optimizer="momentum"),
        row("0009", 0.93, 3, "0006", optimizer="momentum"),
        row("0012", 0.95, 9, "0009", optimizer="momentum"),
        row("0002", 0.21, 1, optimizer="adamw"),
        row("0010", 0.51, 3, "0002", optimizer="adamw"),
        row("0005", 0.10, 1, optimizer="adam"),
    ])
    chains = collapse(trials)

    assert len(chains.table) == 3
    final = chains.table.set_index(CHAIN_TRIALS)
    assert final.loc["0006>0009>0012", "score"] == 0.95 and final.loc["0006>0009>0012", BUDGET] == 9
    assert final.loc["0002>0010", "trial_id"] == "0010" and final.loc["0005", BUDGET] == 1
    dims = {d.name: d for d in describe_dimensions(parse_params({}).search_space, chains.table)}
    counts = {s.label: s.trials for s in per_choice(chains, dims["optimizer"])}
    assert counts["momentum"] == 1 and counts["adamw"] == 1  # 3 and 2 trials before


def test_chain_roots_survive_a_missing_parent_and_a_cycle():
    assert root_of("0012", {"0012": "0009", "0009": "0006"}) == "0006"
    assert root_of("0012", {"0012": "0009"}) == "0009"  # 0009 left out (killed): still one chain name
    assert root_of("a", {"a": "b", "b": "a"}) in {"a", "b"}


def test_counts_and_top_list_are_over_distinct_configurations(tmp_path):
    params = parse_params({"search_space": SMALL_SPACE, "report": {"min_trials_per_choice": 3, "top_trials": 5}})
    trials, history = synthetic_trials(params, n=30, seed=4, continue_every=2)  # every second trial continues
    out = tmp_path / "report"
    summary = report(params, write_inputs(tmp_path, trials, history), out)

    assert summary["trials"] == 30 and summary["configurations"] == 15 and summary["continued"] == 15
    tops = [t["trials"] for t in summary["top_configurations"]]
    assert len(tops) == 5 and len({t.split(">")[0] for t in tops}) == 5
    verdict = {v.question: v for v in read_verdicts(out / "verdicts.json")}["optimizer"]
    assert verdict.n <= 15  # configurations, not the 30 trials


# ------------------------------------------------------------------ conditional hyperparameters

def test_activity_map_follows_the_model_code():
    assert is_active("weight_decay", {"optimizer": "adamw"}) and not is_active("weight_decay", {"optimizer": "adam"})
    assert {o for o in ("sgd", "momentum", "nesterov", "adam") if is_active("momentum", {"optimizer": o})} == \
        {"momentum", "nesterov"}
    assert not is_active("reg_strength", {"regularizer": "none"}) and is_active("reg_strength", {"regularizer": "l1"})
    assert is_active("init_stddev", {"init": "random_uniform"}) and not is_active("init_stddev", {"init": "he_normal"})
    by_schedule = {s: {k for k, (parent, _) in ACTIVE_WHEN.items() if parent == "lr_schedule"
                       and is_active(k, {"lr_schedule": s})}
                   for s in ("constant", "step", "exponential", "cosine", "cosine_restarts", "warmup_cosine")}
    assert by_schedule == {
        "constant": set(), "step": {"step_decay_factor", "step_decay_epochs"}, "exponential": {"exp_decay_rate"},
        "cosine": {"cosine_floor"}, "cosine_restarts": {"cosine_floor", "restart_epochs", "restart_mult"},
        "warmup_cosine": {"cosine_floor", "warmup_epochs"}}
    assert is_active("learning_rate", {}) and describe_condition("weight_decay") == "optimizer is adamw"


def test_conditional_parameter_is_analysed_only_where_it_acts():
    rng = np.random.default_rng(0)
    rows = []
    for i in range(60):
        optimizer = ["adam", "adamw", "sgd"][i % 3]
        score = 0.6 + rng.normal(0, 0.02)
        if optimizer == "adamw":
            decay = float(10 ** rng.uniform(-5, -2))  # no effect where it acts
        else:
            # planted trap: where adamw is not used, the (ignored) sample tracks the score
            decay = 1e-5 if score < 0.6 else 5e-3
        rows.append(row(f"{i:04d}", score, 9, optimizer=optimizer, weight_decay=decay))
    chains = collapse(trials_of(rows))
    space = parse_params({}).search_space
    dims = {d.name: d for d in describe_dimensions(space, chains.table)}
    wd = dims["weight_decay"]

    assert wd.n_active == 20 and (wd.labels == INACTIVE).sum() == 40
    assert sum(s.trials for s in per_choice(chains, wd)) == 20
    groups = {k: wd.labels.index[wd.labels == k] for k in wd.order if k != INACTIVE}
    verdict, _ = choice_verdict("hp.weight_decay", groups, chains.table["score"], chains.table[BUDGET], True, 3)
    assert verdict.kind == NO_CLEAR_DIFFERENCE and verdict.n == 20
    # all rows would have produced a false winner
    raw = pd.Series([r["hp.weight_decay"] for r in rows]) > 1e-3
    scores = pd.Series([r["score"] for r in rows])
    assert mannwhitneyu(scores[raw], scores[~raw]).pvalue < 0.001


def test_conditional_parameter_gets_no_winner_and_no_top_importance_in_the_report(tmp_path):
    space = dict(SMALL_SPACE, optimizer={"choices": ["sgd", "adam", "adamw"]},
                 weight_decay={"min": 1e-5, "max": 1e-2, "sampling": "log"})
    params = parse_params({"search_space": space})
    trials, history = synthetic_trials(params, n=45, planted=None, seed=5, continue_every=0)
    # the ignored weight_decay of non-adamw trials tracks their score: a spurious effect if analysed there
    inactive = trials["hp.optimizer"] != "adamw"
    trials.loc[inactive, "hp.weight_decay"] = np.where(trials.loc[inactive, "score"] > 0.55, 9e-3, 1.1e-5)
    summary = report(params, write_inputs(tmp_path, trials, history), tmp_path / "report")

    assert summary["best_value"]["weight_decay"] is None
    verdict = {v.question: v for v in read_verdicts(tmp_path / "report" / "verdicts.json")}["hp.weight_decay"]
    assert verdict.n == int((~inactive).sum()) and "only where optimizer is adamw" in verdict.note
    assert summary["importance"]["ranking"][0]["name"] != "weight_decay"
    md = (tmp_path / "report" / "report.md").read_text()
    assert "weight_decay acts only when optimizer is adamw" in md


# ------------------------------------------------------------------ no winner without a test

def test_a_winner_needs_a_test_with_p_below_alpha():
    with pytest.raises(ValueError, match="p < 0.05"):
        Verdict("optimizer", WINNER, winner="adam", test="Kruskal-Wallis", p_value=0.05, n=9)
    with pytest.raises(ValueError, match="p < 0.05"):
        Verdict("optimizer", WINNER, winner="adam", n=9)
    with pytest.raises(ValueError, match="only kind"):
        Verdict("optimizer", NO_CLEAR_DIFFERENCE, winner="adam", test="Kruskal-Wallis", p_value=0.3)
    assert fmt_p(0.0496) == "p=0.0496" and fmt_p(0.31) == "p=0.310"


def _scores(ranks: tuple[int, ...], budget: float = 9.0) -> list[tuple[float, float]]:
    """(score, budget) rows whose order is ``ranks`` (1 = worst): hand-made data with a known rank order."""
    return [(round(0.5 + r / 100 + (0.3 if budget > 1 else 0.0), 4), budget) for r in ranks]


# Hand-made groups around the 0.05 line; each case's p is computed below with scipy on the raw scores
# (one budget: the within-budget ranks are a monotone map of them), not read from the verdict.
BOUNDARY_CASES = {
    "kruskal p=0.0548, no winner": ({"a": _scores((1, 2, 3, 6)), "b": _scores((4, 5, 10, 12)),
                                     "c": _scores((7, 8, 9, 11))}, None),
    "kruskal p=0.0498, c wins": ({"a": _scores((1, 2, 3, 6)), "b": _scores((4, 5, 9, 12)),
                                  "c": _scores((7, 8, 10, 11))}, "c"),
    "mann-whitney p=0.0649, no winner": ({"a": _scores((1, 2, 3, 4, 5, 12)), "b": _scores((6, 7, 8, 9, 10, 11))},
                                         None),
    "mann-whitney p=0.0411, b wins": ({"a": _scores((1, 2, 3, 4, 5, 11)), "b": _scores((6, 7, 8, 9, 10, 12))},
                                      "b"),
    # two budgets: every 9-epoch score beats every 1-epoch one, so only ranks within a budget may count
    "stratified, a leads at both budgets": ({"a": _scores((4, 5, 6), 1.0) + _scores((5, 6), 9.0),
                                             "b": _scores((1, 2, 3), 1.0) + _scores((1, 2, 3, 4), 9.0)}, "a"),
}


@pytest.mark.parametrize("case", list(BOUNDARY_CASES))
def test_no_verdict_names_a_winner_at_p_at_or_above_alpha(case: str) -> None:
    from scipy.stats import rankdata

    data, winner = BOUNDARY_CASES[case]
    rows = [(group, score, budget) for group, pairs in data.items() for score, budget in pairs]
    labels = pd.Series([g for g, _, _ in rows])
    scores = pd.Series([s for _, s, _ in rows])
    budgets = pd.Series([b for _, _, b in rows])
    groups = {k: labels.index[labels == k] for k in data}
    # the p-value the rule must follow, from scipy on ranks within each budget computed here
    within = pd.Series(0.0, index=scores.index)
    for budget in budgets.unique():
        rows_at = budgets.index[budgets == budget]
        within[rows_at] = rankdata(scores[rows_at]) / len(rows_at)
    samples = [within[g].to_numpy() for g in groups.values()]
    p = (mannwhitneyu(*samples, alternative="two-sided") if len(samples) == 2 else kruskal(*samples)).pvalue
    assert (p < 0.05) == (winner is not None), f"the hand-made case {case!r} is not where it claims (p={p})"

    verdict, test = choice_verdict("q", groups, scores, budgets, True, 3)

    assert verdict.p_value == pytest.approx(p, rel=1e-9)
    if winner is None:
        assert verdict.kind == NO_CLEAR_DIFFERENCE and verdict.winner is None
        name = "Mann-Whitney U" if len(groups) == 2 else "Kruskal-Wallis"
        assert verdict.statement.startswith(f"no clear difference ({name} {fmt_p(p)}, {len(rows)} ")
    else:
        assert verdict.kind == WINNER and verdict.winner == winner


def test_leading_bin_without_significance_is_worded_descriptively():
    # a learning-rate-like case: one bin ahead on medians, Kruskal-Wallis not significant
    scores = pd.Series([0.2, 0.3, 0.55, 0.5, 0.6, 0.45, 0.4, 0.35, 0.7])
    labels = pd.Series(["low", "mid", "high"] * 3)
    groups = {k: labels.index[labels == k] for k in ("low", "mid", "high")}
    p = kruskal(*[scores[g] for g in groups.values()]).pvalue
    verdict, _ = choice_verdict("learning_rate", groups, scores, pd.Series(9.0, index=scores.index), True, 3)

    assert np.median(scores[groups["high"]]) > np.median(scores[groups["low"]])
    assert p >= 0.05 and verdict.kind == NO_CLEAR_DIFFERENCE and verdict.winner is None
    assert verdict.statement == f"no clear difference (Kruskal-Wallis {fmt_p(p)}, 9 configurations)"


# ------------------------------------------------------------------ budget strata

def _mixed_budgets(rng: np.random.Generator, within_effect: float = 0.0) -> tuple[pd.Series, pd.Series, pd.Series]:
    """Group A trained mostly for 9 epochs, B mostly for 1; the score rises with the budget."""
    labels, budgets = [], []
    for group, common, rare in (("A", 9, 1), ("B", 1, 9)):
        labels += [group] * 16
        budgets += [common] * 12 + [rare] * 4
    labels, budgets = pd.Series(labels), pd.Series(budgets, dtype=float)
    scores = 0.3 + 0.06 * budgets + rng.normal(0, 0.03, len(labels)) + within_effect * (labels == "B")
    return labels, budgets, scores


def test_budget_strata_prevent_a_false_winner():
    labels, budgets, scores = _mixed_budgets(np.random.default_rng(1))
    groups = {k: labels.index[labels == k] for k in ("A", "B")}
    assert mannwhitneyu(scores[groups["A"]], scores[groups["B"]]).pvalue < 0.05  # pooled: A "wins"

    verdict, test = choice_verdict("optimizer", groups, scores, budgets, True, 3)
    assert verdict.kind == NO_CLEAR_DIFFERENCE and test.stratified
    assert "ranked within budgets 1 and 9 epochs" in verdict.statement


def test_budget_strata_find_an_effect_that_mixing_hides():
    labels, budgets, scores = _mixed_budgets(np.random.default_rng(2), within_effect=0.06)
    groups = {k: labels.index[labels == k] for k in ("A", "B")}
    assert np.median(scores[groups["A"]]) > np.median(scores[groups["B"]])  # pooled: A looks better

    verdict, _ = choice_verdict("optimizer", groups, scores, budgets, True, 3)
    assert (verdict.kind, verdict.winner) == (WINNER, "B")


def test_budget_ranks_are_within_each_budget_and_oriented():
    ranks = budget_ranks(pd.Series([0.1, 0.9, 0.5, 0.2]), pd.Series([1.0, 9.0, 1.0, 9.0]), higher_is_better=True)
    assert ranks.tolist() == [0.25, 0.75, 0.75, 0.25]
    losses = budget_ranks(pd.Series([0.1, 0.9]), pd.Series([1.0, 1.0]), higher_is_better=False)
    assert losses.tolist() == [0.75, 0.25]


def test_report_does_not_crown_the_longer_trained_optimizer(tmp_path):
    params = parse_params({"search_space": SMALL_SPACE})
    trials, history = synthetic_trials(params, n=40, planted=None, seed=6, continue_every=0)
    adam = trials["hp.optimizer"] == "adam"
    trials["target_epochs"] = np.where(adam, 9, 1)
    trials["score"] = trials["val_accuracy"] = np.where(adam, 0.9, 0.4) + np.random.default_rng(6).normal(0, .02, 40)
    summary = report(params, write_inputs(tmp_path, trials, history), tmp_path / "report")

    answer = summary["answers"]["optimizer"]
    assert answer["kind"] == NO_CLEAR_DIFFERENCE and answer["winner"] is None
    assert summary["budgets"] == {"1": int((~adam).sum()), "9": int(adam.sum())}


# ------------------------------------------------------------------ multiple tests, confounded sampling

def test_holm_adjusts_the_family_step_down():
    adjusted = holm({"a": 0.01, "b": 0.04, "c": 0.03, "untested": float("nan")})
    # 0.01 x 3; 0.03 x 2; 0.04 x 1 = 0.04, raised to the 0.06 before it (step-down is monotone)
    assert adjusted == pytest.approx({"a": 0.03, "c": 0.06, "b": 0.06})
    assert holm({"a": 0.6, "b": 0.7}) == {"a": 1.0, "b": 1.0}


def test_a_winner_must_survive_the_correction():
    data, winner = BOUNDARY_CASES["mann-whitney p=0.0411, b wins"]
    rows = [(group, score, budget) for group, pairs in data.items() for score, budget in pairs]
    labels, scores = pd.Series([g for g, _, _ in rows]), pd.Series([s for _, s, _ in rows])
    groups = {k: labels.index[labels == k] for k in data}
    budgets = pd.Series([b for _, _, b in rows])

    def three_tests(question, test):
        test.adjusted_p, test.family = holm({question: test.p_value, "x": 0.2, "y": 0.9})[question], 3

    raw, _ = choice_verdict("q", groups, scores, budgets, True, 3)
    corrected, test = choice_verdict("q", groups, scores, budgets, True, 3, adjust=three_tests)
    assert raw.kind == WINNER and raw.winner == winner
    assert corrected.kind == NO_CLEAR_DIFFERENCE and corrected.winner is None
    assert corrected.p_value == pytest.approx(3 * raw.p_value)
    assert "Holm-adjusted over 3 tests (uncorrected p=0.041)" in corrected.note
    assert test.p_text() == "p=0.041, 0.123 after Holm's correction over 3 tests"


def test_configurations_of_unknown_draw_are_not_counted_as_uniform():
    from pipeline.report.questions import randomized_rows

    table = pd.DataFrame({"source": ["uniform", None, "model", "Uniform ", float("nan")]})
    rows, scope = randomized_rows(table)
    assert list(rows) == [0, 3] and scope == "uniformly drawn configurations only (2 of 5)"
    assert randomized_rows(pd.DataFrame({"source": [None, None]})) == (None, "")  # nothing says: every row
    assert randomized_rows(pd.DataFrame({"score": [0.5]})) == (None, "")  # an older trials.csv


def test_the_samplers_favourite_wins_only_where_the_sampler_chose_it(tmp_path):
    # a BOHB-like search: 24 uniform draws where the optimizer makes no difference, and 16 informed
    # draws (around the incumbent) that are all adam and better for what else they share with it
    params = parse_params({"search_space": SMALL_SPACE})
    trials, history = synthetic_trials(params, n=40, planted=None, seed=11, continue_every=0)
    informed = trials.index >= 24
    trials.loc[informed, "hp.optimizer"] = "adam"
    for column in ("score", "val_accuracy", "accuracy"):
        trials.loc[informed, column] += 0.2
    for name in ("all", "drawn"):
        (tmp_path / name).mkdir()
    confounded = report(params, write_inputs(tmp_path / "all", trials, history), tmp_path / "all" / "report")
    assert confounded["answers"]["optimizer"]["kind"] == WINNER  # what every configuration together says

    trials["source"] = np.where(informed, "incumbent", "uniform")
    out = tmp_path / "drawn" / "report"
    summary = report(params, write_inputs(tmp_path / "drawn", trials, history), out)
    answer = summary["answers"]["optimizer"]
    assert answer["kind"] == NO_CLEAR_DIFFERENCE and answer["n"] == 24
    text = (out / "report.md").read_text()
    assert "uniformly drawn configurations only (24 of 40)" in text
    assert "The search drew 24 of its 40 configurations uniformly at random" in text
    records = {v.question: v for v in read_verdicts(out / "verdicts.json")}
    assert "uniformly drawn configurations only (24 of 40)" in records["optimizer"].note


# ------------------------------------------------------------------ verdicts.json and other evidence

def test_verdicts_file_and_ablation_evidence_replacing_the_search(tmp_path):
    params = parse_params({"search_space": SMALL_SPACE})
    trials, history = synthetic_trials(params, n=40, seed=7)
    inputs = write_inputs(tmp_path, trials, history)
    out = tmp_path / "report"
    report(params, inputs, out)
    data = json.loads((out / "verdicts.json").read_text())
    records = {v["question"]: v for v in data["verdicts"]}
    assert data["alpha"] == 0.05 and records["optimizer"]["evidence"] == "search"
    assert set(records["optimizer"]) >= {"question", "kind", "winner", "test", "p_value", "n", "evidence",
                                         "statement"}
    assert all(r["kind"] != WINNER or r["p_value"] < 0.05 for r in records.values())

    ablation = Verdict("optimizer", NO_CLEAR_DIFFERENCE, test="Welch t-test", p_value=0.4, n=12,
                       evidence=ABLATION, unit="runs")
    write_verdicts(tmp_path / "ablation.json", [ablation])
    assert read_verdicts(tmp_path / "ablation.json") == [ablation]
    assert merge([Verdict("optimizer", NO_CLEAR_DIFFERENCE)], [ablation]) == [ablation]
    with_ablation = Inputs(inputs.trials, inputs.history, inputs.best, inputs.meta,
                           evidence=(tmp_path / "ablation.json", tmp_path / "missing.json"))
    summary = report(params, with_ablation, out)

    answer = summary["answers"]["optimizer"]
    assert answer["evidence"] == ABLATION and answer["verdict"] == ablation.statement
    assert "12 runs, ablation evidence" in answer["verdict"]
    assert read_verdicts(out / "verdicts.json")[0].evidence == "search"  # zero_init untouched
    assert "the ablation evidence replaces the search's answer" in (out / "report.md").read_text()


# ------------------------------------------------------------------ figures

def test_titles_fit_their_figure_and_lines_differ():
    from pipeline.report import plots

    figure = plots._figure(4.5, 3.5)
    axes = figure.add_subplot()
    plots._title(axes, "val_accuracy per weight_decay (23 finished configurations where optimizer is adamw)")
    figure.tight_layout()
    renderer = figure.canvas.get_renderer()
    box, page = axes.title.get_window_extent(renderer), figure.bbox
    assert page.x0 <= box.x0 and box.x1 <= page.x1 and box.y1 <= page.y1
    styles = [plots._line_style(i, 6) for i in range(6)]
    assert len({(str(s["linestyle"]), s["marker"]) for s in styles}) == 6
    assert styles[0]["linewidth"] > styles[-1]["linewidth"]  # the first drawn stays visible under the later
