//! Per-round measurements of the capture benchmark: medians, each audited
//! variant against the no-audit baseline of the same round (as a ratio, or
//! as what it adds), the targets that compare variants, and the summary
//! tables (text and JSON).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::{Value, json};

/// Which capture is enabled during a measurement (exactly one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Variant {
    /// No capture at all.
    NoAudit,
    /// pgtrail as built from this tree.
    Pgtrail,
    /// pgtrail with its trail (`pgtrail.change`) partitioned by month.
    PgtrailPartitioned,
    /// pgtrail 0.3.0, from its frozen install script: the "before".
    Pgtrail030,
    /// The row trigger of seed 002 (`bench/sql/seed_trigger.sql`).
    Seed002,
    /// A statement trigger that only inserts one indexed trail row per
    /// change (`bench/sql/insert_floor.sql`): the lower bound of any trigger.
    InsertFloor,
}

impl Variant {
    /// Every variant, in the order tables show them.
    pub const ALL: [Variant; 6] = [
        Variant::NoAudit,
        Variant::Pgtrail,
        Variant::PgtrailPartitioned,
        Variant::Pgtrail030,
        Variant::Seed002,
        Variant::InsertFloor,
    ];

    /// Short name for tables, JSON and `--variants`.
    pub fn label(self) -> &'static str {
        match self {
            Variant::NoAudit => "no-audit",
            Variant::Pgtrail => "pgtrail",
            Variant::PgtrailPartitioned => "pgtrail-partitioned",
            Variant::Pgtrail030 => "pgtrail-0.3.0",
            Variant::Seed002 => "seed-002",
            Variant::InsertFloor => "insert-floor",
        }
    }

    /// The variant named `label`.
    pub fn from_label(label: &str) -> Option<Variant> {
        Variant::ALL.into_iter().find(|v| v.label() == label)
    }
}

/// The variants in round `round`'s order: rotated by one each round, so each
/// goes first equally often.
pub fn round_order(variants: &[Variant], round: usize) -> Vec<Variant> {
    let mut order = variants.to_vec();
    if !order.is_empty() {
        let shift = round % order.len();
        order.rotate_left(shift);
    }
    order
}

/// How an audited variant is set against the baseline of its round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compare {
    /// audited / no-audit (throughput, wall time).
    Ratio,
    /// audited - no-audit (CPU per transaction or row, WAL bytes).
    Added,
    /// The audited value alone (bytes of trail per change).
    Value,
}

/// One metric of one workload, measured for some variants in every round.
#[derive(Debug, Clone)]
pub struct Series {
    /// e.g. "1-row UPDATE".
    pub workload: String,
    /// e.g. "tps, 4 clients".
    pub metric: String,
    pub compare: Compare,
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
    /// Median over rounds of the comparison with the same round's baseline
    /// (the ratio, or the added amount); the audited median for values.
    pub compared: f64,
    pub compare: Compare,
}

