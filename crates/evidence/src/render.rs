//! A report for people and for spreadsheets: its [`sections`] (titled
//! tables), printed as aligned text ([`text`]), as HTML ([`crate::html`]),
//! or flattened into one CSV table ([`csv`]).

use crate::EvidenceError;
use crate::report::{Change, Kind, Report, key_text, values_text};

/// A titled table of a report.
#[derive(Debug, Clone, PartialEq)]
pub struct Section {
    pub title: String,
    /// Shown when there are no rows.
    pub empty: &'static str,
    pub columns: Vec<&'static str>,
    pub rows: Vec<Vec<String>>,
}

/// The lines above the sections: what the report is about.
pub fn heading(report: &Report) -> Vec<(&'static str, String)> {
    let mut lines = vec![
        (
            "report",
            format!("{} ({})", report.kind.title(), report.kind.name()),
        ),
        ("database", report.database.clone()),
        (
            "period",
            format!(
                "{} to {}",
                report
                    .period
                    .since
                    .as_deref()
                    .map_or("the beginning".to_string(), short_time),
                report
                    .period
                    .until
                    .as_deref()
                    .map_or("now".to_string(), short_time)
            ),
        ),
        ("generated", short_time(&report.generated_at)),
    ];
    if let Some(subject) = &report.subject {
        lines.push(("subject", subject.clone()));
    }
    if let Some(roles) = &report.roles {
        lines.push(("application roles", list(&roles.application_roles)));
        lines.push(("migration roles", list(&roles.migration_roles)));
    }
    lines
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "(none configured)".to_string()
    } else {
        items.join(", ")
    }
}

/// `2026-03-01 10:00:00` from PostgreSQL's JSON form of a moment (kept
/// whole when it is not one).
pub fn short_time(text: &str) -> String {
    match chrono::DateTime::parse_from_rfc3339(text) {
        Ok(at) => at
            .with_timezone(&chrono::Utc)
            .format("%Y-%m-%d %H:%M:%S")
            .to_string(),
        Err(_) => text.to_string(),
    }
}

fn opt(value: &Option<String>) -> String {
    value.clone().unwrap_or_default()
}

