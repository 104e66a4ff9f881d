//! The TUI's state, and how keys, ticks and answers change it.
//!
//! Nothing here draws or waits: a key gives a new state and the work to start
//! ([`Command`]s), an answer ([`Msg`]) lands in the state unless a newer request made it
//! stale. Tests drive it key by key without a terminal or a service.

use std::time::{Duration, Instant};

use crossdex_service::{
    LinkReport, RecordView, SavedQueryInfo, SearchResult, Status, SubjectView, SyncEvent,
};
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use crate::edit::{Editor, LineInput};

/// Search-as-you-type waits this long after the last key.
pub const DEBOUNCE: Duration = Duration::from_millis(120);
/// Hits a search page asks for.
pub const PAGE: usize = 100;
/// Facet buckets kept of the long facets (project, subject).
pub const FACET_SIZE: usize = 10;

/// The screens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    Search,
    Subject,
    Sql,
    Sources,
    Links,
    Datasets,
}

impl View {
    /// Every view, in the order of their keys (F2..F7).
    pub const ALL: [View; 6] = [
        View::Search,
        View::Subject,
        View::Sql,
        View::Sources,
        View::Links,
        View::Datasets,
    ];

    /// Its name in the tab bar.
    pub fn title(self) -> &'static str {
        match self {
            View::Search => "Search",
            View::Subject => "Subject",
            View::Sql => "SQL",
            View::Sources => "Sources",
            View::Links => "Links",
            View::Datasets => "Datasets",
        }
    }
}

/// A facet value kept in or out of the hits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    /// The search syntax's field: `system`, `source`, `kind`, `project`, `subject_id`.
    pub field: &'static str,
    /// The exact value.
    pub value: String,
    /// In (only hits with it) or out (hits without it).
    pub include: bool,
}

/// Output formats of an export of SQL results.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    Csv,
    Json,
    Parquet,
}

/// Work for the background tasks; each answers with a [`Msg`].
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// A search; `generation` tells its answer from a stale one.
    Search {
        generation: u64,
        query: String,
        filters: Vec<Filter>,
    },
    /// One record, for the detail pane.
    Record { generation: u64, id: String },
    /// One subject, by any spelling.
    Subject { generation: u64, id: String },
    /// A SQL statement.
    Sql { generation: u64, sql: String },
    /// A saved query with its parameters as text.
    Saved {
        generation: u64,
        name: String,
        values: Vec<(String, String)>,
    },
    /// Stop the running SQL statement.
    CancelSql,
    /// Sources, counts and runs.
    Status,
    /// The link report.
    Links,
    /// The dataset catalogue.
    Datasets,
    /// Sync these sources; empty: every configured one.
    Sync { sources: Vec<String> },
    /// Tables, columns, saved queries and subjects, for completion and the palette.
    Catalog,
    /// Put text on the clipboard (OSC 52).
    Copy(String),
    /// Open a link in the browser.
    Open(String),
    /// Write the last SQL results to a file.
    Export(ExportFormat),
    /// Keep a statement in the history file, for the next session.
    Remember(String),
}

/// What went wrong with one request, as the service said it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The service's stable code (`invalid_search`, `cancelled`, ...).
    pub code: String,
    /// What happened, for people.
    pub message: String,
    /// Where in the query text, from 1, when the parser knows.
    pub position: Option<usize>,
}

/// SQL results as text, as the grid shows them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Grid {
    /// Column names.
    pub columns: Vec<String>,
    /// Column types, as Arrow names them.
    pub types: Vec<String>,
    /// Rows, cells as text (`NULL` for nulls).
    pub rows: Vec<Vec<String>>,
    /// Whether more rows were produced than are shown.
    pub truncated: bool,
}

/// Tables, columns, functions and saved queries: what completion and the palette offer.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    /// `(table, column)` pairs.
    pub columns: Vec<(String, String)>,
    /// The saved queries.
    pub saved: Vec<SavedQueryInfo>,
    /// Linked subject ids.
    pub subjects: Vec<String>,
}

/// An answer of a background task.
#[derive(Debug)]
pub enum Msg {
    /// A search's hits, without facets: they come after, in [`Msg::Faceted`].
    Searched {
        generation: u64,
        result: Result<Box<SearchResult>, Failure>,
    },
    /// The facets of search `generation`; `None` when a newer search made them moot.
    Faceted {
        generation: u64,
        facets: Option<Result<Box<crossdex_service::Facets>, Failure>>,
    },
    Record {
        generation: u64,
        result: Result<Box<RecordView>, Failure>,
    },
    Subject {
        generation: u64,
        result: Result<Box<SubjectView>, Failure>,
    },
    SqlDone {
        generation: u64,
        result: Result<Grid, Failure>,
        elapsed: Duration,
    },
    Status(Result<Box<Status>, Failure>),
    Links(Result<Box<LinkReport>, Failure>),
    Datasets(Result<Vec<crossdex_service::Dataset>, Failure>),
    Sync(Box<SyncEvent>),
    SyncDone(Result<String, Failure>),
    Catalog(Catalog),
    /// A word for the footer: "copied", "exported to ...".
    Note(String),
}

/// Where keys go in the search view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchFocus {
    Query,
    Results,
    Facets,
}