impl Series {
    pub fn new(workload: &str, metric: &str, compare: Compare) -> Series {
        Series {
            workload: workload.to_owned(),
            metric: metric.to_owned(),
            compare,
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

    /// `variant` against the no-audit value of round `round`.
    pub fn round_compared(&self, round: usize, variant: Variant) -> Option<f64> {
        let values = self.rounds.get(round)?;
        let value = *values.get(&variant)?;
        match self.compare {
            Compare::Value => Some(value),
            Compare::Ratio => {
                let base = *values.get(&Variant::NoAudit)?;
                (base != 0.0).then(|| value / base)
            }
            Compare::Added => Some(value - *values.get(&Variant::NoAudit)?),
        }
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
        Variant::ALL
            .into_iter()
            .filter(|v| *v != Variant::NoAudit)
            .filter_map(|variant| {
                let audited = median(&self.values(variant))?;
                let compared: Vec<f64> = (0..self.rounds.len())
                    .filter_map(|r| self.round_compared(r, variant))
                    .collect();
                Some(SummaryRow {
                    workload: self.workload.clone(),
                    metric: self.metric.clone(),
                    variant,
                    baseline: (self.compare != Compare::Value).then_some(baseline).flatten(),
                    audited,
                    compared: median(&compared)?,
                    compare: self.compare,
                })
            })
            .collect()
    }

    /// Every recorded value, by round and variant, plus each round's comparisons.
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
                if self.compare != Compare::Value {
                    for variant in values.keys().filter(|v| **v != Variant::NoAudit) {
                        if let Some(c) = self.round_compared(i, *variant) {
                            let key = match self.compare {
                                Compare::Ratio => "ratio",
                                _ => "added",
                            };
                            obj.insert(format!("{key}_{}", variant.label()), json!(c));
                        }
                    }
                }
                Value::Object(obj)
            })
            .collect();
        json!({
            "workload": self.workload,
            "metric": self.metric,
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

/// A left- or right-aligned text table.
pub fn table(header: &[&str], numeric: &[bool], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cols: &[String]| {
        let mut s = String::new();
        for (i, cell) in cols.iter().enumerate() {
            if i > 0 {
                s.push_str("  ");
            }
            if numeric.get(i).copied().unwrap_or(false) {
                let _ = write!(s, "{cell:>w$}", w = widths[i]);
            } else {
                let _ = write!(s, "{cell:<w$}", w = widths[i]);
            }
        }
        out.push_str(s.trim_end());
        out.push('\n');
    };
    line(&header.iter().map(|h| (*h).to_owned()).collect::<Vec<_>>());
    line(&widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>());
    for row in rows {
        line(row);
    }
    out
}

/// The summary rows as an aligned text table.
pub fn summary_table(rows: &[SummaryRow]) -> String {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.workload.clone(),
                r.metric.clone(),
                r.variant.label().to_owned(),
                r.baseline.map_or_else(|| "-".to_owned(), fmt_value),
                fmt_value(r.audited),
                match r.compare {
                    Compare::Ratio => format!("x{:.3}", r.compared),
                    Compare::Added => format!("+{}", fmt_value(r.compared)),
                    Compare::Value => "-".to_owned(),
                },
            ]
        })
        .collect();
    table(
        &[
            "workload",
            "metric",
            "variant",
            "no-audit",
            "audited",
            "vs no-audit",
        ],
        &[false, false, false, true, true, true],
        &cells,
    )
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
                    match r.compare {
                        Compare::Ratio => "median_ratio",
                        Compare::Added => "median_added",
                        Compare::Value => "median",
                    }: r.compared,
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
    fn rotation_puts_each_variant_first_once() {
        let v = [
            Variant::NoAudit,
            Variant::Pgtrail,
            Variant::Seed002,
            Variant::InsertFloor,
        ];
        let firsts: Vec<Variant> = (0..4).map(|r| round_order(&v, r)[0]).collect();
        assert_eq!(firsts, v.to_vec());
    }

    #[test]
    fn ratios_and_additions_are_medians_of_per_round_comparisons() {
        let mut tps = Series::new("w", "tps", Compare::Ratio);
        let mut cpu = Series::new("w", "cpu", Compare::Added);
        for (round, (base, audited)) in [(100.0, 95.0), (200.0, 150.0), (100.0, 92.0)]
            .into_iter()
            .enumerate()
        {
            for s in [&mut tps, &mut cpu] {
                s.record(round, Variant::NoAudit, base);
                s.record(round, Variant::Pgtrail, audited);
            }
        }
        let rows = tps.summary();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].baseline, Some(100.0));
        assert_eq!(rows[0].audited, 95.0);
        assert_eq!(rows[0].compared, 0.92);
        assert_eq!(cpu.summary()[0].compared, -8.0);
        assert!(summary_table(&rows).contains("x0.920"));
        assert_eq!(cpu.to_json()["rounds"][1]["added_pgtrail"], json!(-50.0));
    }

    #[test]
    fn labels_round_trip() {
        for v in Variant::ALL {
            assert_eq!(Variant::from_label(v.label()), Some(v));
        }
    }
}
