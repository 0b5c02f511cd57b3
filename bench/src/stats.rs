//! Per-round measurements, medians, ratios to the no-audit baseline of the
//! same round, targets, and the summary table (text and JSON).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::{Value, json};

/// Which capture is enabled during a measurement (exactly one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Variant {
    /// No capture: pgtrail's triggers disabled, no row trigger.
    NoAudit,
    /// pgtrail's statement-level capture triggers enabled.
    Pgtrail,
    /// The comparison row-level trigger (`bench/sql/row_trigger.sql`) enabled.
    RowTrigger,
    /// The comparison lower bound (`bench/sql/insert_floor.sql`) enabled: a
    /// statement-level trigger that only inserts one indexed trail row per
    /// changed row, with no context, no diff and no pairing.
    InsertFloor,
}

impl Variant {
    /// The variants that capture something, in the order the summary shows
    /// them.
    pub const AUDITED: [Variant; 3] = [Variant::Pgtrail, Variant::RowTrigger, Variant::InsertFloor];

    /// Short name for tables and JSON.
    pub fn label(self) -> &'static str {
        match self {
            Variant::NoAudit => "no-audit",
            Variant::Pgtrail => "pgtrail",
            Variant::RowTrigger => "row-trigger",
            Variant::InsertFloor => "insert-floor",
        }
    }
}

/// The variants in round `round`'s order: rotated by one each round, so each
/// goes first equally often (A B, B A, ... for two).
pub fn round_order(variants: &[Variant], round: usize) -> Vec<Variant> {
    let mut order = variants.to_vec();
    if !order.is_empty() {
        let shift = round % order.len();
        order.rotate_left(shift);
    }
    order
}

/// What a metric must reach for the audited variants.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Target {
    /// Median of per-round ratios audited/no-audit at least this.
    RatioAtLeast(f64),
    /// Median of per-round ratios audited/no-audit at most this.
    RatioAtMost(f64),
    /// Median audited value at most this (no baseline).
    ValueAtMost(f64),
    /// Reported only.
    None,
}

impl Target {
    fn describe(self) -> String {
        match self {
            Target::RatioAtLeast(x) => format!("ratio >= {x:.2}"),
            Target::RatioAtMost(x) => format!("ratio <= {x:.2}"),
            Target::ValueAtMost(x) => format!("<= {x}"),
            Target::None => "-".to_owned(),
        }
    }

    fn check(self, value: f64, ratio: Option<f64>) -> Option<bool> {
        match self {
            Target::RatioAtLeast(x) => ratio.map(|r| r >= x),
            Target::RatioAtMost(x) => ratio.map(|r| r <= x),
            Target::ValueAtMost(x) => Some(value <= x),
            Target::None => None,
        }
    }
}

/// One metric of one workload, measured for some variants in every round.
#[derive(Debug, Clone)]
pub struct Series {
    /// e.g. "b single-row UPDATE".
    pub workload: String,
    /// e.g. "tps".
    pub metric: String,
    /// Applied to every audited variant.
    pub target: Target,
    rounds: Vec<BTreeMap<Variant, f64>>,
}

/// One line of the summary: one metric of one audited variant.
#[derive(Debug, Clone, PartialEq)]
pub struct SummaryRow {
    pub workload: String,
    pub metric: String,
    pub variant: Variant,
    /// Median of the no-audit values, when the metric has a baseline.
    pub baseline: Option<f64>,
    /// Median of this variant's values.
    pub audited: f64,
    /// Median of the per-round ratios to the same round's baseline.
    pub ratio: Option<f64>,
    pub target: String,
    pub pass: Option<bool>,
}

impl Series {
    pub fn new(workload: &str, metric: &str, target: Target) -> Series {
        Series {
            workload: workload.to_owned(),
            metric: metric.to_owned(),
            target,
            rounds: Vec::new(),
        }
    }

    /// Records `value` for `variant` in round `round` (0-based).
    pub fn record(&mut self, round: usize, variant: Variant, value: f64) {
        if self.rounds.len() <= round {
            self.rounds.resize_with(round + 1, BTreeMap::new);
        }
        self.rounds[round].insert(variant, value);
    }

    /// `variant`'s value divided by the no-audit value of the same round.
    pub fn round_ratio(&self, round: usize, variant: Variant) -> Option<f64> {
        let values = self.rounds.get(round)?;
        let base = *values.get(&Variant::NoAudit)?;
        let value = *values.get(&variant)?;
        (base != 0.0).then(|| value / base)
    }

    fn values(&self, variant: Variant) -> Vec<f64> {
        self.rounds
            .iter()
            .filter_map(|r| r.get(&variant).copied())
            .collect()
    }

    /// One row per audited variant that was measured.
    pub fn summary(&self) -> Vec<SummaryRow> {
        let baseline = median(&self.values(Variant::NoAudit));
        Variant::AUDITED
            .into_iter()
            .filter_map(|variant| {
                let audited = median(&self.values(variant))?;
                let ratios: Vec<f64> = (0..self.rounds.len())
                    .filter_map(|r| self.round_ratio(r, variant))
                    .collect();
                let ratio = median(&ratios);
                Some(SummaryRow {
                    workload: self.workload.clone(),
                    metric: self.metric.clone(),
                    variant,
                    baseline,
                    audited,
                    ratio,
                    target: self.target.describe(),
                    pass: self.target.check(audited, ratio),
                })
            })
            .collect()
    }