/// The sections of a report, in order.
pub fn sections(report: &Report) -> Vec<Section> {
    let mut sections = Vec::new();
    let counts = |title: &str, what: &'static str, counts: &[crate::report::Count]| Section {
        title: title.to_string(),
        empty: "no changes in this period",
        columns: vec![what, "CHANGES"],
        rows: counts
            .iter()
            .map(|c| vec![c.key.clone(), c.changes.to_string()])
            .collect(),
    };
    match report.kind {
        Kind::Population => {
            sections.push(counts("Changes by table", "TABLE", &report.by_table));
            sections.push(counts("Changes by operation", "OP", &report.by_op));
            sections.push(counts(
                "Changes by actor type",
                "ACTOR TYPE",
                &report.by_actor_type,
            ));
            if let Some(c) = &report.completeness {
                let latest = c.latest_seal.as_ref().map_or("none".to_string(), |s| {
                    format!(
                        "seal {} at {}: {} changes, root {}",
                        s.id,
                        short_time(&s.sealed_at),
                        s.tree_size,
                        s.root
                    )
                });
                sections.push(Section {
                    title: "Completeness".to_string(),
                    empty: "",
                    columns: vec!["CHECK", "RESULT"],
                    rows: vec![
                        vec!["changes in the period".into(), report.changes.len().to_string()],
                        vec![
                            "sealed (provable)".into(),
                            (report.changes.len() as i64 - c.unsealed).to_string(),
                        ],
                        vec!["not sealed yet".into(), c.unsealed.to_string()],
                        vec!["latest checkpoint".into(), latest],
                        vec!["capture gaps in the period".into(), c.gaps.len().to_string()],
                        vec![
                            "reconcile".into(),
                            format!(
                                "{} tables, {} rows changed without a trace",
                                c.reconciled_tables,
                                c.unrecorded.len()
                            ),
                        ],
                        vec![
                            "trail starts at".into(),
                            c.trail_starts_at.as_deref().map_or("(empty)".into(), short_time),
                        ],
                    ],
                });
                sections.push(Section {
                    title: "Seal checkpoints covering the period".to_string(),
                    empty: "none: nothing in the period is sealed",
                    columns: vec!["SEAL", "SEALED AT", "TREE SIZE", "ROOT", "CHANGES OF THE PERIOD"],
                    rows: c
                        .seals
                        .iter()
                        .map(|s| {
                            vec![
                                s.id.to_string(),
                                short_time(&s.sealed_at),
                                s.tree_size.to_string(),
                                s.root.clone(),
                                s.changes.to_string(),
                            ]
                        })
                        .collect(),
                });
                sections.push(gap_section(&c.gaps));
                sections.push(Section {
                    title: "Rows changed without a trace (reconcile)".to_string(),
                    empty: "none",
                    columns: vec!["TABLE", "KEY", "PROBLEM"],
                    rows: c
                        .unrecorded
                        .iter()
                        .map(|u| vec![u.table.clone(), key_text(Some(&u.pk)), u.problem.clone()])
                        .collect(),
                });
            }
            sections.push(change_section("Changes", report, false, false));
        }
        Kind::Privileged => {
            sections.push(change_section(
                "Privileged and out-of-process changes",
                report,
                true,
                false,
            ));
            sections.push(ddl_section("Privileged DDL", report, true));
        }
        Kind::Schema => sections.push(ddl_section("Schema changes", report, false)),
        Kind::Access => {
            sections.push(ddl_section("GRANT and REVOKE", report, true));
            if let Some(access) = &report.access {
                sections.push(Section {
                    title: match &access.since_snapshot {
                        Some(at) => format!("Roles, memberships and grants changed since {}", short_time(at)),
                        None => "Roles, memberships and grants: first snapshot taken (the next report compares with it)"
                            .to_string(),
                    },
                    empty: "none",
                    columns: vec!["CHANGE", "DETAIL"],
                    rows: access.changes.iter().map(|c| vec![c.change.clone(), c.detail.clone()]).collect(),
                });
            }
        }
        Kind::Subject => {
            sections.push(change_section(
                "Changes to the subject's rows",
                report,
                false,
                true,
            ));
            sections.push(Section {
                title: "Erasures".to_string(),
                empty: "none",
                columns: vec![
                    "ERASURE", "AT", "BY", "TABLE", "KEY", "COLUMNS", "REASON", "CHANGES",
                ],
                rows: report
                    .erasures
                    .iter()
                    .map(|e| {
                        vec![
                            e.id.to_string(),
                            short_time(&e.erased_at),
                            e.db_user.clone(),
                            e.table.clone(),
                            key_text(Some(&e.pk)),
                            e.columns.as_ref().map_or("(all)".to_string(), |c| c.join(", ")),
                            e.reason.clone(),
                            e.change_ids.len().to_string(),
                        ]
                    })
                    .collect(),
            });
        }
    }
    sections
}

fn gap_section(gaps: &[crate::report::Gap]) -> Section {
    Section {
        title: "Capture gaps in the period".to_string(),
        empty: "none",
        columns: vec!["TABLE", "OFF FROM", "OFF UNTIL", "BY", "COMMAND"],
        rows: gaps
            .iter()
            .map(|g| {
                vec![
                    g.table.clone(),
                    short_time(&g.off_from),
                    g.off_until
                        .as_deref()
                        .map_or("(still off)".to_string(), short_time),
                    opt(&g.turned_off_by),
                    opt(&g.turned_off_with),
                ]
            })
            .collect(),
    }
}

fn change_row(change: &Change, findings: bool, values: bool) -> Vec<String> {
    let mut row = vec![
        change.id.to_string(),
        short_time(&change.changed_at),
        change.table.clone(),
        change.op.clone(),
        key_text(change.pk.as_ref()),
        change.who(),
        opt(&change.db_user),
        opt(&change.migration),
    ];
    if findings {
        row.push(change.findings.join("; "));
    }
    if values {
        row.push(values_text(change));
    }
    row
}

fn change_section(title: &str, report: &Report, findings: bool, values: bool) -> Section {
    let mut columns = vec![
        "ID",
        "TIME",
        "TABLE",
        "OP",
        "KEY",
        "ACTOR",
        "DB USER",
        "MIGRATION",
    ];
    if findings {
        columns.push("FINDINGS");
    }
    if values {
        columns.push("VALUES");
    }
    Section {
        title: title.to_string(),
        empty: "none",
        columns,
        rows: report
            .changes
            .iter()
            .map(|c| change_row(c, findings, values))
            .collect(),
    }
}