/// The search view.
#[derive(Debug, Default)]
pub struct SearchState {
    pub query: LineInput,
    pub filters: Vec<Filter>,
    pub focus: Option<SearchFocus>,
    pub result: Option<SearchResult>,
    pub error: Option<Failure>,
    pub selected: usize,
    pub facet_selected: usize,
    pub detail: Option<Result<RecordView, Failure>>,
    pub detail_open: bool,
    /// The newest search sent; older answers are dropped.
    pub generation: u64,
    pub detail_generation: u64,
    /// The hits shown are newer than the facets beside them.
    pub facets_pending: bool,
    /// When the debounced search is due.
    pub due: Option<Instant>,
    pub loading: bool,
}

impl SearchState {
    pub fn focus(&self) -> SearchFocus {
        self.focus.unwrap_or(SearchFocus::Query)
    }

    /// The facet buckets in display order, flattened: `(field, title, value, count)`.
    pub fn facet_rows(&self) -> Vec<(&'static str, &'static str, String, u64)> {
        let Some(f) = self.result.as_ref().and_then(|r| r.facets.as_ref()) else {
            return Vec::new();
        };
        let mut rows = Vec::new();
        for (field, title, buckets) in [
            ("system", "system", &f.system),
            ("source", "source", &f.source),
            ("kind", "kind", &f.kind),
            ("project", "project", &f.project),
            ("subject_id", "subject", &f.subject),
        ] {
            for b in buckets {
                rows.push((field, title, b.value.clone(), b.count));
            }
        }
        rows
    }
}

/// The subject view.
#[derive(Debug, Default)]
pub struct SubjectState {
    pub input: LineInput,
    pub editing: bool,
    pub view: Option<SubjectView>,
    pub error: Option<Failure>,
    pub selected: usize,
    pub generation: u64,
    pub loading: bool,
}

/// Where keys go in the SQL view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlFocus {
    Editor,
    Grid,
}

/// The SQL view.
#[derive(Debug)]
pub struct SqlState {
    pub editor: Editor,
    pub focus: SqlFocus,
    /// The running statement: its generation and start.
    pub running: Option<(u64, Instant)>,
    pub generation: u64,
    pub grid: Option<Grid>,
    pub error: Option<Failure>,
    /// How the last statement ended: rows and time, or cancelled.
    pub outcome: Option<String>,
    pub history: Vec<String>,
    pub history_pos: Option<usize>,
    pub row: usize,
    pub col: usize,
    pub sort: Option<(usize, bool)>,
    /// Completions offered for the word at the cursor, and which is chosen.
    pub completions: Vec<String>,
}

impl Default for SqlState {
    fn default() -> Self {
        SqlState {
            editor: Editor::new(
                "SELECT source, kind, count(*) AS n FROM records GROUP BY 1, 2 ORDER BY 1, 2",
            ),
            focus: SqlFocus::Editor,
            running: None,
            generation: 0,
            grid: None,
            error: None,
            outcome: None,
            history: Vec::new(),
            history_pos: None,
            row: 0,
            col: 0,
            sort: None,
            completions: Vec::new(),
        }
    }
}

/// The sources view.
#[derive(Debug, Default)]
pub struct SourcesState {
    pub status: Option<Status>,
    pub error: Option<Failure>,
    pub selected: usize,
    pub syncing: bool,
    /// What the running or last sync said, newest last.
    pub progress: Vec<String>,
}

/// The links view.
#[derive(Debug, Default)]
pub struct LinksState {
    pub report: Option<LinkReport>,
    pub error: Option<Failure>,
    pub selected: usize,
}

/// The datasets view: the catalogue, and the selected entry's metadata.
#[derive(Debug, Default)]
pub struct DatasetsState {
    pub list: Option<Vec<crossdex_service::Dataset>>,
    pub error: Option<Failure>,
    pub selected: usize,
}

/// What the palette offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaletteItem {
    View(View),
    Table(String),
    Saved(String),
    Subject(String),
}

impl PaletteItem {
    pub fn label(&self) -> String {
        match self {
            PaletteItem::View(v) => format!("view: {}", v.title()),
            PaletteItem::Table(t) => format!("table: {t}"),
            PaletteItem::Saved(q) => format!("saved query: {q}"),
            PaletteItem::Subject(s) => format!("subject: {s}"),
        }
    }
}

/// A window over the view.
#[derive(Debug)]
pub enum Overlay {
    /// The keymap, filtered by what is typed.
    Help { filter: LineInput, scroll: usize },
    /// Fuzzy search over views, tables, saved queries and subjects.
    Palette {
        input: LineInput,
        matches: Vec<PaletteItem>,
        selected: usize,
    },
    /// A saved query's parameters, asked one by one.
    Prompt {
        query: SavedQueryInfo,
        index: usize,
        values: Vec<(String, String)>,
        input: LineInput,
    },
}

/// The whole UI's state.
#[derive(Debug)]
pub struct App {
    pub view: View,
    pub search: SearchState,
    pub subject: SubjectState,
    pub sql: SqlState,
    pub sources: SourcesState,
    pub links: LinksState,
    pub datasets: DatasetsState,
    pub overlay: Option<Overlay>,
    pub catalog: Catalog,
    /// A word for the footer, and until when it shows.
    pub note: Option<(String, Instant)>,
    /// Where the data is: the data directory, or a server.
    pub location: String,
    pub quit: bool,
}

/// How long a footer note shows.
const NOTE_FOR: Duration = Duration::from_secs(4);

