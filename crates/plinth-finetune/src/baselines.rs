//! Simple baselines trained in the same run on the same split, so a finetuned
//! number always stands beside one a reader can judge it by:
//!
//! * `majority` (classification, multi-label): the training prior for every row;
//!   `mean` (regression): the training mean;
//! * `bag_of_tokens`: a linear model on L2-normalised token-presence vectors over
//!   the base tokenizer's vocabulary: logistic regression (Adam, full batch, 300
//!   steps) or ridge regression (closed form), its L2 strength picked from
//!   1e-4..1 on the validation split;
//! * with domain features (a molecule's ECFP4 bits): the same linear model on
//!   them (`<features>_linear`) and a random forest (`<features>_forest`,
//!   smartcore: 100 trees, √features tried per split over the features that vary
//!   in training, bootstrap, seed 0) fitted per output: the value, or the
//!   indicator of each class or label, whose forest mean is its probability.
//!
//! A multi-output or multi-label task is fitted one output at a time on the rows
//! that have it, and scored like the finetuned model.

use plinth_plugin_protocol::{TaskKind, TaskSpec};
use tch::{Device, Kind, Tensor};

use crate::data::Encoded;
use crate::metrics::{self, higher_is_better, Metrics};

/// L2-normalised token-presence rows (N, vocab) as a sparse COO matrix: a few
/// dozen non-zeros per row, so the linear models below cost little even for
/// vocabularies of thousands.
fn features(rows_of: &[Vec<u32>], vocab: i64) -> Tensor {
    let (mut rows, mut cols, mut vals) = (Vec::new(), Vec::new(), Vec::new());
    for (i, seq) in rows_of.iter().enumerate() {
        let mut uniq: Vec<i64> = seq.iter().map(|&t| t as i64).collect();
        uniq.sort_unstable();
        uniq.dedup();
        let w = 1.0 / (uniq.len().max(1) as f32).sqrt();
        for t in uniq {
            rows.push(i as i64);
            cols.push(t);
            vals.push(w);
        }
    }
    let nnz = rows.len() as i64;
    let indices = Tensor::cat(&[Tensor::from_slice(&rows), Tensor::from_slice(&cols)], 0).view([2, nnz]);
    Tensor::sparse_coo_tensor_indices_size(
        &indices,
        &Tensor::from_slice(&vals),
        [rows_of.len() as i64, vocab],
        (Kind::Float, Device::Cpu),
        true,
    )
}

/// Metrics of a prediction on `data`: class probabilities (N, K), values (N,
/// outputs) or label probabilities (N, labels).
pub fn score(spec: &TaskSpec, pred: &Tensor, data: &Encoded) -> Metrics {
    let rows = || Vec::<Vec<f64>>::try_from(pred.to_kind(Kind::Double)).unwrap_or_default();
    match spec.kind {
        TaskKind::Generation => Metrics::new(),
        TaskKind::Classification => {
            let labels: Vec<usize> = data.labels.iter().map(|l| l[0] as usize).collect();
            metrics::classification(&rows(), &labels)
        }
        _ if spec.multi_target() => {
            metrics::multi_target(&rows(), &data.labels, &spec.targets, spec.kind == TaskKind::MultiLabel)
        }
        _ => {
            let values: Vec<f64> = rows().into_iter().map(|r| r[0]).collect();
            let target: Vec<f64> = data.labels.iter().map(|l| l[0]).collect();
            metrics::regression(&values, &target)
        }
    }
}

/// Test metrics of each baseline, fitted on `train` and tuned on `val`, with the
/// domain-feature baselines when the spec declares features.
pub fn run(spec: &TaskSpec, vocab: i64, train: &Encoded, val: &Encoded, test: &Encoded) -> Vec<(String, Metrics)> {
    let mut out = Vec::new();
    if spec.kind == TaskKind::Generation {
        out.push(("unigram".to_string(), unigram_perplexity(train, test, vocab)));
        return out;
    }
    let name = if spec.kind == TaskKind::Regression { "mean" } else { "majority" };
    out.push((name.to_string(), score(spec, &prior(spec, train, test.len()), test)));
    let ids = |d: &Encoded| d.ids.clone();
    out.extend(linear_baseline("bag_of_tokens", spec, vocab, [train, val, test], ids));
    if let Some(f) = &spec.features {
        let feats = |d: &Encoded| d.features.clone();
        out.extend(linear_baseline(&format!("{}_linear", f.name), spec, f.size as i64, [train, val, test], feats));
        match forest(spec, f.size, train, test) {
            Ok(pred) => out.push((format!("{}_forest", f.name), score(spec, &pred, test))),
            Err(e) => tracing::warn!("the random forest baseline failed: {e}"),
        }
    }
    out
}

