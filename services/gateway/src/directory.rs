//! The organisation directory's bulk import: a CSV file of people, checked whole before
//! anything is written, then applied by storage in one transaction (all or nothing). The
//! CSV reader itself is in `csv`.

use axum::extract::{DefaultBodyLimit, State};
use axum::routing::post;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use switchboard_protocol::ErrorCode;
use switchboard_protocol::rest::ImportReport;
use switchboard_storage::{DirectoryEntry, User};

use crate::csv::{LineError, parse_csv};
use crate::org::{NO_PASSWORD, normalize_org};
use crate::rest::{Body, Caller, ClientIp};
use crate::{ApiError, AuditEvent, Gateway, auth};

/// Largest CSV the endpoint accepts (about 100,000 people).
const MAX_CSV_BYTES: usize = 16 * 1024 * 1024;
/// Most bad lines listed in one error (the count says how many there were).
const MAX_LISTED: usize = 20;
/// Longest display name, department or title, in characters.
const MAX_FIELD: usize = 200;
/// The columns a directory CSV may have; `username` is required.
const COLUMNS: &[&str] =
    &["username", "display_name", "org", "department", "title", "broadcast_scope"];

/// Reads a directory CSV into entries, or every problem found, by line. The first record
/// is the header naming the columns (any order, see [`COLUMNS`]).
pub fn parse_directory(text: &str) -> Result<Vec<DirectoryEntry>, Vec<LineError>> {
    let records = parse_csv(text).map_err(|e| vec![e])?;
    let Some(((header_line, header), rows)) = records.split_first() else {
        return Err(vec![(1, "the file is empty; it needs a header line".into())]);
    };
    let mut index = Vec::with_capacity(header.len());
    for name in header {
        let name = name.trim().to_ascii_lowercase();
        match COLUMNS.iter().position(|c| *c == name) {
            Some(i) if !index.contains(&i) => index.push(i),
            Some(_) => return Err(vec![(*header_line, format!("column {name:?} appears twice"))]),
            None => {
                return Err(vec![(
                    *header_line,
                    format!("unknown column {name:?}; columns are {}", COLUMNS.join(", ")),
                )]);
            }
        }
    }
    if !index.contains(&0) {
        return Err(vec![(*header_line, "the header has no username column".into())]);
    }
    let mut errors = Vec::new();
    let mut entries = Vec::with_capacity(rows.len());
    let mut seen: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for (line, fields) in rows {
        if fields.len() != header.len() {
            errors
                .push((*line, format!("{} fields; the header has {}", fields.len(), header.len())));
            continue;
        }
        let mut values: [String; 6] = Default::default();
        for (field, &column) in fields.iter().zip(&index) {
            values[column] = field.trim().to_owned();
        }
        let [username, display_name, org, department, title, broadcast_scope] = values;
        let mut problems = Vec::new();
        if let Err(e) = auth::validate_username(&username) {
            problems.push(e.0.message);
        }
        let org = normalize_org(&org).map_err(|e| problems.push(e.0.message)).unwrap_or_default();
        let broadcast_scope = normalize_org(&broadcast_scope)
            .map_err(|e| problems.push(e.0.message))
            .unwrap_or_default();
        for (name, value) in
            [("display_name", &display_name), ("department", &department), ("title", &title)]
        {
            if value.chars().count() > MAX_FIELD {
                problems.push(format!("{name} has more than {MAX_FIELD} characters"));
            }
        }
        if let Some(first) = seen.insert(username.clone(), *line) {
            problems.push(format!("{username} is also on line {first}"));
        }
        if !problems.is_empty() {
            errors.push((*line, problems.join("; ")));
            continue;
        }
        let display_name = if display_name.is_empty() { username.clone() } else { display_name };
        entries.push(DirectoryEntry {
            username,
            display_name,
            org,
            department,
            title,
            broadcast_scope,
        });
    }
    if errors.is_empty() { Ok(entries) } else { Err(errors) }
}

/// The error for a file with bad lines: names them (the first [`MAX_LISTED`]).
fn bad_lines(errors: &[LineError]) -> ApiError {
    let listed: Vec<String> =
        errors.iter().take(MAX_LISTED).map(|(line, why)| format!("line {line}: {why}")).collect();
    let more = errors.len().saturating_sub(MAX_LISTED);
    let tail = if more > 0 { format!("; and {more} more") } else { String::new() };
    ApiError::invalid(format!(
        "{} bad line(s), nothing was changed: {}{tail}",
        errors.len(),
        listed.join("; ")
    ))
}