fn key(code: KeyCode) -> KeyEvent {
    KeyEvent::new(code, KeyModifiers::NONE)
}

impl App {
    /// A new UI over `location`, on the search view; the commands fill it.
    pub fn new(location: impl Into<String>) -> (App, Vec<Command>) {
        let app = App {
            view: View::Search,
            search: SearchState::default(),
            subject: SubjectState::default(),
            sql: SqlState::default(),
            sources: SourcesState::default(),
            links: LinksState::default(),
            datasets: DatasetsState::default(),
            overlay: None,
            catalog: Catalog::default(),
            note: None,
            location: location.into(),
            quit: false,
        };
        let mut app = app;
        let mut commands = vec![Command::Catalog, Command::Status];
        commands.extend(app.search_now());
        (app, commands)
    }

    /// Whether keys go to a text field (so `q`, `?` and digits are text).
    pub fn typing(&self) -> bool {
        match self.view {
            View::Search => self.search.focus() == SearchFocus::Query,
            View::Subject => self.subject.editing,
            View::Sql => self.sql.focus == SqlFocus::Editor,
            View::Sources | View::Links | View::Datasets => false,
        }
    }

    /// Whether something runs that the screen should show the time of.
    pub fn busy(&self) -> bool {
        self.sql.running.is_some() || self.sources.syncing || self.search.loading
    }

    fn say(&mut self, note: impl Into<String>, now: Instant) {
        self.note = Some((note.into(), now + NOTE_FOR));
    }

    /// Time passes: a debounced search comes due, an old note goes.
    pub fn tick(&mut self, now: Instant) -> Vec<Command> {
        if self.note.as_ref().is_some_and(|(_, until)| *until <= now) {
            self.note = None;
        }
        match self.search.due {
            Some(due) if due <= now => self.search_now(),
            _ => Vec::new(),
        }
    }

    fn search_now(&mut self) -> Vec<Command> {
        self.search.due = None;
        self.search.generation += 1;
        self.search.loading = true;
        let query = self.search.query.text().trim();
        vec![Command::Search {
            generation: self.search.generation,
            query: if query.is_empty() { "*" } else { query }.to_owned(),
            filters: self.search.filters.clone(),
        }]
    }

    fn switch(&mut self, view: View) -> Vec<Command> {
        self.view = view;
        match view {
            View::Sources if self.sources.status.is_none() => vec![Command::Status],
            View::Links if self.links.report.is_none() && self.links.error.is_none() => {
                vec![Command::Links]
            }
            View::Datasets if self.datasets.list.is_none() && self.datasets.error.is_none() => {
                vec![Command::Datasets]
            }
            View::Subject if self.subject.view.is_none() => {
                self.subject.editing = true;
                Vec::new()
            }
            _ => Vec::new(),
        }
    }

    /// Opens subject `id` (any spelling) in the subject view.
    pub fn open_subject(&mut self, id: &str) -> Vec<Command> {
        self.view = View::Subject;
        self.subject.input.set(id);
        self.subject.editing = false;
        self.subject.generation += 1;
        self.subject.loading = true;
        self.subject.selected = 0;
        vec![Command::Subject {
            generation: self.subject.generation,
            id: id.to_owned(),
        }]
    }

    /// One key, at `now`.
    pub fn on_key(&mut self, k: KeyEvent, now: Instant) -> Vec<Command> {
        let ctrl = k.modifiers.contains(KeyModifiers::CONTROL);
        if ctrl && k.code == KeyCode::Char('c') {
            self.quit = true;
            return Vec::new();
        }
        if let Some(overlay) = self.overlay.take() {
            return self.on_overlay_key(overlay, k, now);
        }
        if ctrl && k.code == KeyCode::Char('p') {
            self.open_palette();
            return Vec::new();
        }
        match k.code {
            KeyCode::F(1) => {
                self.overlay = Some(Overlay::Help {
                    filter: LineInput::default(),
                    scroll: 0,
                });
                return Vec::new();
            }
            KeyCode::F(n @ 2..=7) => return self.switch(View::ALL[usize::from(n) - 2]),
            _ => {}
        }
        if !self.typing() && !ctrl {
            match k.code {
                KeyCode::Char('q') => {
                    self.quit = true;
                    return Vec::new();
                }
                KeyCode::Char('?') => {
                    self.overlay = Some(Overlay::Help {
                        filter: LineInput::default(),
                        scroll: 0,
                    });
                    return Vec::new();
                }
                KeyCode::Char(c @ '1'..='6') => {
                    return self.switch(View::ALL[(c as u8 - b'1') as usize]);
                }
                _ => {}
            }
        }
        match self.view {
            View::Search => self.on_search_key(k, now),
            View::Subject => self.on_subject_key(k),
            View::Sql => self.on_sql_key(k, now),
            View::Sources => self.on_sources_key(k),
            View::Links => self.on_links_key(k),
            View::Datasets => self.on_datasets_key(k, now),
        }
    }

