"""results.json, results.md (the Markdown table) and report.html (self-contained) of one run."""
from __future__ import annotations

import html
import math
from pathlib import Path

import numpy as np

from ..runtime import write_json_atomic, write_text_atomic

COLUMNS = [("roc_auc", "ROC AUC"), ("pr_auc", "PR AUC"), ("pauc_fpr0.1", "pAUC≤0.1"),
           ("sens_at_spec0.90", "Sens@Sp.90"), ("sens_at_spec0.95", "Sens@Sp.95"), ("f1", "F1"),
           ("kappa", "κ"), ("brier", "Brier"), ("count_spearman", "count ρ"),
           ("count_icc21", "count ICC(2,1)"), ("prl1_auc", "≥1 PRL AUC"), ("prl4_auc", "≥4 PRL AUC")]


def _fmt(v, digits=3) -> str:
    return "–" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.{digits}f}"


def _cell(entry: dict, key: str) -> str:
    v = entry["metrics"].get(key)
    ci = entry.get("ci95", {}).get(key)
    s = _fmt(v)
    if ci and math.isfinite(ci["lo"]):
        s += f" [{_fmt(ci['lo'], 2)}, {_fmt(ci['hi'], 2)}]"
    return s


def markdown_table(summary: dict) -> str:
    head = "| model | " + " | ".join(c for _, c in COLUMNS) + " | DeLong p vs asymmetric |"
    lines = [head, "|" + "---|" * (len(COLUMNS) + 2)]
    for name, e in summary["variants"].items():
        d = e.get("delong_vs_reference")
        p = "ref." if d is None else (f"{d['p_median']:.2g}" + (" (↓)" if d["diff_mean"] > 0 else " (↑)"))
        lines.append(f"| {name} | " + " | ".join(_cell(e, k) for k, _ in COLUMNS) + f" | {p} |")
    return "\n".join(lines) + "\n"


def results_markdown(results: dict) -> str:
    s = results["summary"]
    out = ["# rimscope evaluate — results\n",
           f"{s['n_subjects']} subjects, {s['n_lesions']} labelled lesions ({s['n_rim']} Rim+), "
           f"{results['config']['folds']}-fold patient-grouped stratified CV × {s['n_repeats']} repeat(s); "
           "values are means over repeats, [95 % patient-bootstrap CI]. Thresholded metrics (F1, κ, "
           "counts) use each fold's threshold chosen on its own inner validation split. DeLong p: median "
           "over repeats; (↓) = below asymmetric, (↑) = above.\n",
           markdown_table(s)]
    out.append("\nSubject level at the operating point (Rim+ counts per subject; ≥1 and ≥4 PRL calls):\n")
    out.append("| model | count MAE | ≥1 PRL sens | ≥1 PRL spec | ≥4 PRL sens | ≥4 PRL spec |")
    out.append("|---|---|---|---|---|---|")
    for n, e in s["variants"].items():
        m = e["metrics"]
        out.append(f"| {n} | " + " | ".join(_fmt(m.get(k)) for k in (
            "count_mae", "prl1_sensitivity", "prl1_specificity", "prl4_sensitivity", "prl4_specificity")) + " |")
    truth = {n: e["vs_truth"] for n, e in s["variants"].items() if e.get("vs_truth")}
    if truth:
        first = next(iter(truth.values()))
        out.append(f"\nAgainst the simulator's true rim status (first repeat; rater labels vs truth: κ = "
                   f"{_fmt(first['rater_vs_truth_kappa'])}; an oracle that knows the true status scores ROC "
                   f"AUC {_fmt(first.get('oracle_roc_auc'))} against the rater labels):\n")
        out.append("| model | ROC AUC vs truth | PR AUC vs truth |")
        out.append("|---|---|---|")
        for n, t in truth.items():
            out.append(f"| {n} | {_fmt(t['roc_auc'])} | {_fmt(t['pr_auc'])} |")
    kinds = {n: e["fpr_by_kind"] for n, e in s["variants"].items() if e.get("fpr_by_kind")}
    if kinds:
        ks = sorted({k for v in kinds.values() for k in v})
        out.append("\nFalse-positive rate at the operating point, per hard-negative kind (true Rim− lesions):\n")
        out.append("| model | " + " | ".join(f"{k} (n={next(iter(kinds.values())).get(k, {}).get('n', 0)})"
                                             for k in ks) + " |")
        out.append("|" + "---|" * (len(ks) + 1))
        for n, v in kinds.items():
            out.append(f"| {n} | " + " | ".join(_fmt(v.get(k, {}).get("fpr")) for k in ks) + " |")
    le = results.get("label_efficiency")
    if le:
        out.append("\nLabel efficiency (ROC AUC of `asymmetric`, out of fold, vs labelled training subjects):\n")
        out.append("| subjects | pre-trained | ROC AUC [95 % CI] | pAUC≤0.1 |")
        out.append("|---|---|---|---|")
        for p in le:
            out.append(f"| {max(p['n_used'])} | {'yes' if p['pretrained'] else 'no'} | {_fmt(p['roc_auc'])} "
                       f"[{_fmt(p['roc_auc_ci95'][0], 2)}, {_fmt(p['roc_auc_ci95'][1], 2)}] | "
                       f"{_fmt(p['pauc_fpr0.1'])} |")
    return "\n".join(out) + "\n"