    /// Every recorded value, by round and variant, plus per-round ratios.
    pub fn to_json(&self) -> Value {
        let rounds: Vec<Value> = self
            .rounds
            .iter()
            .enumerate()
            .map(|(i, values)| {
                let mut obj = serde_json::Map::new();
                obj.insert("round".into(), json!(i + 1));
                for (variant, value) in values {
                    obj.insert(variant.label().into(), json!(value));
                }
                for variant in Variant::AUDITED {
                    if let Some(ratio) = self.round_ratio(i, variant) {
                        obj.insert(format!("ratio_{}", variant.label()), json!(ratio));
                    }
                }
                Value::Object(obj)
            })
            .collect();
        json!({
            "workload": self.workload,
            "metric": self.metric,
            "target": self.target.describe(),
            "rounds": rounds,
        })
    }
}

/// The median (mean of the middle two for an even count); `None` when empty.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    Some(if sorted.len() % 2 == 0 {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    } else {
        sorted[mid]
    })
}

/// A number with a precision that suits its size.
pub fn fmt_value(value: f64) -> String {
    let abs = value.abs();
    if abs >= 1000.0 {
        format!("{value:.0}")
    } else if abs >= 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.3}")
    }
}

fn fmt_opt(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_owned(), fmt_value)
}

/// The summary rows as an aligned text table.
pub fn summary_table(rows: &[SummaryRow]) -> String {
    let header = [
        "workload", "metric", "variant", "no-audit", "audited", "ratio", "target", "result",
    ];
    let cells: Vec<[String; 8]> = rows
        .iter()
        .map(|r| {
            [
                r.workload.clone(),
                r.metric.clone(),
                r.variant.label().to_owned(),
                fmt_opt(r.baseline),
                fmt_value(r.audited),
                r.ratio.map_or_else(|| "-".to_owned(), |x| format!("{x:.3}")),
                r.target.clone(),
                match r.pass {
                    Some(true) => "PASS".to_owned(),
                    Some(false) => "FAIL".to_owned(),
                    None => "-".to_owned(),
                },
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &cells {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    // Text columns left-aligned, numbers right-aligned.
    let numeric = [false, false, false, true, true, true, false, false];
    let mut out = String::new();
    let mut line = |cols: &[String]| {
        let mut s = String::new();
        for (i, cell) in cols.iter().enumerate() {
            if i > 0 {
                s.push_str("  ");
            }
            if numeric[i] {
                let _ = write!(s, "{cell:>w$}", w = widths[i]);
            } else {
                let _ = write!(s, "{cell:<w$}", w = widths[i]);
            }
        }
        out.push_str(s.trim_end());
        out.push('\n');
    };
    line(&header.map(str::to_owned));
    line(&widths.map(|w| "-".repeat(w)));
    for row in &cells {
        line(row);
    }
    out
}

/// The summary rows as JSON.
pub fn summary_json(rows: &[SummaryRow]) -> Value {
    Value::Array(
        rows.iter()
            .map(|r| {
                json!({
                    "workload": r.workload,
                    "metric": r.metric,
                    "variant": r.variant.label(),
                    "median_no_audit": r.baseline,
                    "median_audited": r.audited,
                    "median_ratio": r.ratio,
                    "target": r.target,
                    "pass": r.pass,
                })
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
    }

    #[test]
    fn rotation_alternates_first() {
        let v = [Variant::NoAudit, Variant::Pgtrail];
        assert_eq!(round_order(&v, 0), vec![Variant::NoAudit, Variant::Pgtrail]);
        assert_eq!(round_order(&v, 1), vec![Variant::Pgtrail, Variant::NoAudit]);
    }

    #[test]
    fn rotation_puts_each_of_four_first_once() {
        let v = [
            Variant::NoAudit,
            Variant::Pgtrail,
            Variant::RowTrigger,
            Variant::InsertFloor,
        ];
        let firsts: Vec<Variant> = (0..4).map(|r| round_order(&v, r)[0]).collect();
        assert_eq!(firsts, v.to_vec());
        assert_eq!(
            round_order(&v, 3),
            vec![
                Variant::InsertFloor,
                Variant::NoAudit,
                Variant::Pgtrail,
                Variant::RowTrigger
            ]
        );
    }

    #[test]
    fn summary_has_one_row_per_measured_audited_variant() {
        let mut s = Series::new("w", "tps", Target::RatioAtLeast(0.9));
        s.record(0, Variant::NoAudit, 100.0);
        s.record(0, Variant::Pgtrail, 50.0);
        s.record(0, Variant::InsertFloor, 80.0);
        let rows = s.summary();
        let labels: Vec<&str> = rows.iter().map(|r| r.variant.label()).collect();
        assert_eq!(labels, ["pgtrail", "insert-floor"]);
        assert_eq!(rows[1].ratio, Some(0.8));
        assert_eq!(rows[1].pass, Some(false));
        let json = s.to_json();
        assert_eq!(json["rounds"][0]["ratio_insert-floor"], serde_json::json!(0.8));
    }

    #[test]
    fn ratio_is_median_of_per_round_ratios() {
        let mut s = Series::new("w", "tps", Target::RatioAtLeast(0.9));
        for (round, (base, audited)) in [(100.0, 95.0), (200.0, 150.0), (100.0, 92.0)]
            .into_iter()
            .enumerate()
        {
            s.record(round, Variant::NoAudit, base);
            s.record(round, Variant::Pgtrail, audited);
        }
        let rows = s.summary();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].baseline, Some(100.0));
        assert_eq!(rows[0].audited, 95.0);
        assert_eq!(rows[0].ratio, Some(0.92));
        assert_eq!(rows[0].pass, Some(true));
        assert!(summary_table(&rows).contains("PASS"));
    }
}