    fn on_datasets_key(&mut self, k: KeyEvent, now: Instant) -> Vec<Command> {
        let s = &mut self.datasets;
        let n = s.list.as_ref().map_or(0, Vec::len);
        match k.code {
            KeyCode::Up | KeyCode::Char('k') => s.selected = s.selected.saturating_sub(1),
            KeyCode::Down | KeyCode::Char('j') => {
                s.selected = (s.selected + 1).min(n.saturating_sub(1));
            }
            KeyCode::Home => s.selected = 0,
            KeyCode::End => s.selected = n.saturating_sub(1),
            KeyCode::Char('r') => return vec![Command::Datasets],
            KeyCode::Enter => {
                // Its records, in the SQL console: what SQL users would type.
                let id = s
                    .list
                    .as_ref()
                    .and_then(|l| l.get(s.selected))
                    .map(|d| d.id.clone());
                if let Some(id) = id {
                    let sql = format!(
                        "SELECT r.kind, r.id, r.title, r.subject_id FROM dataset_records m\nJOIN records r ON r.id = m.record_id\nWHERE m.dataset_id = '{}'\nORDER BY r.kind, r.id",
                        id.replace('\'', "''")
                    );
                    self.view = View::Sql;
                    self.sql.focus = SqlFocus::Editor;
                    self.sql.editor.set(&sql);
                    return self.run_sql(now);
                }
            }
            _ => {}
        }
        Vec::new()
    }

    fn on_search_key(&mut self, k: KeyEvent, now: Instant) -> Vec<Command> {
        let s = &mut self.search;
        match s.focus() {
            SearchFocus::Query => match k.code {
                KeyCode::Enter => {
                    s.focus = Some(SearchFocus::Results);
                    return self.search_now();
                }
                KeyCode::Down | KeyCode::Tab | KeyCode::Esc => {
                    s.focus = Some(SearchFocus::Results);
                }
                _ => {
                    if s.query.on_key(k) {
                        s.due = Some(now + DEBOUNCE);
                    }
                }
            },
            SearchFocus::Results => {
                let n = s.result.as_ref().map_or(0, |r| r.hits.len());
                match k.code {
                    KeyCode::Up | KeyCode::Char('k') => s.selected = s.selected.saturating_sub(1),
                    KeyCode::Down | KeyCode::Char('j') => {
                        s.selected = (s.selected + 1).min(n.saturating_sub(1));
                    }
                    KeyCode::PageUp => s.selected = s.selected.saturating_sub(10),
                    KeyCode::PageDown => s.selected = (s.selected + 10).min(n.saturating_sub(1)),
                    KeyCode::Home | KeyCode::Char('g') => s.selected = 0,
                    KeyCode::End | KeyCode::Char('G') => s.selected = n.saturating_sub(1),
                    KeyCode::Char('/') => s.focus = Some(SearchFocus::Query),
                    KeyCode::Tab => s.focus = Some(SearchFocus::Facets),
                    KeyCode::Esc if s.detail_open => s.detail_open = false,
                    KeyCode::Esc => s.focus = Some(SearchFocus::Query),
                    KeyCode::Enter => return self.open_detail(),
                    KeyCode::Char('s') => {
                        let subject = s
                            .result
                            .as_ref()
                            .and_then(|r| r.hits.get(s.selected))
                            .and_then(|h| h.subject_id.clone());
                        return match subject {
                            Some(id) => self.open_subject(&id),
                            None => {
                                self.say("this record is linked to no subject", now);
                                Vec::new()
                            }
                        };
                    }
                    KeyCode::Char('o') | KeyCode::Char('y') => {
                        let link = match &s.detail {
                            Some(Ok(d)) if s.detail_open => d.deep_link.clone(),
                            _ => None,
                        };
                        return match link {
                            Some(url) if k.code == KeyCode::Char('o') => vec![Command::Open(url)],
                            Some(url) => vec![Command::Copy(url)],
                            None => {
                                self.say(
                                    "open a record with Enter first; it needs a deep link",
                                    now,
                                );
                                Vec::new()
                            }
                        };
                    }
                    KeyCode::Backspace | KeyCode::Char('x') => return self.drop_filter(),
                    _ => {}
                }
            }
            SearchFocus::Facets => {
                let rows = s.facet_rows();
                match k.code {
                    KeyCode::Up | KeyCode::Char('k') => {
                        s.facet_selected = s.facet_selected.saturating_sub(1);
                    }
                    KeyCode::Down | KeyCode::Char('j') => {
                        s.facet_selected = (s.facet_selected + 1).min(rows.len().saturating_sub(1));
                    }
                    KeyCode::Tab => s.focus = Some(SearchFocus::Query),
                    KeyCode::Esc => s.focus = Some(SearchFocus::Results),
                    KeyCode::Char('/') => s.focus = Some(SearchFocus::Query),
                    KeyCode::Enter | KeyCode::Char('+') | KeyCode::Char('-') => {
                        if let Some((field, _, value, _)) = rows.get(s.facet_selected) {
                            let include = k.code != KeyCode::Char('-');
                            // A field is in once: filtering on a subject replaces the previous
                            // subject filter; out-filters add up.
                            if include {
                                s.filters.retain(|f| !(f.field == *field && f.include));
                            }
                            s.filters
                                .retain(|f| !(f.field == *field && f.value == *value));
                            s.filters.push(Filter {
                                field,
                                value: value.clone(),
                                include,
                            });
                            s.selected = 0;
                            s.facet_selected = 0;
                            return self.search_now();
                        }
                    }
                    KeyCode::Backspace | KeyCode::Char('x') => return self.drop_filter(),
                    _ => {}
                }
            }
        }
        Vec::new()
    }

