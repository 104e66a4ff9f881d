//! The keymap: the help window lists it, the footer shows the part that works where
//! the keys go now.

use crate::app::{App, SearchFocus, SqlFocus, View};

/// `(where, key, what it does)`.
pub const KEYMAP: &[(&str, &str, &str)] = &[
    ("any", "F1", "this help (type to filter it)"),
    (
        "any",
        "F2..F7",
        "Search, Subject, SQL, Sources, Links, Datasets",
    ),
    ("any", "1..6", "the same, when not typing"),
    (
        "any",
        "Ctrl-P",
        "palette: views, tables, saved queries, subjects",
    ),
    ("any", "?", "this help, when not typing"),
    ("any", "q / Ctrl-C", "quit (q when not typing)"),
    ("search", "typing", "search as you type"),
    ("search", "Enter", "search now, go to the results"),
    ("search", "Tab", "query → results → facets"),
    ("search", "↑ ↓ j k", "move in results or facets"),
    ("search", "Enter", "results: open the record's detail"),
    ("search", "s", "results: open the hit's subject"),
    ("search", "o / y", "detail: open / copy the deep link"),
    ("search", "+ / Enter", "facets: keep only this value"),
    ("search", "-", "facets: leave this value out"),
    ("search", "x / Bksp", "remove the last filter"),
    ("search", "/", "back to the query"),
    ("search", "Esc", "close the detail, then back to the query"),
    ("subject", "/ or e", "type a subject: any spelling"),
    ("subject", "↑ ↓", "move in the records per source"),
    ("subject", "Enter", "list those records in Search"),
    ("subject", "r", "reload"),
    (
        "sql",
        "Ctrl-R",
        "run the selection, else the statement at the cursor",
    ),
    ("sql", "Shift-arrows", "select"),
    (
        "sql",
        "Esc",
        "cancel the running statement, else go to the grid",
    ),
    (
        "sql",
        "Tab",
        "complete tables, columns, functions, saved queries",
    ),
    ("sql", "Ctrl-↑ ↓", "history"),
    ("sql", "Ctrl-U", "clear the editor"),
    ("grid", "↑ ↓ ← → hjkl", "move; the first column stays"),
    ("grid", "s", "sort by this column (again: reverse)"),
    ("grid", "y / Y", "copy the cell / the row"),
    (
        "grid",
        "e / E",
        "export CSV / JSON to the current directory",
    ),
    ("grid", "i / Esc", "back to the editor"),
    ("sources", "s", "sync the selected source"),
    ("sources", "a", "sync every source"),
    ("sources", "r", "refresh"),
    ("links", "↑ ↓", "move in the conflicts"),
    ("links", "Enter", "open the conflict's subject"),
    ("links", "r", "refresh"),
    ("datasets", "↑ ↓", "move in the catalogue"),
    (
        "datasets",
        "Enter",
        "the dataset's records, in the SQL console",
    ),
    ("datasets", "r", "refresh"),
];

/// The keys that work where keys go now, for the footer.
pub fn footer(app: &App) -> Vec<(&'static str, &'static str)> {
    let mut keys = match app.view {
        View::Search => match app.search.focus() {
            SearchFocus::Query => vec![("Enter", "results"), ("Tab", "focus")],
            SearchFocus::Results => vec![
                ("Enter", "detail"),
                ("s", "subject"),
                ("Tab", "facets"),
                ("/", "query"),
                ("x", "unfilter"),
            ],
            SearchFocus::Facets => vec![
                ("+", "in"),
                ("-", "out"),
                ("x", "unfilter"),
                ("Tab", "query"),
            ],
        },
        View::Subject if app.subject.editing => vec![("Enter", "open"), ("Esc", "records")],
        View::Subject => vec![("Enter", "records"), ("/", "another"), ("r", "reload")],
        View::Sql if app.sql.running.is_some() => vec![("Esc", "cancel")],
        View::Sql => match app.sql.focus {
            SqlFocus::Editor => vec![("Ctrl-R", "run"), ("Tab", "complete"), ("Esc", "grid")],
            SqlFocus::Grid => vec![("s", "sort"), ("y", "copy"), ("e", "export"), ("i", "edit")],
        },
        View::Sources => vec![("s", "sync"), ("a", "sync all"), ("r", "refresh")],
        View::Links => vec![("Enter", "subject"), ("r", "refresh")],
        View::Datasets => vec![("Enter", "its records"), ("r", "refresh")],
    };
    keys.push(("F1", "help"));
    keys.push(("^P", "palette"));
    if !app.typing() {
        keys.push(("q", "quit"));
    }
    keys
}
