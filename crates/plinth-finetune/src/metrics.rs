//! Evaluation metrics for finetuned tasks, computed in f64 on the host.

use std::collections::BTreeMap;

/// Metric name to value, ordered for stable reports.
pub type Metrics = BTreeMap<String, f64>;

/// True when `metric` improves as it grows.
pub fn higher_is_better(metric: &str) -> bool {
    !matches!(metric, "rmse" | "mae" | "loss" | "perplexity")
}

/// Accuracy, macro-F1 and (binary only) ROC-AUC from class probabilities (N, K).
pub fn classification(probs: &[Vec<f64>], labels: &[usize]) -> Metrics {
    let k = probs.first().map_or(0, Vec::len);
    let pred: Vec<usize> = probs
        .iter()
        .map(|p| p.iter().enumerate().fold((0, f64::MIN), |b, (i, &v)| if v > b.1 { (i, v) } else { b }).0)
        .collect();
    let n = labels.len().max(1) as f64;
    let mut out = Metrics::new();
    out.insert("accuracy".into(), pred.iter().zip(labels).filter(|(p, y)| p == y).count() as f64 / n);
    let mut f1s = Vec::new();
    for c in 0..k {
        let tp = pred.iter().zip(labels).filter(|(p, y)| **p == c && **y == c).count() as f64;
        let fp = pred.iter().zip(labels).filter(|(p, y)| **p == c && **y != c).count() as f64;
        let fneg = pred.iter().zip(labels).filter(|(p, y)| **p != c && **y == c).count() as f64;
        f1s.push(if tp == 0.0 { 0.0 } else { 2.0 * tp / (2.0 * tp + fp + fneg) });
    }
    out.insert("macro_f1".into(), f1s.iter().sum::<f64>() / f1s.len().max(1) as f64);
    if k == 2 {
        let scores: Vec<f64> = probs.iter().map(|p| p[1]).collect();
        let positive: Vec<bool> = labels.iter().map(|&y| y == 1).collect();
        out.insert("roc_auc".into(), roc_auc(&scores, &positive));
    }
    out
}

/// Area under the ROC curve by the rank-sum (Mann–Whitney U) formula, ties
/// sharing their average rank; 0.5 when one class is absent.
pub fn roc_auc(scores: &[f64], positive: &[bool]) -> f64 {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let mut ranks = vec![0.0; scores.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        for &o in &order[i..=j] {
            ranks[o] = avg;
        }
        i = j + 1;
    }
    let n_pos = positive.iter().filter(|&&p| p).count() as f64;
    let n_neg = positive.len() as f64 - n_pos;
    if n_pos == 0.0 || n_neg == 0.0 {
        return 0.5;
    }
    let rank_sum: f64 = ranks.iter().zip(positive).filter(|(_, &p)| p).map(|(r, _)| r).sum();
    (rank_sum - n_pos * (n_pos + 1.0) / 2.0) / (n_pos * n_neg)
}

/// RMSE, MAE and R² of predictions against targets.
pub fn regression(pred: &[f64], target: &[f64]) -> Metrics {
    let n = target.len().max(1) as f64;
    let mse = pred.iter().zip(target).map(|(p, y)| (p - y).powi(2)).sum::<f64>() / n;
    let mae = pred.iter().zip(target).map(|(p, y)| (p - y).abs()).sum::<f64>() / n;
    let mean = target.iter().sum::<f64>() / n;
    let var = target.iter().map(|y| (y - mean).powi(2)).sum::<f64>() / n;
    let mut out = Metrics::new();
    out.insert("rmse".into(), mse.sqrt());
    out.insert("mae".into(), mae);
    out.insert("r2".into(), if var > 0.0 { 1.0 - mse / var } else { 0.0 });
    out
}