    fn drop_filter(&mut self) -> Vec<Command> {
        if self.search.filters.pop().is_some() {
            self.search.selected = 0;
            return self.search_now();
        }
        Vec::new()
    }

    fn open_detail(&mut self) -> Vec<Command> {
        let s = &mut self.search;
        let Some(hit) = s.result.as_ref().and_then(|r| r.hits.get(s.selected)) else {
            return Vec::new();
        };
        s.detail_open = true;
        s.detail_generation += 1;
        vec![Command::Record {
            generation: s.detail_generation,
            id: hit.id.clone(),
        }]
    }

    fn on_subject_key(&mut self, k: KeyEvent) -> Vec<Command> {
        let s = &mut self.subject;
        if s.editing {
            match k.code {
                KeyCode::Enter => {
                    let id = s.input.text().trim().to_owned();
                    if id.is_empty() {
                        return Vec::new();
                    }
                    return self.open_subject(&id);
                }
                KeyCode::Esc => s.editing = false,
                _ => {
                    s.input.on_key(k);
                }
            }
            return Vec::new();
        }
        let n = s.view.as_ref().map_or(0, |v| v.records.len());
        match k.code {
            KeyCode::Char('/') | KeyCode::Char('e') => s.editing = true,
            KeyCode::Up | KeyCode::Char('k') => s.selected = s.selected.saturating_sub(1),
            KeyCode::Down | KeyCode::Char('j') => {
                s.selected = (s.selected + 1).min(n.saturating_sub(1));
            }
            KeyCode::Enter => {
                // The subject's records of that source and kind, in the search view.
                let Some(v) = &s.view else {
                    return Vec::new();
                };
                let Some(r) = v.records.get(s.selected) else {
                    return Vec::new();
                };
                let filters = vec![
                    Filter {
                        field: "subject_id",
                        value: v.subject_id.clone(),
                        include: true,
                    },
                    Filter {
                        field: "source",
                        value: r.source.clone(),
                        include: true,
                    },
                    Filter {
                        field: "kind",
                        value: r.kind.clone(),
                        include: true,
                    },
                ];
                self.view = View::Search;
                self.search.filters = filters;
                self.search.query.set("*");
                self.search.focus = Some(SearchFocus::Results);
                self.search.selected = 0;
                return self.search_now();
            }
            KeyCode::Char('r') => {
                let id = s.input.text().to_owned();
                if !id.is_empty() {
                    return self.open_subject(&id);
                }
            }
            _ => {}
        }
        Vec::new()
    }

    fn on_sql_key(&mut self, k: KeyEvent, now: Instant) -> Vec<Command> {
        let ctrl = k.modifiers.contains(KeyModifiers::CONTROL);
        if k.code == KeyCode::Esc
            && let Some((_, since)) = self.sql.running.take()
        {
            // Done at once on screen; the work stops at its next step, and its late
            // answer finds no statement running.
            self.sql.outcome = Some(format!(
                "cancelled after {:.1} s",
                now.saturating_duration_since(since).as_secs_f64()
            ));
            return vec![Command::CancelSql];
        }
        if ctrl && k.code == KeyCode::Char('r') {
            return self.run_sql(now);
        }
        let s = &mut self.sql;
        match s.focus {
            SqlFocus::Editor => {
                if k.code != KeyCode::Tab {
                    s.completions.clear();
                }
                match k.code {
                    KeyCode::Esc => s.focus = SqlFocus::Grid,
                    KeyCode::Up if ctrl => self.history(-1),
                    KeyCode::Down if ctrl => self.history(1),
                    KeyCode::Tab => self.complete(),
                    _ => {
                        s.editor.on_key(k);
                        s.history_pos = None;
                    }
                }
            }
            SqlFocus::Grid => {
                let (rows, cols) = s
                    .grid
                    .as_ref()
                    .map_or((0, 0), |g| (g.rows.len(), g.columns.len()));
                match k.code {
                    KeyCode::Up | KeyCode::Char('k') => s.row = s.row.saturating_sub(1),
                    KeyCode::Down | KeyCode::Char('j') => {
                        s.row = (s.row + 1).min(rows.saturating_sub(1));
                    }
                    KeyCode::PageUp => s.row = s.row.saturating_sub(20),
                    KeyCode::PageDown => s.row = (s.row + 20).min(rows.saturating_sub(1)),
                    KeyCode::Left | KeyCode::Char('h') => s.col = s.col.saturating_sub(1),
                    KeyCode::Right | KeyCode::Char('l') => {
                        s.col = (s.col + 1).min(cols.saturating_sub(1));
                    }
                    KeyCode::Home | KeyCode::Char('g') => s.row = 0,
                    KeyCode::End | KeyCode::Char('G') => s.row = rows.saturating_sub(1),
                    KeyCode::Esc | KeyCode::Tab | KeyCode::Char('i') => s.focus = SqlFocus::Editor,
                    KeyCode::Char('s') if cols > 0 => {
                        let ascending = !matches!(s.sort, Some((c, true)) if c == s.col);
                        s.sort = Some((s.col, ascending));
                        if let Some(g) = &mut s.grid {
                            sort_rows(g, s.col, ascending);
                        }
                    }
                    KeyCode::Char('y') => {
                        if let Some(cell) =
                            s.grid.as_ref().and_then(|g| g.rows.get(s.row)?.get(s.col))
                        {
                            return vec![Command::Copy(cell.clone())];
                        }
                    }
                    KeyCode::Char('Y') => {
                        if let Some(row) = s.grid.as_ref().and_then(|g| g.rows.get(s.row)) {
                            return vec![Command::Copy(row.join("\t"))];
                        }
                    }
                    KeyCode::Char('e') => return vec![Command::Export(ExportFormat::Csv)],
                    KeyCode::Char('E') => return vec![Command::Export(ExportFormat::Json)],
                    KeyCode::Char('p') => return vec![Command::Export(ExportFormat::Parquet)],
                    _ => {}
                }
            }
        }
        Vec::new()
    }