/// The training prior for `n` rows: class frequencies, each label's positive
/// share, or each output's mean (over the rows that have it).
fn prior(spec: &TaskSpec, train: &Encoded, n: usize) -> Tensor {
    let row: Vec<f64> = match spec.kind {
        TaskKind::Classification => {
            let mut p = vec![0.0; spec.labels.len()];
            train.labels.iter().for_each(|l| p[l[0] as usize] += 1.0 / train.len() as f64);
            p
        }
        _ => crate::data::label_scales(&train.labels).into_iter().map(|(mean, _)| mean).collect(),
    };
    Tensor::from_slice(&row).unsqueeze(0).expand([n as i64, row.len() as i64], false).contiguous()
}

/// The outputs fitted one at a time: `(rows that have it, target)` per output, as
/// a single-output regression (values) or a binary classification (0/1).
fn per_output(data: &Encoded) -> Vec<(Vec<usize>, Vec<f64>)> {
    let width = data.labels.first().map_or(0, Vec::len);
    (0..width)
        .map(|j| (0..data.len()).filter(|&i| !data.labels[i][j].is_nan()).map(|i| (i, data.labels[i][j])).unzip())
        .collect()
}

/// Perplexity of an add-one-smoothed unigram model of the training tokens on the
/// test tokens (every token after `<bos>`), the floor a generation adapter must clear.
fn unigram_perplexity(train: &Encoded, test: &Encoded, vocab: i64) -> Metrics {
    let mut counts = vec![1.0f64; vocab as usize];
    let mut total = vocab as f64;
    for seq in &train.ids {
        for &t in seq.iter().skip(1) {
            counts[t as usize] += 1.0;
            total += 1.0;
        }
    }
    let (mut nll, mut n) = (0.0, 0usize);
    for seq in &test.ids {
        for &t in seq.iter().skip(1) {
            nll -= (counts[t as usize] / total).ln();
            n += 1;
        }
    }
    let mean = nll / n.max(1) as f64;
    [("loss".to_string(), mean), ("perplexity".to_string(), mean.exp())].into_iter().collect()
}

/// A linear model on sparse binary rows, its L2 strength chosen on validation
/// (by the task's metric; per output, by its own metric, for multi-target tasks).
fn linear_baseline(
    name: &str,
    spec: &TaskSpec,
    dim: i64,
    [train, val, test]: [&Encoded; 3],
    rows: impl Fn(&Encoded) -> Vec<Vec<u32>>,
) -> Option<(String, Metrics)> {
    let rtr = rows(train);
    let (xtr, xva, xte) = (features(&rtr, dim), features(&rows(val), dim), features(&rows(test), dim));
    if !spec.multi_target() {
        let kind = spec.kind;
        let labels: Vec<f64> = train.labels.iter().map(|l| l[0]).collect();
        let pred = tuned(kind, spec.labels.len(), &spec.metric, &xtr, &labels, &xva, &xte, |p| score(spec, p, val))?;
        return Some((name.to_string(), score(spec, &pred, test)));
    }
    // One output at a time, on the training rows that have it.
    let (kind, classes, metric) = match spec.kind {
        TaskKind::MultiLabel => (TaskKind::Classification, 2, "roc_auc"),
        _ => (TaskKind::Regression, 0, "rmse"),
    };
    let val_outputs = per_output(val);
    let mut columns = Vec::new();
    for (j, (at, y)) in per_output(train).into_iter().enumerate() {
        if at.is_empty() {
            columns.push(Tensor::full([test.len() as i64], f64::NAN, (Kind::Float, Device::Cpu)));
            continue;
        }
        let x = features(&at.iter().map(|&i| rtr[i].clone()).collect::<Vec<_>>(), dim);
        let (vat, vy) = &val_outputs[j];
        let pick = |p: &Tensor| -> Metrics {
            let p = p.index_select(0, &Tensor::from_slice(&vat.iter().map(|&i| i as i64).collect::<Vec<_>>()));
            let got = Vec::<Vec<f64>>::try_from(p.to_kind(Kind::Double)).unwrap_or_default();
            match kind {
                TaskKind::Classification => {
                    metrics::classification(&got, &vy.iter().map(|&v| v as usize).collect::<Vec<_>>())
                }
                _ => metrics::regression(&got.iter().map(|r| r[0]).collect::<Vec<_>>(), vy),
            }
        };
        let pred = tuned(kind, classes, metric, &x, &y, &xva, &xte, pick)?;
        columns.push(if kind == TaskKind::Classification { pred.select(1, 1) } else { pred.view([-1]) });
    }
    Some((name.to_string(), score(spec, &Tensor::stack(&columns, 1), test)))
}