/// Metrics of a multi-output regression (`multilabel = false`: values) or a
/// multi-label task (`multilabel = true`: probabilities), `pred` and `target` (N,
/// outputs) with NaN where a row lacks an entry: each output's metrics over the
/// rows that have it, as `<metric>.<name>`, and their mean as `<metric>`, as
/// MoleculeNet reports multi-task results. A label whose rows are all of one
/// class has no ROC-AUC and is left out of the mean (all such: 0.5).
pub fn multi_target(pred: &[Vec<f64>], target: &[Vec<f64>], names: &[String], multilabel: bool) -> Metrics {
    let mut out = Metrics::new();
    let mut sums: BTreeMap<String, (f64, usize)> = BTreeMap::new();
    for (j, name) in names.iter().enumerate() {
        let (p, y): (Vec<f64>, Vec<f64>) =
            pred.iter().zip(target).filter(|(_, t)| !t[j].is_nan()).map(|(p, t)| (p[j], t[j])).unzip();
        if y.is_empty() {
            continue;
        }
        let each = if multilabel {
            let probs: Vec<Vec<f64>> = p.iter().map(|&q| vec![1.0 - q, q]).collect();
            let labels: Vec<usize> = y.iter().map(|&v| v as usize).collect();
            let mut m = classification(&probs, &labels);
            // Per label, F1 of the positive class is what a multi-label macro-F1 averages.
            let (tp, fp, fneg) =
                p.iter().zip(&labels).fold((0.0, 0.0, 0.0), |(tp, fp, fneg), (&q, &l)| match (q >= 0.5, l == 1) {
                    (true, true) => (tp + 1.0, fp, fneg),
                    (true, false) => (tp, fp + 1.0, fneg),
                    (false, true) => (tp, fp, fneg + 1.0),
                    (false, false) => (tp, fp, fneg),
                });
            m.insert("macro_f1".into(), if tp == 0.0 { 0.0 } else { 2.0 * tp / (2.0 * tp + fp + fneg) });
            if labels.iter().all(|&l| l == labels[0]) {
                m.remove("roc_auc");
            }
            m
        } else {
            regression(&p, &y)
        };
        for (k, v) in each {
            out.insert(format!("{k}.{name}"), v);
            let s = sums.entry(k).or_insert((0.0, 0));
            s.0 += v;
            s.1 += 1;
        }
    }
    for (k, (sum, n)) in sums {
        out.insert(k, sum / n as f64);
    }
    if multilabel {
        out.entry("roc_auc".into()).or_insert(0.5);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_matches_hand_counts() {
        // Pairs (pos, neg): (0.9,0.1) (0.9,0.4) (0.35,0.1) (0.35,0.4)=wrong -> 3/4.
        let auc = roc_auc(&[0.1, 0.4, 0.35, 0.9], &[false, false, true, true]);
        assert!((auc - 0.75).abs() < 1e-12, "{auc}");
        assert_eq!(roc_auc(&[0.5, 0.5], &[true, false]), 0.5, "a tie counts half");
        assert_eq!(roc_auc(&[0.1, 0.2], &[true, true]), 0.5);
    }

    #[test]
    fn classification_metrics_by_hand() {
        let probs = vec![vec![0.9, 0.1], vec![0.2, 0.8], vec![0.6, 0.4], vec![0.3, 0.7]];
        let m = classification(&probs, &[0, 1, 1, 1]);
        assert_eq!(m["accuracy"], 0.75);
        // class 0: tp 1, fp 1, fn 0 -> 2/3; class 1: tp 2, fp 0, fn 1 -> 4/5.
        assert!((m["macro_f1"] - (2.0 / 3.0 + 0.8) / 2.0).abs() < 1e-12);
        assert!((m["roc_auc"] - 1.0).abs() < 1e-12);
    }

    #[test]
    fn multi_target_metrics_skip_missing_entries_and_average_targets() {
        let nan = f64::NAN;
        let names = ["a".to_string(), "b".to_string()];
        let pred = vec![vec![0.9, 0.2], vec![0.1, 0.7], vec![0.8, 0.6], vec![0.3, 0.1]];
        let target = vec![vec![1.0, 0.0], vec![0.0, nan], vec![1.0, 1.0], vec![nan, 1.0]];
        let m = multi_target(&pred, &target, &names, true);
        // a: rows 0-2, perfectly ranked; b: rows 0, 2, 3 -> pairs (0.6 vs 0.2) right, (0.1 vs 0.2) wrong.
        assert_eq!((m["roc_auc.a"], m["roc_auc.b"], m["roc_auc"]), (1.0, 0.5, 0.75));
        assert_eq!(m["accuracy.a"], 1.0);
        assert!((m["accuracy.b"] - 2.0 / 3.0).abs() < 1e-12);
        let one_class = multi_target(&pred, &vec![vec![1.0, nan]; 4], &names, true);
        assert_eq!(one_class["roc_auc"], 0.5, "no label with both classes: no ROC-AUC to average");
        let reg = multi_target(&[vec![1.0, 2.0], vec![3.0, 0.0]], &[vec![1.0, nan], vec![5.0, 0.0]], &names, false);
        assert_eq!((reg["rmse.a"], reg["rmse.b"]), (2.0f64.sqrt(), 0.0));
        assert_eq!(reg["rmse"], 2.0f64.sqrt() / 2.0);
    }

    #[test]
    fn regression_metrics_by_hand() {
        let m = regression(&[1.0, 2.0, 3.0], &[1.0, 2.0, 5.0]);
        assert!((m["rmse"] - (4.0f64 / 3.0).sqrt()).abs() < 1e-12);
        assert!((m["mae"] - 2.0 / 3.0).abs() < 1e-12);
        // mean 8/3, var = ((5/3)^2 + (2/3)^2 + (7/3)^2)/3 = 78/27.
        assert!((m["r2"] - (1.0 - (4.0 / 3.0) / (78.0 / 27.0))).abs() < 1e-12);
        assert!(!higher_is_better("rmse") && higher_is_better("roc_auc"));
    }
}