    /// Runs the selection, else the statement under the cursor (statements are
    /// separated by `;`).
    fn run_sql(&mut self, now: Instant) -> Vec<Command> {
        let s = &mut self.sql;
        if s.running.is_some() {
            self.say("a statement is running: Esc cancels it", now);
            return Vec::new();
        }
        let sql = match s.editor.selection() {
            Some(selected) if !selected.trim().is_empty() => selected.trim().to_owned(),
            _ => s.editor.statement_at_cursor(),
        };
        if sql.trim().is_empty() {
            self.say("nothing to run: type a statement", now);
            return Vec::new();
        }
        let mut commands = Vec::new();
        if s.history.last() != Some(&sql) {
            s.history.push(sql.clone());
            commands.push(Command::Remember(sql.clone()));
        }
        s.history_pos = None;
        s.generation += 1;
        s.running = Some((s.generation, now));
        s.error = None;
        commands.push(Command::Sql {
            generation: s.generation,
            sql,
        });
        commands
    }

    fn history(&mut self, step: isize) {
        let s = &mut self.sql;
        if s.history.is_empty() {
            return;
        }
        let last = s.history.len() - 1;
        let pos = match (s.history_pos, step < 0) {
            (None, true) => last,
            (None, false) => return,
            (Some(p), true) => p.saturating_sub(1),
            (Some(p), false) if p >= last => {
                s.history_pos = None;
                s.editor.set("");
                return;
            }
            (Some(p), false) => p + 1,
        };
        s.history_pos = Some(pos);
        let text = s.history[pos].clone();
        s.editor.set(&text);
    }

    /// Completes the word at the cursor from tables, columns, functions and saved
    /// queries: at once when one fits, else the choices are listed and Tab takes turns.
    fn complete(&mut self) {
        let s = &mut self.sql;
        let word = s.editor.word_before_cursor();
        if !s.completions.is_empty() {
            // The next choice replaces the one put in.
            let i = s
                .completions
                .iter()
                .position(|c| *c == word)
                .map_or(0, |i| i + 1)
                % s.completions.len();
            let next = s.completions[i].clone();
            s.editor.replace_word_before_cursor(&next);
            return;
        }
        if word.is_empty() {
            return;
        }
        let lower = word.to_lowercase();
        let mut words: Vec<String> = self
            .catalog
            .columns
            .iter()
            .flat_map(|(t, c)| [t.clone(), c.clone()])
            .chain(self.catalog.saved.iter().map(|q| q.name.clone()))
            .chain(crate::edit::SQL_WORDS.iter().map(|w| (*w).to_owned()))
            .filter(|w| w.to_lowercase().starts_with(&lower) && w.len() > word.len())
            .collect();
        words.sort();
        words.dedup();
        match words.len() {
            0 => {}
            1 => s.editor.replace_word_before_cursor(&words[0]),
            _ => s.completions = words,
        }
    }

    fn on_sources_key(&mut self, k: KeyEvent) -> Vec<Command> {
        let s = &mut self.sources;
        let names: Vec<String> = s
            .status
            .as_ref()
            .map(|st| st.sources.iter().map(|x| x.source.clone()).collect())
            .unwrap_or_default();
        match k.code {
            KeyCode::Up | KeyCode::Char('k') => s.selected = s.selected.saturating_sub(1),
            KeyCode::Down | KeyCode::Char('j') => {
                s.selected = (s.selected + 1).min(names.len().saturating_sub(1));
            }
            KeyCode::Char('r') => return vec![Command::Status],
            KeyCode::Char('s') | KeyCode::Char('S') | KeyCode::Char('a') if !s.syncing => {
                let sources = match (k.code, names.get(s.selected)) {
                    (KeyCode::Char('s'), Some(n)) => vec![n.clone()],
                    (KeyCode::Char('s'), None) => return Vec::new(),
                    _ => Vec::new(),
                };
                s.syncing = true;
                s.progress = vec![if sources.is_empty() {
                    "sync of every source requested".to_owned()
                } else {
                    format!("sync of {} requested", sources[0])
                }];
                return vec![Command::Sync { sources }];
            }
            _ => {}
        }
        Vec::new()
    }

    fn on_links_key(&mut self, k: KeyEvent) -> Vec<Command> {
        let s = &mut self.links;
        let n = s.report.as_ref().map_or(0, |r| r.conflicts.len());
        match k.code {
            KeyCode::Up | KeyCode::Char('k') => s.selected = s.selected.saturating_sub(1),
            KeyCode::Down | KeyCode::Char('j') => {
                s.selected = (s.selected + 1).min(n.saturating_sub(1));
            }
            KeyCode::Char('r') => return vec![Command::Links],
            KeyCode::Enter => {
                let id = s
                    .report
                    .as_ref()
                    .and_then(|r| r.conflicts.get(s.selected))
                    .map(|c| c.subject_id.clone());
                if let Some(id) = id {
                    return self.open_subject(&id);
                }
            }
            _ => {}
        }
        Vec::new()
    }