fn ddl_section(title: &str, report: &Report, findings: bool) -> Section {
    let mut columns = vec!["EVENT", "TIME", "DB USER", "TABLE", "COMMAND", "MIGRATION"];
    columns.push(if findings { "FINDINGS" } else { "MATCH" });
    Section {
        title: title.to_string(),
        empty: "none",
        columns,
        rows: report
            .ddl
            .iter()
            .map(|d| {
                vec![
                    d.id.to_string(),
                    short_time(&d.at),
                    d.db_user.clone(),
                    d.table.clone().unwrap_or_else(|| d.object.clone()),
                    d.command
                        .clone()
                        .unwrap_or_else(|| d.command_tag.clone())
                        .trim()
                        .to_string(),
                    opt(&d.migration),
                    if findings {
                        d.findings.join("; ")
                    } else if d.migration.is_some() {
                        "matched".to_string()
                    } else {
                        "UNMATCHED".to_string()
                    },
                ]
            })
            .collect(),
    }
}

/// The report as aligned text: its heading, then each section.
pub fn text(report: &Report) -> String {
    let mut out = String::new();
    let heading = heading(report);
    let width = heading.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (key, value) in &heading {
        out.push_str(&format!("{key:<width$}  {value}\n"));
    }
    for section in sections(report) {
        out.push('\n');
        out.push_str(&section.title);
        out.push('\n');
        if section.rows.is_empty() {
            out.push_str(&format!("  {}\n", section.empty));
            continue;
        }
        let mut widths: Vec<usize> = section.columns.iter().map(|c| c.chars().count()).collect();
        for row in &section.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(one_line(cell).chars().count());
            }
        }
        let header: Vec<String> = section.columns.iter().map(|c| c.to_string()).collect();
        for row in std::iter::once(&header).chain(&section.rows) {
            let mut line = String::from("  ");
            for (i, (cell, w)) in row.iter().zip(&widths).enumerate() {
                let cell = one_line(cell);
                line.push_str(&cell);
                if i + 1 < row.len() {
                    line.push_str(&" ".repeat(w - cell.chars().count() + 2));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
    }
    out
}

/// A cell on one line (commands may span several).
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Every listed item as one CSV table: changes, DDL and erasures, one row
/// each, with the columns `item,id,at,table,action,key,actor,db_user,migration,findings,details`.
pub fn csv(report: &Report) -> Result<String, EvidenceError> {
    let encode = |e: csv::Error| EvidenceError::Encode {
        what: "CSV",
        source: Box::new(e),
    };
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer
        .write_record([
            "item",
            "id",
            "at",
            "table",
            "action",
            "key",
            "actor",
            "db_user",
            "migration",
            "findings",
            "details",
        ])
        .map_err(encode)?;
    for c in &report.changes {
        writer
            .write_record([
                "change".to_string(),
                c.id.to_string(),
                c.changed_at.clone(),
                c.table.clone(),
                c.op.clone(),
                key_text(c.pk.as_ref()),
                c.who(),
                opt(&c.db_user),
                opt(&c.migration),
                c.findings.join("; "),
                values_text(c),
            ])
            .map_err(encode)?;
    }
    for d in &report.ddl {
        writer
            .write_record([
                "ddl".to_string(),
                d.id.to_string(),
                d.at.clone(),
                opt(&d.table),
                d.command_tag.clone(),
                String::new(),
                opt(&d.actor),
                d.db_user.clone(),
                opt(&d.migration),
                d.findings.join("; "),
                one_line(d.command.as_deref().unwrap_or_default()),
            ])
            .map_err(encode)?;
    }
    for a in report.access.iter().flat_map(|a| &a.changes) {
        writer
            .write_record([
                "access".to_string(),
                String::new(),
                report.generated_at.clone(),
                String::new(),
                a.change.clone(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                a.detail.clone(),
            ])
            .map_err(encode)?;
    }
    for e in &report.erasures {
        writer
            .write_record([
                "erasure".to_string(),
                e.id.to_string(),
                e.erased_at.clone(),
                e.table.clone(),
                "ERASE".to_string(),
                key_text(Some(&e.pk)),
                String::new(),
                e.db_user.clone(),
                String::new(),
                String::new(),
                e.reason.clone(),
            ])
            .map_err(encode)?;
    }
    let bytes = writer.into_inner().map_err(|e| EvidenceError::Encode {
        what: "CSV",
        source: Box::new(e.into_error()),
    })?;
    String::from_utf8(bytes).map_err(|e| EvidenceError::Encode {
        what: "CSV",
        source: Box::new(e),
    })
}