impl Gateway {
    /// Imports a directory CSV: creates missing accounts (with `password` if given, else
    /// none that works until one is set) and updates the others' directory fields. Checks
    /// every row first; any bad row fails the whole import. `actor` must be an admin
    /// (None: a local admin command).
    pub async fn import_directory(
        &self,
        actor: Option<&User>,
        csv: &str,
        password: Option<String>,
        dry_run: bool,
    ) -> Result<ImportReport, ApiError> {
        if actor.is_some_and(|a| !a.admin) {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                "only admins may import the directory",
            ));
        }
        let entries = parse_directory(csv).map_err(|errors| bad_lines(&errors))?;
        let password_hash = match password {
            Some(password) => {
                auth::validate_password(&password)?;
                auth::hash_password(password).await?
            }
            None => NO_PASSWORD.to_owned(),
        };
        Ok(self.store().import_directory(entries, password_hash, dry_run).await?)
    }
}

/// `POST /api/v1/admin/directory`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportRequest {
    /// The CSV text.
    pub csv: String,
    #[serde(default)]
    pub dry_run: bool,
    /// Password for the accounts this import creates; without it they cannot sign in
    /// with a password.
    #[serde(default)]
    pub password: Option<String>,
}

pub fn routes() -> Router<Gateway> {
    Router::new().route(
        "/api/v1/admin/directory",
        post(import).layer(DefaultBodyLimit::max(MAX_CSV_BYTES * 2)),
    )
}

async fn import(
    State(gateway): State<Gateway>,
    Caller(admin): Caller,
    ClientIp(ip): ClientIp,
    Body(req): Body<ImportRequest>,
) -> Result<Json<ImportReport>, ApiError> {
    if req.csv.len() > MAX_CSV_BYTES {
        return Err(ApiError::new(ErrorCode::MessageTooLarge, "the CSV is larger than 16 MiB"));
    }
    let report =
        gateway.import_directory(Some(&admin), &req.csv, req.password, req.dry_run).await?;
    if !report.dry_run {
        gateway.audit(AuditEvent {
            actor: &admin.username,
            action: "directory.import",
            target: "",
            ip,
            detail: &import_summary(&report),
        });
    }
    Ok(Json(report))
}

/// What an import changed, in words, for the audit log: the first accounts created by
/// name (new accounts matter most), the rest counted.
pub fn import_summary(report: &ImportReport) -> String {
    const NAMED: usize = 20;
    let mut names = report.created.iter().take(NAMED).cloned().collect::<Vec<_>>().join(" ");
    if report.created.len() > NAMED {
        names.push_str(" ...");
    }
    format!(
        "created {} ({names}), updated {}, unchanged {}",
        report.created.len(),
        report.updated.len(),
        report.unchanged
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_handles_quotes_commas_and_line_breaks() {
        let text = "a,b\r\n\"x, y\",\"say \"\"hi\"\"\"\n\n\"multi\nline\",z\n";
        let records = parse_csv(text).unwrap_or_default();
        assert_eq!(records.len(), 3);
        assert_eq!(records[1], (2, vec!["x, y".to_owned(), "say \"hi\"".to_owned()]));
        assert_eq!(records[2], (4, vec!["multi\nline".to_owned(), "z".to_owned()]));
        assert!(parse_csv("a,\"b\n").is_err());
        assert!(parse_csv("a,b\"c\n").is_err());
    }

    #[test]
    fn bad_rows_are_named_by_line() {
        let text = "username,org\nalice,HQ/B2\nbad name,HQ\nalice,HQ\ncarol,HQ//x\ndave\n";
        let errors = parse_directory(text).err().unwrap_or_default();
        let lines: Vec<usize> = errors.iter().map(|(line, _)| *line).collect();
        assert_eq!(lines, vec![3, 4, 5, 6]);
        assert!(errors[1].1.contains("line 2"), "{errors:?}");
    }

    #[test]
    fn columns_may_come_in_any_order() {
        let text = "org,username,title\nHQ/Building 2/,alice,Site manager\n";
        let entries = parse_directory(text).unwrap_or_default();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].org, "HQ/Building 2");
        assert_eq!(entries[0].display_name, "alice");
        assert_eq!(entries[0].title, "Site manager");
    }
}