    fn open_palette(&mut self) {
        let mut p = Overlay::Palette {
            input: LineInput::default(),
            matches: Vec::new(),
            selected: 0,
        };
        self.refresh_palette(&mut p);
        self.overlay = Some(p);
    }

    /// Everything the palette can offer.
    fn palette_items(&self) -> Vec<PaletteItem> {
        let mut tables: Vec<String> = self
            .catalog
            .columns
            .iter()
            .map(|(t, _)| t.clone())
            .collect();
        tables.dedup();
        View::ALL
            .into_iter()
            .map(PaletteItem::View)
            .chain(tables.into_iter().map(PaletteItem::Table))
            .chain(
                self.catalog
                    .saved
                    .iter()
                    .map(|q| PaletteItem::Saved(q.name.clone())),
            )
            .chain(
                self.catalog
                    .subjects
                    .iter()
                    .cloned()
                    .map(PaletteItem::Subject),
            )
            .collect()
    }

    fn refresh_palette(&self, overlay: &mut Overlay) {
        if let Overlay::Palette {
            input,
            matches,
            selected,
        } = overlay
        {
            *matches = crate::fuzzy::best(input.text(), self.palette_items(), 200);
            *selected = 0;
        }
    }

    fn on_overlay_key(&mut self, mut overlay: Overlay, k: KeyEvent, now: Instant) -> Vec<Command> {
        if k.code == KeyCode::Esc {
            return Vec::new();
        }
        match &mut overlay {
            Overlay::Help { filter, scroll } => match k.code {
                KeyCode::Up => *scroll = scroll.saturating_sub(1),
                KeyCode::Down => *scroll += 1,
                KeyCode::F(1) => return Vec::new(),
                _ => {
                    filter.on_key(k);
                    *scroll = 0;
                }
            },
            Overlay::Palette {
                matches, selected, ..
            } if matches!(k.code, KeyCode::Up | KeyCode::Down | KeyCode::Enter) => match k.code {
                KeyCode::Up => *selected = selected.saturating_sub(1),
                KeyCode::Down => *selected = (*selected + 1).min(matches.len().saturating_sub(1)),
                _ => {
                    let Some(item) = matches.get(*selected).cloned() else {
                        return Vec::new();
                    };
                    return self.choose(item, now);
                }
            },
            Overlay::Palette { input, .. } => {
                if input.on_key(k) {
                    self.refresh_palette(&mut overlay);
                }
            }
            Overlay::Prompt {
                query,
                index,
                values,
                input,
            } => {
                if k.code == KeyCode::Enter {
                    let param = &query.params[*index];
                    let text = input.text().trim().to_owned();
                    let value = if text.is_empty() {
                        param.default.clone()
                    } else {
                        Some(text)
                    };
                    match value {
                        Some(v) => values.push((param.name.clone(), v)),
                        None => {
                            self.say(
                                format!("`{}` has no default: give a value", param.name),
                                now,
                            );
                            self.overlay = Some(overlay);
                            return Vec::new();
                        }
                    }
                    *index += 1;
                    input.set("");
                    if *index == query.params.len() {
                        let (name, values) = (query.name.clone(), std::mem::take(values));
                        return self.run_saved(name, values, now);
                    }
                } else {
                    input.on_key(k);
                }
            }
        }
        self.overlay = Some(overlay);
        Vec::new()
    }

    fn choose(&mut self, item: PaletteItem, now: Instant) -> Vec<Command> {
        match item {
            PaletteItem::View(v) => self.switch(v),
            PaletteItem::Subject(id) => self.open_subject(&id),
            PaletteItem::Table(t) => {
                self.view = View::Sql;
                self.sql.focus = SqlFocus::Editor;
                self.sql.editor.set(&format!("SELECT * FROM {t} LIMIT 100"));
                self.run_sql(now)
            }
            PaletteItem::Saved(name) => {
                let Some(q) = self.catalog.saved.iter().find(|q| q.name == name).cloned() else {
                    return Vec::new();
                };
                self.view = View::Sql;
                self.sql.editor.set(&q.sql);
                if q.params.is_empty() {
                    return self.run_saved(q.name, Vec::new(), now);
                }
                let mut input = LineInput::default();
                if let Some(d) = &q.params[0].default {
                    input.set(d);
                }
                self.overlay = Some(Overlay::Prompt {
                    query: q,
                    index: 0,
                    values: Vec::new(),
                    input,
                });
                Vec::new()
            }
        }
    }

    fn run_saved(
        &mut self,
        name: String,
        values: Vec<(String, String)>,
        now: Instant,
    ) -> Vec<Command> {
        let s = &mut self.sql;
        if s.running.is_some() {
            self.say("a statement is running: Esc cancels it", now);
            return Vec::new();
        }
        s.generation += 1;
        s.running = Some((s.generation, now));
        s.error = None;
        vec![Command::Saved {
            generation: s.generation,
            name,
            values,
        }]
    }