/// Fits `kind` for each L2 strength and returns the test prediction of the one
/// whose validation prediction `judge` scores best on `metric`.
#[allow(clippy::too_many_arguments)]
fn tuned(
    kind: TaskKind,
    classes: usize,
    metric: &str,
    xtr: &Tensor,
    labels: &[f64],
    xva: &Tensor,
    xte: &Tensor,
    judge: impl Fn(&Tensor) -> Metrics,
) -> Option<Tensor> {
    let mut best: Option<(f64, Tensor)> = None;
    for lambda in [1e-4, 1e-3, 1e-2, 1e-1, 1.0] {
        let predict = fit_linear(kind, classes, xtr, labels, lambda);
        let m = judge(&predict(xva)).get(metric).copied().unwrap_or(f64::NAN);
        let better =
            best.as_ref().is_none_or(|(b, _)| b.is_nan() || if higher_is_better(metric) { m > *b } else { m < *b });
        if better {
            best = Some((m, predict(xte)));
        }
    }
    best.map(|(_, pred)| pred)
}

/// A random forest per output on dense copies of the feature rows: the value,
/// or each class's (label's) indicator, whose forest mean is its probability;
/// several classes' probabilities are normalised to sum to 1.
fn forest(spec: &TaskSpec, dim: usize, train: &Encoded, test: &Encoded) -> Result<Tensor, String> {
    use smartcore::ensemble::random_forest_regressor::{RandomForestRegressor, RandomForestRegressorParameters};
    use smartcore::linalg::basic::matrix::DenseMatrix;
    // Dense rows over `keep`, the feature columns that vary among the training rows:
    // smartcore tries exactly √columns features per split and makes a leaf when all
    // of them are constant, so columns that never vary would only end trees early.
    let dense = |rows: &[&Vec<u32>], keep: &[Option<usize>], width: usize| -> Result<DenseMatrix<f64>, String> {
        let mut values = vec![0.0; rows.len() * width];
        for (i, r) in rows.iter().enumerate() {
            r.iter().filter_map(|&k| keep.get(k as usize).copied().flatten()).for_each(|k| values[i * width + k] = 1.0);
        }
        DenseMatrix::new(rows.len(), width.max(1), if width == 0 { vec![0.0; rows.len()] } else { values }, false)
            .map_err(|e| e.to_string())
    };
    // (training rows, target) per fitted output.
    let outputs: Vec<(Vec<usize>, Vec<f64>)> = match spec.kind {
        TaskKind::Classification => {
            let all: Vec<usize> = (0..train.len()).collect();
            let fitted = if spec.labels.len() == 2 { 1..2 } else { 0..spec.labels.len() };
            fitted
                .map(|c| (all.clone(), train.labels.iter().map(|l| f64::from(l[0] as usize == c)).collect()))
                .collect()
        }
        _ => per_output(train),
    };
    let test_rows: Vec<&Vec<u32>> = test.features.iter().collect();
    let mut columns = Vec::new();
    for (at, y) in outputs {
        if at.is_empty() {
            columns.push(vec![f64::NAN; test.len()]);
            continue;
        }
        let rows: Vec<&Vec<u32>> = at.iter().map(|&i| &train.features[i]).collect();
        let mut set = vec![0usize; dim];
        rows.iter().for_each(|r| r.iter().for_each(|&k| set[k as usize] += 1));
        let mut width = 0;
        let keep: Vec<Option<usize>> = set
            .iter()
            .map(|&c| {
                (c > 0 && c < rows.len()).then(|| {
                    width += 1;
                    width - 1
                })
            })
            .collect();
        let x = dense(&rows, &keep, width)?;
        let params = RandomForestRegressorParameters::default().with_n_trees(100).with_seed(0);
        let model = RandomForestRegressor::fit(&x, &y, params).map_err(|e| e.to_string())?;
        columns.push(model.predict(&dense(&test_rows, &keep, width)?).map_err(|e| e.to_string())?);
    }
    let mut rows: Vec<Vec<f64>> = (0..test.len()).map(|i| columns.iter().map(|c| c[i]).collect()).collect();
    if spec.kind == TaskKind::Classification {
        for r in &mut rows {
            if r.len() == 1 {
                *r = vec![1.0 - r[0], r[0]];
            } else {
                let sum: f64 = r.iter().sum();
                r.iter_mut().for_each(|p| *p = if sum > 0.0 { *p / sum } else { 1.0 / spec.labels.len() as f64 });
            }
        }
    }
    let flat: Vec<f64> = rows.concat();
    Ok(Tensor::from_slice(&flat).view([test.len() as i64, -1]))
}

