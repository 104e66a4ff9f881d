//! The read-only gate: statements are classified on the parsed syntax tree, before
//! any planning, so nothing that writes or reads files ever reaches DataFusion.

use datafusion::sql::parser::{DFParser, Statement as DfStatement};
use datafusion::sql::sqlparser::ast::Statement;

use crate::QueryError;

pub(crate) fn check_read_only(sql: &str) -> Result<(), QueryError> {
    let statements = DFParser::parse_sql(sql).map_err(QueryError::from_datafusion)?;
    match statements.len() {
        0 => return Err(QueryError::Syntax("empty statement".into())),
        1 => {}
        n => {
            return Err(QueryError::Syntax(format!(
                "{n} statements given; send one statement at a time"
            )));
        }
    }
    check_df(&statements[0])
}

fn check_df(s: &DfStatement) -> Result<(), QueryError> {
    match s {
        DfStatement::Statement(s) => check(s),
        DfStatement::Explain(e) => check_df(&e.statement),
        DfStatement::CreateExternalTable(_) => refuse("CREATE EXTERNAL TABLE"),
        DfStatement::CopyTo(_) => refuse("COPY"),
        DfStatement::Reset(_) => refuse("RESET"),
    }
}

fn check(s: &Statement) -> Result<(), QueryError> {
    match s {
        Statement::Query(_)
        | Statement::ShowTables { .. }
        | Statement::ShowColumns { .. }
        | Statement::ShowFunctions { .. }
        | Statement::ExplainTable { .. } => Ok(()),
        Statement::Explain { statement, .. } => check(statement),
        other => refuse(&statement_kind(other)),
    }
}

/// The leading keywords of a statement, e.g. `CREATE TABLE`, for the error message.
fn statement_kind(s: &Statement) -> String {
    let text = s.to_string();
    let words: Vec<&str> = text
        .split_whitespace()
        .take_while(|w| w.chars().all(|c| c.is_ascii_alphabetic() || c == '_'))
        .take(3)
        .collect();
    let kind = match words.as_slice() {
        [] => "this statement".to_owned(),
        [first, second, ..] if matches!(*first, "CREATE" | "DROP" | "ALTER" | "TRUNCATE") => {
            format!("{first} {second}")
        }
        [first, ..] => (*first).to_owned(),
    };
    kind.to_uppercase()
}

fn refuse(found: &str) -> Result<(), QueryError> {
    Err(QueryError::NotAQuery {
        found: found.to_owned(),
    })
}