    /// An answer of a background task.
    pub fn on_msg(&mut self, msg: Msg, now: Instant) {
        match msg {
            Msg::Searched { generation, result } => {
                if generation != self.search.generation {
                    return; // stale: a newer search was sent
                }
                self.search.loading = false;
                match result {
                    Ok(mut r) => {
                        self.search.selected =
                            self.search.selected.min(r.hits.len().saturating_sub(1));
                        // The previous facets stay until this search's come.
                        if r.facets.is_none() {
                            r.facets = self.search.result.take().and_then(|old| old.facets);
                            self.search.facets_pending = true;
                        }
                        self.search.result = Some(*r);
                        self.search.error = None;
                    }
                    Err(e) => self.search.error = Some(e),
                }
            }
            Msg::Faceted { generation, facets } => {
                if generation != self.search.generation {
                    return;
                }
                self.search.facets_pending = false;
                match facets {
                    Some(Ok(f)) => {
                        if let Some(r) = &mut self.search.result {
                            r.facets = Some(*f);
                        }
                    }
                    Some(Err(e)) => self.search.error = Some(e),
                    None => {}
                }
            }
            Msg::Record { generation, result } => {
                if generation == self.search.detail_generation {
                    self.search.detail = Some(result.map(|r| *r));
                }
            }
            Msg::Subject { generation, result } => {
                if generation != self.subject.generation {
                    return;
                }
                self.subject.loading = false;
                match result {
                    Ok(v) => {
                        self.subject.view = Some(*v);
                        self.subject.error = None;
                    }
                    Err(e) => {
                        self.subject.error = Some(e);
                        self.subject.editing = true;
                    }
                }
            }
            Msg::SqlDone {
                generation,
                result,
                elapsed,
            } => {
                if self.sql.running.map(|(g, _)| g) != Some(generation) {
                    return;
                }
                self.sql.running = None;
                let secs = elapsed.as_secs_f64();
                match result {
                    Ok(grid) => {
                        self.sql.outcome = Some(format!(
                            "{}{} rows in {secs:.2} s",
                            grid.rows.len(),
                            if grid.truncated { "+" } else { "" }
                        ));
                        self.sql.row = 0;
                        self.sql.col = 0;
                        self.sql.sort = None;
                        self.sql.grid = Some(grid);
                        self.sql.error = None;
                    }
                    Err(e) if e.code == "cancelled" => {
                        self.sql.outcome = Some(format!("cancelled after {secs:.1} s"));
                    }
                    Err(e) => {
                        self.sql.outcome = None;
                        self.sql.error = Some(e);
                    }
                }
            }
            Msg::Status(r) => match r {
                Ok(s) => {
                    self.sources.status = Some(*s);
                    self.sources.error = None;
                }
                Err(e) => self.sources.error = Some(e),
            },
            Msg::Datasets(r) => match r {
                Ok(list) => {
                    self.datasets.selected =
                        self.datasets.selected.min(list.len().saturating_sub(1));
                    self.datasets.list = Some(list);
                    self.datasets.error = None;
                }
                Err(e) => self.datasets.error = Some(e),
            },
            Msg::Links(r) => match r {
                Ok(l) => {
                    self.links.report = Some(*l);
                    self.links.error = None;
                }
                Err(e) => self.links.error = Some(e),
            },
            Msg::Sync(event) => {
                self.sources
                    .progress
                    .push(crate::ui::describe_event(&event));
                let keep = self.sources.progress.len().saturating_sub(200);
                self.sources.progress.drain(..keep);
            }
            Msg::SyncDone(r) => {
                self.sources.syncing = false;
                match r {
                    Ok(summary) => self.sources.progress.push(summary),
                    Err(e) => self.sources.progress.push(format!("error: {}", e.message)),
                }
                // What the sync changed shows everywhere.
                self.links.report = None;
                self.datasets.list = None;
                self.search.due = Some(now);
            }
            Msg::Catalog(c) => self.catalog = c,
            Msg::Note(n) => self.say(n, now),
        }
    }

    /// Keys of a test or a script, one after another, at `now`.
    pub fn type_text(&mut self, text: &str, now: Instant) -> Vec<Command> {
        text.chars()
            .flat_map(|c| self.on_key(key(KeyCode::Char(c)), now))
            .collect()
    }
}

/// Sorts rows by one column: numbers as numbers when every cell is one, else as text;
/// `NULL` last.
fn sort_rows(g: &mut Grid, col: usize, ascending: bool) {
    let numeric = g
        .rows
        .iter()
        .filter_map(|r| r.get(col))
        .filter(|v| *v != "NULL")
        .all(|v| v.parse::<f64>().is_ok());
    g.rows.sort_by(|a, b| {
        let (a, b) = (a.get(col), b.get(col));
        let null = |v: Option<&String>| v.is_none_or(|v| v == "NULL");
        match (null(a), null(b)) {
            (true, true) => return std::cmp::Ordering::Equal,
            (true, false) => return std::cmp::Ordering::Greater,
            (false, true) => return std::cmp::Ordering::Less,
            _ => {}
        }
        let (a, b) = (a.map_or("", |s| s), b.map_or("", |s| s));
        let order = if numeric {
            let (x, y) = (
                a.parse::<f64>().unwrap_or(0.0),
                b.parse::<f64>().unwrap_or(0.0),
            );
            x.total_cmp(&y)
        } else {
            a.cmp(b)
        };
        if ascending { order } else { order.reverse() }
    });
}