def _strip_curves(summary: dict) -> dict:
    """results.json keeps numbers, not the per-point curves (they are in predictions.tsv)."""
    out = dict(summary)
    out["variants"] = {n: {k: v for k, v in e.items() if k != "curves"} for n, e in summary["variants"].items()}
    return out


def write_results(out_dir, results: dict) -> None:
    out_dir = Path(out_dir)
    res = dict(results)
    res["summary"] = _strip_curves(results["summary"])
    write_json_atomic(out_dir / "results.json", res)
    write_text_atomic(out_dir / "results.md", results_markdown(results))


def _confusion_html(summary: dict) -> str:
    rows = []
    for n, e in summary["variants"].items():
        c = e["confusion"]
        rows.append(f"<tr><td>{html.escape(n)}</td><td>{c['tp']}</td><td>{c['fn']}</td><td>{c['fp']}</td>"
                    f"<td>{c['tn']}</td></tr>")
    return ("<table><tr><th>model</th><th>TP</th><th>FN</th><th>FP</th><th>TN</th></tr>" + "".join(rows)
            + "</table>")


def _md_to_html_table(md: str) -> str:
    lines = [ln for ln in md.strip().splitlines() if ln.startswith("|")]
    out = ["<table>"]
    for i, ln in enumerate(lines):
        if i == 1:
            continue
        cells = [html.escape(c.strip()) for c in ln.strip("|").split("|")]
        tag = "th" if i == 0 else "td"
        out.append("<tr>" + "".join(f"<{tag}>{c}</{tag}>" for c in cells) + "</tr>")
    return "\n".join(out + ["</table>"])


def _md_to_html(md: str) -> str:
    """The few Markdown forms results_markdown writes: headings, paragraphs, pipe tables."""
    out = []
    for block in md.strip().split("\n\n"):
        block = block.strip()
        if not block:
            continue
        if block.startswith("|"):
            out.append(_md_to_html_table(block))
        elif block.startswith("#"):
            out.append(f"<h1>{html.escape(block.lstrip('#').strip())}</h1>")
        else:
            out.append(f"<p>{html.escape(block)}</p>")
    return "\n".join(out)


def write_report(out_dir, results: dict, montage: dict | None = None) -> Path:
    """report.html: the tables of results.md, ROC/PR with CI bands, calibration, confusion, label
    efficiency, montages of top false positives / negatives, and the run record."""
    from . import figures as F

    s = results["summary"]
    img = lambda b64: f'<img src="data:image/png;base64,{b64}">'  # noqa: E731
    parts = [_md_to_html(results_markdown(results)),
             "<h2>ROC and precision–recall (first repeat; bands: 95 % patient bootstrap)</h2>",
             img(F.roc_pr_figure(s["variants"])),
             "<h2>Calibration (first repeat)</h2>", img(F.calibration_figure(s["variants"])),
             "<h2>Confusion at the operating point (first repeat)</h2>", _confusion_html(s)]
    if results.get("label_efficiency"):
        parts += ["<h2>Label efficiency</h2>", img(F.label_efficiency_figure(results["label_efficiency"]))]
    if montage:
        parts.append("<h2>Top false positives and false negatives (centre slice; red: lesion mask)</h2>")
        for title, items in montage.items():
            if items:
                parts.append(img(F.montage_figure(items, title)))
    parts.append(f"<h2>Run</h2><pre>{html.escape(_run_text(results))}</pre>")
    style = ("body{font-family:sans-serif;max-width:1200px;margin:auto}table{border-collapse:collapse;"
             "font-size:12px;margin:8px 0}td,th{border:1px solid #ccc;padding:3px 6px}img{max-width:100%}")
    doc = (f"<!doctype html><html><head><meta charset='utf-8'><title>rimscope evaluate</title>"
           f"<style>{style}</style></head><body>{''.join(parts)}</body></html>")
    path = Path(out_dir) / "report.html"
    write_text_atomic(path, doc)
    return path


def _run_text(results: dict) -> str:
    import json

    keep = {k: results.get(k) for k in ("command", "config", "versions", "seconds")}
    return json.dumps(keep, indent=1, default=lambda o: o.tolist() if isinstance(o, np.ndarray) else str(o))


def montage_items(data, rows: list[dict], variant: str, k: int = 8) -> dict:
    """Top-k false positives (highest-scored Rim-) and false negatives (lowest-scored Rim+) of a
    variant's first repeat, with their patches (x[:,0] QSM, x[:,1] FLAIR)."""
    sel = [r for r in rows if r["variant"] == variant and r["repeat"] == 0]
    pos = {(str(s), int(i)): j for j, (s, i) in enumerate(zip(data.subject, data.lesion_id))}
    fp = sorted([r for r in sel if r["y"] == 0 and r["call"] == 1], key=lambda r: -r["probability"])[:k]
    fn = sorted([r for r in sel if r["y"] == 1 and r["call"] == 0], key=lambda r: r["probability"])[:k]

    def items(rs):
        return [{"x": data.x[pos[(r["subject"], r["lesion_id"])]],
                 "caption": f"{r['subject']}#{r['lesion_id']} p={r['probability']:.2f}"} for r in rs]
    return {f"{variant}: top false positives": items(fp), f"{variant}: top false negatives": items(fn)}
