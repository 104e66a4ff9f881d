//! The read-only gate: statements are classified on the parsed syntax tree, before
//! any planning, so nothing that writes or reads files ever reaches DataFusion.

use datafusion::sql::parser::{DFParser, Statement as DfStatement};
use datafusion::sql::sqlparser::ast::Statement;

use datafusion::common::ScalarValue;

use crate::QueryError;

/// Parses `sql` as exactly one statement and refuses anything but a query.
pub(crate) fn parse_read_only(sql: &str) -> Result<DfStatement, QueryError> {
    let mut statements = DFParser::parse_sql(sql).map_err(QueryError::from_datafusion)?;
    match statements.len() {
        0 => return Err(QueryError::Syntax("empty statement".into())),
        1 => {}
        n => {
            return Err(QueryError::Syntax(format!(
                "{n} statements given; send one statement at a time"
            )));
        }
    }
    let statement = statements.pop_front().expect("one statement");
    check_df(&statement)?;
    Ok(statement)
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

/// Replaces `$name` placeholders with the bound values as literals in the syntax tree,
/// so they also reach table functions such as `search($words)`, which are resolved
/// before DataFusion's own parameter binding. Values never become SQL text.
pub(crate) fn bind(
    statement: &mut DfStatement,
    params: &[(String, ScalarValue)],
) -> Result<(), QueryError> {
    use std::ops::ControlFlow;

    use datafusion::sql::sqlparser::ast::{Expr, Value, visit_expressions_mut};

    let DfStatement::Statement(inner) = statement else {
        return Ok(());
    };
    let flow = visit_expressions_mut(inner.as_mut(), |expr| {
        let Expr::Value(v) = expr else {
            return ControlFlow::Continue(());
        };
        let Value::Placeholder(name) = &v.value else {
            return ControlFlow::Continue(());
        };
        let key = name.trim_start_matches(['$', ':', '@']);
        let Some((_, value)) = params.iter().find(|(k, _)| k == key) else {
            return ControlFlow::Break(QueryError::Plan(format!(
                "parameter {name} has no value; pass it with --param {key}=VALUE"
            )));
        };
        let literal = match value {
            ScalarValue::Utf8(Some(s)) => Value::SingleQuotedString(s.clone()),
            ScalarValue::Float64(Some(n)) => Value::Number(format!("{n:?}"), false),
            ScalarValue::Int64(Some(n)) => Value::Number(n.to_string(), false),
            other => {
                return ControlFlow::Break(QueryError::Plan(format!(
                    "parameter {name}: unsupported value {other}"
                )));
            }
        };
        v.value = literal;
        ControlFlow::Continue(())
    });
    match flow {
        ControlFlow::Break(e) => Err(e),
        ControlFlow::Continue(()) => Ok(()),
    }
}