/// Fits a linear model with L2 strength `lambda`; returns its predictor.
fn fit_linear(
    kind: TaskKind,
    classes: usize,
    x: &Tensor,
    labels: &[f64],
    lambda: f64,
) -> Box<dyn Fn(&Tensor) -> Tensor> {
    let d = x.size()[1];
    match kind {
        TaskKind::Regression => {
            let x = x.to_dense(None, false);
            let y = Tensor::from_slice(labels).to_kind(Kind::Float).view([-1, 1]);
            let mean = y.mean(Kind::Float);
            let xm = x.mean_dim(0, true, Kind::Float);
            let xc = x - &xm;
            let a = xc.transpose(0, 1).matmul(&xc) + Tensor::eye(d, (Kind::Float, Device::Cpu)) * lambda;
            let w = Tensor::linalg_solve(&a, &xc.transpose(0, 1).matmul(&(&y - &mean)), true);
            Box::new(move |z: &Tensor| (z.to_dense(None, false) - &xm).matmul(&w) + &mean)
        }
        TaskKind::Generation | TaskKind::MultiLabel => Box::new(|z: &Tensor| z.shallow_clone()),
        TaskKind::Classification => {
            // Gradients by hand with CSR copies of X and Xᵀ made once: autograd
            // through a sparse mm would transpose and coalesce X at every step.
            let n = labels.len() as f64;
            let y = Tensor::from_slice(&labels.iter().map(|&l| l as i64).collect::<Vec<_>>());
            let onehot = y.one_hot(classes as i64).to_kind(Kind::Float);
            let x_rows = x.to_sparse_csr(None);
            let xt_rows = x.transpose(0, 1).coalesce().to_sparse_csr(None);
            let w = Tensor::zeros([d, classes as i64], (Kind::Float, Device::Cpu));
            let b = Tensor::zeros([classes as i64], (Kind::Float, Device::Cpu));
            let mut opt = plinth_train::optim::AdamW::new(
                vec![("w".into(), w.shallow_clone()), ("b".into(), b.shallow_clone())],
                plinth_train::optim::AdamWConfig { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0 },
            );
            for _ in 0..300 {
                let residual = ((x_rows.mm(&w) + &b).softmax(-1, Kind::Float) - &onehot) / n; // (N, K)
                let gw = xt_rows.mm(&residual) + &w * (2.0 * lambda);
                let gb = residual.sum_dim_intlist(0, false, Kind::Float);
                opt.step(&[gw, gb], 0.1).expect("AdamW on the baseline's own f32 tensors");
            }
            let (w, b) = (w.detach(), b.detach());
            Box::new(move |z: &Tensor| (z.to_sparse_csr(None).mm(&w) + &b).softmax(-1, Kind::Float))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use plinth_plugin_protocol::FeatureSpec;

    /// Rows whose label is carried by one token: 10 means class 1 (or value +2).
    fn data(n: usize, offset: usize) -> Encoded {
        let mut enc = Encoded::default();
        for i in offset..offset + n {
            let signal = i % 2 == 0;
            enc.ids.push(vec![1, (20 + i % 7) as u32, if signal { 10 } else { 11 }, 2]);
            enc.labels.push(vec![if signal { 1.0 } else { 0.0 }]);
            enc.texts.push(String::new());
            enc.features.push(vec![if signal { 3 } else { 4 }]);
        }
        enc
    }

    fn spec(kind: TaskKind, labels: &[&str], targets: &[&str], metric: &str) -> TaskSpec {
        TaskSpec {
            kind,
            labels: labels.iter().map(|s| s.to_string()).collect(),
            targets: targets.iter().map(|s| s.to_string()).collect(),
            data: String::new(),
            metric: metric.into(),
            source: String::new(),
            features: Some(FeatureSpec { name: "fp".into(), size: 8 }),
            input_check: None,
            completion: None,
            head: None,
        }
    }

    #[test]
    fn bag_of_tokens_learns_a_token_signal_and_majority_does_not() {
        let (train, val, test) = (data(60, 0), data(20, 100), data(20, 200));
        let out = run(&spec(TaskKind::Classification, &["no", "yes"], &[], "accuracy"), 32, &train, &val, &test);
        let get = |name: &str| &out.iter().find(|(n, _)| n == name).expect(name).1;
        assert_eq!(get("bag_of_tokens")["accuracy"], 1.0);
        assert_eq!(get("majority")["accuracy"], 0.5);
        assert_eq!(get("majority")["roc_auc"], 0.5);
        assert_eq!(get("fp_linear")["accuracy"], 1.0);
        assert_eq!(get("fp_forest")["roc_auc"], 1.0);
        let mut reg = (train, val, test);
        for d in [&mut reg.0, &mut reg.1, &mut reg.2] {
            d.labels.iter_mut().for_each(|l| l[0] = l[0] * 2.0 - 1.0);
        }
        let out = run(&spec(TaskKind::Regression, &[], &[], "rmse"), 32, &reg.0, &reg.1, &reg.2);
        let get = |name: &str| &out.iter().find(|(n, _)| n == name).expect(name).1;
        assert!(get("bag_of_tokens")["r2"] > 0.9, "{:?}", get("bag_of_tokens"));
        assert!(get("fp_forest")["r2"] > 0.9, "{:?}", get("fp_forest"));
        assert!(get("mean")["r2"].abs() < 1e-9);
    }

    #[test]
    fn several_outputs_are_fitted_one_at_a_time_on_the_rows_that_have_them() {
        // Label a follows the signal token, label b its opposite; b is missing on every third row.
        let two = |d: Encoded| Encoded {
            labels: d
                .labels
                .iter()
                .enumerate()
                .map(|(i, l)| vec![l[0], if i % 3 == 0 { f64::NAN } else { 1.0 - l[0] }])
                .collect(),
            ..d
        };
        let (train, val, test) = (two(data(60, 0)), two(data(20, 100)), two(data(20, 200)));
        let s = spec(TaskKind::MultiLabel, &[], &["a", "b"], "roc_auc");
        let out = run(&s, 32, &train, &val, &test);
        let get = |name: &str| &out.iter().find(|(n, _)| n == name).expect(name).1;
        for name in ["bag_of_tokens", "fp_linear", "fp_forest"] {
            assert_eq!((get(name)["roc_auc.a"], get(name)["roc_auc.b"]), (1.0, 1.0), "{name}");
        }
        assert_eq!(get("majority")["roc_auc"], 0.5);
        let s = spec(TaskKind::Regression, &[], &["a", "b"], "rmse");
        let out = run(&s, 32, &train, &val, &test);
        let get = |name: &str| &out.iter().find(|(n, _)| n == name).expect(name).1;
        assert!(get("bag_of_tokens")["r2.b"] > 0.9 && get("fp_forest")["r2"] > 0.9, "{out:?}");
    }
}
