//! Draws the [`App`]: tab bar, the view, footer keys and overlays. Reads the state,
//! changes nothing; the same state draws the same screen (snapshot tests rely on it).

use std::time::Instant;

use crossdex_service::SyncEvent;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span, Text};
use ratatui::widgets::{
    Block, Borders, Cell, Clear, List, ListItem, ListState, Paragraph, Row, Sparkline, Table,
    TableState, Wrap,
};

use crate::app::{App, Failure, Overlay, SearchFocus, SqlFocus, View};
use crate::keys;

/// Colours, or none (`NO_COLOR`): emphasis then rests on bold, reverse and underline.
#[derive(Debug, Clone, Copy)]
pub struct Theme {
    pub color: bool,
}

impl Theme {
    /// Colours unless `NO_COLOR` is set to anything non-empty.
    pub fn from_env() -> Theme {
        Theme {
            color: std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
        }
    }

    fn fg(self, c: Color) -> Style {
        if self.color {
            Style::default().fg(c)
        } else {
            Style::default()
        }
    }

    fn selected(self) -> Style {
        Style::default().add_modifier(Modifier::REVERSED)
    }

    fn match_(self) -> Style {
        self.fg(Color::Yellow).add_modifier(Modifier::BOLD)
    }

    fn error(self) -> Style {
        self.fg(Color::Red).add_modifier(Modifier::BOLD)
    }

    fn dim(self) -> Style {
        if self.color {
            Style::default().fg(Color::DarkGray)
        } else {
            Style::default()
        }
    }

    fn focus_border(self, focused: bool) -> Style {
        if focused {
            self.fg(Color::Cyan).add_modifier(Modifier::BOLD)
        } else {
            Style::default()
        }
    }
}

/// What marks the selected row, so that it shows without colours and in text captures.
const MARK: &str = "› ";

/// A table's header: its column names in bold.
fn header_row(names: &[&'static str]) -> Row<'static> {
    Row::new(names.to_vec()).style(Style::default().add_modifier(Modifier::BOLD))
}

fn block(title: &str, focused: bool, theme: Theme) -> Block<'static> {
    Block::default()
        .borders(Borders::ALL)
        .border_style(theme.focus_border(focused))
        .title(if focused {
            format!("[{title}]")
        } else {
            title.to_owned()
        })
}

/// A source's badge colour: the same source, the same colour.
fn badge(source: &str, theme: Theme) -> Style {
    const COLORS: [Color; 6] = [
        Color::Blue,
        Color::Magenta,
        Color::Green,
        Color::Cyan,
        Color::Yellow,
        Color::LightRed,
    ];
    let i = source
        .bytes()
        .fold(0usize, |a, b| a.wrapping_add(b as usize))
        % COLORS.len();
    theme.fg(COLORS[i]).add_modifier(Modifier::BOLD)
}

/// `app` drawn on a `width`×`height` screen without colours, as text: one line per row,
/// trailing spaces kept (what a terminal would show).
pub fn screen(app: &App, width: u16, height: u16) -> String {
    let backend = ratatui::backend::TestBackend::new(width, height);
    let Ok(mut terminal) = ratatui::Terminal::new(backend);
    let theme = Theme { color: false };
    // A fixed instant: the elapsed time of a running query is not the screen's to vary.
    let now = app
        .sql
        .running
        .map_or_else(Instant::now, |(_, since)| since);
    if terminal.draw(|f| draw(f, app, theme, now)).is_err() {
        return String::new();
    }
    let buffer = terminal.backend().buffer();
    let mut out = String::new();
    for y in 0..buffer.area.height {
        for x in 0..buffer.area.width {
            out.push_str(buffer[(x, y)].symbol());
        }
        out.push('\n');
    }
    out
}

/// Draws the whole screen.
pub fn draw(f: &mut Frame, app: &App, theme: Theme, now: Instant) {
    let area = f.area();
    let [tabs, body, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(3),
        Constraint::Length(1),
    ])
    .areas(area);
    draw_tabs(f, tabs, app, theme);
    match app.view {
        View::Search => draw_search(f, body, app, theme),
        View::Subject => draw_subject(f, body, app, theme),
        View::Sql => draw_sql(f, body, app, theme, now),
        View::Sources => draw_sources(f, body, app, theme),
        View::Links => draw_links(f, body, app, theme),
        View::Datasets => draw_datasets(f, body, app, theme),
    }
    draw_footer(f, footer, app, theme);
    if let Some(o) = &app.overlay {
        draw_overlay(f, area, o, theme);
    }
}

fn draw_tabs(f: &mut Frame, area: Rect, app: &App, theme: Theme) {
    let mut spans = vec![Span::styled(
        " crossdex ",
        theme.fg(Color::Cyan).add_modifier(Modifier::BOLD),
    )];
    for (i, v) in View::ALL.iter().enumerate() {
        let label = format!(" F{} {} ", i + 2, v.title());
        spans.push(if *v == app.view {
            Span::styled(label, theme.selected().add_modifier(Modifier::BOLD))
        } else {
            Span::raw(label)
        });
    }
    let left = Line::from(spans);
    let right = Line::from(Span::styled(format!("{} ", app.location), theme.dim()));
    let width = left.width() as u16;
    f.render_widget(Paragraph::new(left), area);
    if area.width > width + 10 {
        f.render_widget(
            Paragraph::new(right).alignment(ratatui::layout::Alignment::Right),
            Rect {
                x: area.x + width,
                width: area.width - width,
                ..area
            },
        );
    }
}

fn draw_footer(f: &mut Frame, area: Rect, app: &App, theme: Theme) {
    let line = match &app.note {
        Some((note, _)) => Line::from(Span::styled(note.clone(), theme.fg(Color::Green))),
        None => {
            let mut spans = Vec::new();
            for (k, what) in keys::footer(app) {
                spans.push(Span::styled(
                    k,
                    Style::default().add_modifier(Modifier::BOLD),
                ));
                spans.push(Span::raw(format!(" {what}  ")));
            }
            Line::from(spans)
        }
    };
    f.render_widget(Paragraph::new(line), area);
}

/// Text with the `**`-marked words emphasized.
fn marked(text: &str, theme: Theme) -> Line<'static> {
    let mut spans = Vec::new();
    for (i, part) in text.split("**").enumerate() {
        if part.is_empty() {
            continue;
        }
        let part = part.replace('\n', " ");
        spans.push(if i % 2 == 1 {
            Span::styled(part, theme.match_())
        } else {
            Span::raw(part)
        });
    }
    Line::from(spans)
}

fn error_lines(e: &Failure, theme: Theme) -> Vec<Line<'static>> {
    vec![
        Line::from(Span::styled(format!("error ({})", e.code), theme.error())),
        Line::from(e.message.clone()),
    ]
}

fn draw_search(f: &mut Frame, area: Rect, app: &App, theme: Theme) {
    let s = &app.search;
    let [bar, hist, main] = Layout::vertical([
        Constraint::Length(3),
        Constraint::Length(if area.height >= 20 { 3 } else { 0 }),
        Constraint::Min(3),
    ])
    .areas(area);
    // The query bar: the query, active filters, and the parser's error in place.
    let focused = s.focus() == SearchFocus::Query;
    let mut title = format!(
        "Search{}",
        match &s.result {
            Some(r) => format!(" - {} hits", r.total),
            None => String::new(),
        }
    );
    if s.loading {
        title.push_str(" …");
    }
    let mut spans = vec![Span::raw(s.query.text().to_owned())];
    for filter in &s.filters {
        let sign = if filter.include { "" } else { "NOT " };
        spans.push(Span::raw("  "));
        spans.push(Span::styled(
            format!("[{sign}{}:{}]", filter.field, filter.value),
            theme.fg(Color::Cyan).add_modifier(Modifier::BOLD),
        ));
    }
    let mut bar_block = block(&title, focused, theme);
    if let Some(e) = &s.error {
        let at = e.position.map_or(String::new(), |p| format!(" at {p}"));
        bar_block = bar_block.title_bottom(Line::from(Span::styled(
            format!(" {}{at} ", e.message),
            theme.error(),
        )));
    }
    f.render_widget(Paragraph::new(Line::from(spans)).block(bar_block), bar);
    if focused {
        let x = bar.x
            + 1
            + s.query.text()[..byte(s.query.text(), s.query.cursor())]
                .chars()
                .count() as u16;
        f.set_cursor_position((x.min(bar.right().saturating_sub(2)), bar.y + 1));
    }
    if hist.height > 0 {
        draw_histogram(f, hist, app, theme);
    }
    let wide = main.width >= 120;
    let facets_w = if main.width >= 100 { 30 } else { 24 };
    let chunks: Vec<Rect> = match (s.detail_open, wide) {
        (false, _) => Layout::horizontal([Constraint::Length(facets_w), Constraint::Min(20)])
            .split(main)
            .to_vec(),
        (true, true) => Layout::horizontal([
            Constraint::Length(facets_w),
            Constraint::Percentage(40),
            Constraint::Min(30),
        ])
        .split(main)
        .to_vec(),
        (true, false) => Layout::horizontal([Constraint::Percentage(45), Constraint::Min(20)])
            .split(main)
            .to_vec(),
    };
    let (facets, results, detail) = match chunks.as_slice() {
        [a, b] if !s.detail_open => (Some(*a), *b, None),
        [a, b] => (None, *a, Some(*b)),
        [a, b, c] => (Some(*a), *b, Some(*c)),
        _ => return,
    };
    if let Some(area) = facets {
        draw_facets(f, area, app, theme);
    }
    draw_results(f, results, app, theme);
    if let Some(area) = detail {
        draw_detail(f, area, app, theme);
    }
}

fn byte(s: &str, chars: usize) -> usize {
    s.char_indices().nth(chars).map_or(s.len(), |(b, _)| b)
}

fn draw_histogram(f: &mut Frame, area: Rect, app: &App, theme: Theme) {
    let Some(facets) = app.search.result.as_ref().and_then(|r| r.facets.as_ref()) else {
        f.render_widget(
            Block::default()
                .borders(Borders::ALL)
                .title("Hits over time"),
            area,
        );
        return;
    };
    let months = &facets.month;
    let title = match (months.first(), months.last()) {
        (Some(a), Some(b)) => format!(
            "Hits by month {} … {}{}",
            a.value,
            b.value,
            if facets.undated > 0 {
                format!(" ({} undated)", facets.undated)
            } else {
                String::new()
            }
        ),
        _ => format!("Hits by month: none dated ({} undated)", facets.undated),
    };
    let inner_w = area.width.saturating_sub(2) as usize;
    // Months squeezed into the width: neighbours summed.
    let per = months.len().div_ceil(inner_w.max(1)).max(1);
    let data: Vec<u64> = months
        .chunks(per)
        .map(|c| c.iter().map(|b| b.count).sum())
        .collect();
    f.render_widget(
        Sparkline::default()
            .block(Block::default().borders(Borders::ALL).title(title))
            .data(&data)
            .style(theme.fg(Color::Cyan)),
        area,
    );
}

fn draw_facets(f: &mut Frame, area: Rect, app: &App, theme: Theme) {
    let s = &app.search;
    let focused = s.focus() == SearchFocus::Facets;
    let rows = s.facet_rows();
    let mut items = Vec::new();
    let mut index_of_row = Vec::new();
    let mut last_title = "";
    // Inside the borders, less the selection mark: counts stay in view.
    let width = area.width.saturating_sub(4) as usize;
    for (field, title, value, count) in &rows {
        if *title != last_title {
            items.push(ListItem::new(Line::from(Span::styled(
                title.to_uppercase(),
                Style::default().add_modifier(Modifier::BOLD | Modifier::UNDERLINED),
            ))));
            last_title = title;
        }
        let active = s
            .filters
            .iter()
            .any(|fl| fl.field == *field && fl.value == *value);
        let count = count.to_string();
        let room = width.saturating_sub(count.len() + 3);
        let shown: String = value.chars().take(room).collect();
        let pad = width.saturating_sub(shown.chars().count() + count.len() + 2);
        let style = if active {
            theme.fg(Color::Cyan).add_modifier(Modifier::BOLD)
        } else {
            Style::default()
        };
        index_of_row.push(items.len());
        items.push(ListItem::new(Line::from(vec![
            Span::styled(format!(" {shown}{}", " ".repeat(pad)), style),
            Span::styled(format!(" {count}"), theme.dim()),
        ])));
    }
    if items.is_empty() {
        items.push(ListItem::new("no facets"));
    }
    let mut state = ListState::default();
    if focused {
        state.select(index_of_row.get(s.facet_selected).copied());
    }
    f.render_stateful_widget(
        List::new(items)
            .block(block(
                if s.facets_pending {
                    "Facets (counting…)"
                } else {
                    "Facets (+ in, - out)"
                },
                focused,
                theme,
            ))
            .highlight_style(theme.selected())
            .highlight_symbol(MARK),
        area,
        &mut state,
    );
}

fn draw_results(f: &mut Frame, area: Rect, app: &App, theme: Theme) {
    let s = &app.search;
    let focused = s.focus() == SearchFocus::Results;
    let b = block("Results", focused, theme);
    let Some(r) = &s.result else {
        let text = if s.loading {
            "searching…"
        } else {
            "type a query"
        };
        f.render_widget(Paragraph::new(text).block(b), area);
        return;
    };
    if r.hits.is_empty() {
        f.render_widget(
            Paragraph::new(
                "no record matches; try fewer words, a prefix (amyl*) or remove a filter (x)",
            )
            .wrap(Wrap { trim: true })
            .block(b),
            area,
        );
        return;
    }
    let items: Vec<ListItem> = r
        .hits
        .iter()
        .map(|h| {
            let head = Line::from(vec![
                Span::styled(format!("[{}]", h.source), badge(&h.source, theme)),
                Span::raw(" "),
                Span::styled(h.kind.clone(), theme.dim()),
                Span::raw(" "),
                Span::styled(
                    h.subject_id.clone().unwrap_or_else(|| "-".into()),
                    theme.fg(Color::Green),
                ),
                Span::raw(" "),
                Span::styled(
                    h.title.clone(),
                    Style::default().add_modifier(Modifier::BOLD),
                ),
            ]);
            let mut snippet = marked(&h.snippet, theme);
            snippet.spans.insert(0, Span::raw("  "));
            ListItem::new(Text::from(vec![head, snippet]))
        })
        .collect();
    let mut state = ListState::default();
    state.select(Some(s.selected));
    f.render_stateful_widget(
        List::new(items)
            .block(b)
            .highlight_symbol(MARK)
            .highlight_style(if focused {
                theme.selected()
            } else {
                Style::default().add_modifier(Modifier::BOLD)
            }),
        area,
        &mut state,
    );
}

fn draw_detail(f: &mut Frame, area: Rect, app: &App, theme: Theme) {
    let b = block(
        "Record (o open, y copy link, s subject, Esc close)",
        false,
        theme,
    );
    let Some(detail) = &app.search.detail else {
        f.render_widget(Paragraph::new("loading…").block(b), area);
        return;
    };
    let d = match detail {
        Ok(d) => d,
        Err(e) => {
            f.render_widget(
                Paragraph::new(error_lines(e, theme))
                    .wrap(Wrap { trim: true })
                    .block(b),
                area,
            );
            return;
        }
    };
    let r = &d.record;
    let field = |k: &str, v: String| {
        Line::from(vec![
            Span::styled(format!("{k:>9} "), theme.dim()),
            Span::raw(v),
        ])
    };
    let mut lines = vec![
        Line::from(Span::styled(
            r.title.clone(),
            Style::default().add_modifier(Modifier::BOLD),
        )),
        field("source", format!("{} ({})", r.source, r.system)),
        field("kind", r.kind.clone()),
        field("id", r.native_id.clone()),
        field(
            "subject",
            r.subject_id.clone().unwrap_or_else(|| "-".into()),
        ),
    ];
    if let Some(p) = &r.project {
        lines.push(field("project", p.clone()));
    }
    if let Some(c) = &r.created_at {
        lines.push(field("created", c.clone()));
    }
    if let Some(link) = &d.deep_link {
        lines.push(field("link", link.clone()));
    }
    if let Some(desc) = &r.description {
        lines.push(field("about", desc.clone()));
    }
    let head_h = (lines.len() as u16 + 2).min(area.height / 2).max(3);
    let [head, obs] =
        Layout::vertical([Constraint::Length(head_h), Constraint::Min(3)]).areas(area);
    f.render_widget(
        Paragraph::new(lines).wrap(Wrap { trim: true }).block(b),
        head,
    );
    let rows: Vec<Row> = d
        .observations
        .iter()
        .map(|o| {
            let value = o
                .value_num
                .map(|n| n.to_string())
                .or_else(|| o.value_date.clone())
                .or_else(|| o.value_text.clone())
                .unwrap_or_default();
            Row::new(vec![
                Cell::from(o.label.clone().unwrap_or_else(|| o.variable.clone())),
                Cell::from(value),
                Cell::from(o.unit.clone().unwrap_or_default()),
                Cell::from(o.event.clone().unwrap_or_default()),
                Cell::from(o.instance.map(|i| i.to_string()).unwrap_or_default()),
            ])
        })
        .collect();
    let n = rows.len();
    f.render_widget(
        Table::new(
            rows,
            [
                Constraint::Percentage(35),
                Constraint::Percentage(30),
                Constraint::Length(6),
                Constraint::Percentage(20),
                Constraint::Length(4),
            ],
        )
        .header(header_row(&["variable", "value", "unit", "event", "#"]))
        .block(
            Block::default()
                .borders(Borders::ALL)
                .title(format!("Observations ({n})")),
        ),
        obs,
    );
}

fn draw_subject(f: &mut Frame, area: Rect, app: &App, theme: Theme) {
    let s = &app.subject;
    let [bar, main] = Layout::vertical([Constraint::Length(3), Constraint::Min(3)]).areas(area);
    let mut b = block(
        "Subject: any spelling (subj:..., a label, a source's key)",
        s.editing,
        theme,
    );
    if let Some(e) = &s.error {
        b = b.title_bottom(Line::from(Span::styled(
            format!(" {} ", e.message),
            theme.error(),
        )));
    }
    f.render_widget(Paragraph::new(s.input.text().to_owned()).block(b), bar);
    if s.editing {
        let x = bar.x + 1 + s.input.cursor() as u16;
        f.set_cursor_position((x.min(bar.right().saturating_sub(2)), bar.y + 1));
    }
    let Some(v) = &s.view else {
        let text = if s.loading {
            "loading…"
        } else {
            "type a subject and Enter"
        };
        f.render_widget(
            Paragraph::new(text).block(Block::default().borders(Borders::ALL)),
            main,
        );
        return;
    };
    let wide = main.width >= 120;
    let areas: Vec<Rect> = if wide {
        Layout::horizontal([
            Constraint::Percentage(34),
            Constraint::Percentage(33),
            Constraint::Percentage(33),
        ])
        .split(main)
        .to_vec()
    } else {
        Layout::vertical([
            Constraint::Length((v.keys.len() as u16 + 3).min(main.height / 3)),
            Constraint::Length((v.records.len() as u16 + 3).min(main.height / 3)),
            Constraint::Min(3),
        ])
        .split(main)
        .to_vec()
    };
    let keys: Vec<Row> = v
        .keys
        .iter()
        .map(|k| {
            let conflict = k.rule.starts_with("conflict");
            let style = if conflict {
                theme.error()
            } else {
                Style::default()
            };
            Row::new(vec![
                Cell::from(Span::styled(k.source.clone(), badge(&k.source, theme))),
                Cell::from(k.subject_key.clone()),
                Cell::from(k.rule.clone()),
                Cell::from(format!("{:.2}", k.confidence)),
            ])
            .style(style)
        })
        .collect();
    f.render_widget(
        Table::new(
            keys,
            [
                Constraint::Length(10),
                Constraint::Min(10),
                Constraint::Min(10),
                Constraint::Length(5),
            ],
        )
        .header(header_row(&["source", "key", "rule", "conf"]))
        .block(
            Block::default()
                .borders(Borders::ALL)
                .title(format!("{} - keys in every source", v.subject_id)),
        ),
        areas[0],
    );
    let records: Vec<Row> = v
        .records
        .iter()
        .map(|r| {
            Row::new(vec![
                Cell::from(Span::styled(r.source.clone(), badge(&r.source, theme))),
                Cell::from(r.kind.clone()),
                Cell::from(r.n.to_string()),
                Cell::from(r.example.clone().unwrap_or_default()),
            ])
        })
        .collect();
    let mut state = TableState::default();
    if !s.editing {
        state.select(Some(s.selected));
    }
    f.render_stateful_widget(
        Table::new(
            records,
            [
                Constraint::Length(10),
                Constraint::Length(12),
                Constraint::Length(5),
                Constraint::Min(10),
            ],
        )
        .header(header_row(&["source", "kind", "n", "example"]))
        .row_highlight_style(theme.selected())
        .highlight_symbol(MARK)
        .block(block(
            "Records per source (Enter lists them)",
            !s.editing,
            theme,
        )),
        areas[1],
        &mut state,
    );
    let timeline: Vec<ListItem> = v
        .timeline
        .iter()
        .map(|t| {
            ListItem::new(Line::from(vec![
                Span::styled(t.at.chars().take(10).collect::<String>(), theme.dim()),
                Span::raw(" "),
                Span::styled(format!("[{}]", t.source), badge(&t.source, theme)),
                Span::raw(format!(" {}", t.what)),
            ]))
        })
        .collect();
    f.render_widget(
        List::new(timeline).block(
            Block::default()
                .borders(Borders::ALL)
                .title(format!("Timeline ({})", v.timeline.len())),
        ),
        areas[2],
    );
}

fn draw_sql(f: &mut Frame, area: Rect, app: &App, theme: Theme, now: Instant) {
    let s = &app.sql;
    let editor_h = (s.editor.lines().len() as u16 + 2).clamp(4, (area.height / 2).max(4));
    let [editor, status, grid] = Layout::vertical([
        Constraint::Length(editor_h),
        Constraint::Length(1),
        Constraint::Min(3),
    ])
    .areas(area);
    let focused = s.focus == SqlFocus::Editor;
    let (row, col) = s.editor.cursor();
    let visible = editor_h.saturating_sub(2) as usize;
    let top = row.saturating_sub(visible.saturating_sub(1));
    let lines: Vec<Line> = s
        .editor
        .lines()
        .iter()
        .enumerate()
        .skip(top)
        .take(visible)
        .map(|(i, l)| {
            let mut spans = vec![Span::styled(format!("{:>3} ", i + 1), theme.dim())];
            match s.editor.selection_range() {
                // A selected part shows reversed, the line around it plain.
                Some(((r0, c0), (r1, c1))) if (r0..=r1).contains(&i) => {
                    let n = l.chars().count();
                    let from = if i == r0 { c0 } else { 0 };
                    let to = if i == r1 { c1 } else { n };
                    let part =
                        |a: usize, b: usize| l.chars().skip(a).take(b - a).collect::<String>();
                    spans.push(Span::raw(part(0, from)));
                    spans.push(Span::styled(part(from, to), theme.selected()));
                    spans.push(Span::raw(part(to, n)));
                }
                _ => spans.extend(highlight_sql(l, theme)),
            }
            Line::from(spans)
        })
        .collect();
    let mut b = block(
        "SQL (Ctrl-R runs the selection or the statement at the cursor, Tab completes)",
        focused,
        theme,
    );
    if !s.completions.is_empty() {
        let shown: Vec<&str> = s.completions.iter().take(8).map(String::as_str).collect();
        b = b.title_bottom(Line::from(format!(" Tab: {} ", shown.join(" "))));
    }
    f.render_widget(Paragraph::new(lines).block(b), editor);
    if focused {
        f.set_cursor_position((
            (editor.x + 5 + col as u16).min(editor.right().saturating_sub(2)),
            editor.y + 1 + (row - top) as u16,
        ));
    }
    let status_line = match (&s.running, &s.error, &s.outcome) {
        (Some((_, since)), _, _) => Line::from(Span::styled(
            format!(
                "running {:.1} s - Esc cancels",
                now.saturating_duration_since(*since).as_secs_f64()
            ),
            theme.fg(Color::Yellow).add_modifier(Modifier::BOLD),
        )),
        (None, Some(e), _) => Line::from(Span::styled(
            format!(
                "{}{}",
                e.message,
                e.position.map_or(String::new(), |p| format!(" (at {p})"))
            ),
            theme.error(),
        )),
        (None, None, Some(o)) => Line::from(Span::styled(o.clone(), theme.fg(Color::Green))),
        _ => Line::from(Span::styled("no statement run yet", theme.dim())),
    };
    f.render_widget(Paragraph::new(status_line), status);
    draw_grid(f, grid, app, theme);
}

/// SQL words in colour, strings and numbers apart.
fn highlight_sql(line: &str, theme: Theme) -> Vec<Span<'static>> {
    let mut spans = Vec::new();
    let mut word = String::new();
    let mut in_string = false;
    let flush = |word: &mut String, spans: &mut Vec<Span<'static>>| {
        if word.is_empty() {
            return;
        }
        let w = std::mem::take(word);
        let style = if crate::edit::SQL_WORDS
            .iter()
            .any(|k| k.eq_ignore_ascii_case(&w))
        {
            theme.fg(Color::Magenta).add_modifier(Modifier::BOLD)
        } else if w.chars().all(|c| c.is_ascii_digit() || c == '.') {
            theme.fg(Color::Cyan)
        } else {
            Style::default()
        };
        spans.push(Span::styled(w, style));
    };
    let mut string = String::new();
    for c in line.chars() {
        if in_string {
            string.push(c);
            if c == '\'' {
                spans.push(Span::styled(
                    std::mem::take(&mut string),
                    theme.fg(Color::Green),
                ));
                in_string = false;
            }
        } else if c == '\'' {
            flush(&mut word, &mut spans);
            in_string = true;
            string.push(c);
        } else if c.is_alphanumeric() || c == '_' || c == '.' {
            word.push(c);
        } else {
            flush(&mut word, &mut spans);
            spans.push(Span::raw(c.to_string()));
        }
    }
    flush(&mut word, &mut spans);
    if !string.is_empty() {
        spans.push(Span::styled(string, theme.fg(Color::Green)));
    }
    spans
}

fn draw_grid(f: &mut Frame, area: Rect, app: &App, theme: Theme) {
    let s = &app.sql;
    let focused = s.focus == SqlFocus::Grid;
    let Some(g) = &s.grid else {
        f.render_widget(
            Paragraph::new("").block(block("Results", focused, theme)),
            area,
        );
        return;
    };
    let title = format!(
        "Results {}×{}{} (s sort, y cell, Y row, e CSV, E JSON, p Parquet)",
        g.rows.len(),
        g.columns.len(),
        if g.truncated { ", first rows" } else { "" }
    );
    if g.columns.is_empty() {
        f.render_widget(
            Paragraph::new("no columns").block(block(&title, focused, theme)),
            area,
        );
        return;
    }
    // Widths from the header and the first rows, at most 40.
    let width_of = |c: usize| -> u16 {
        let w = g
            .rows
            .iter()
            .take(200)
            .map(|r| r.get(c).map_or(0, |v| v.chars().count()))
            .max()
            .unwrap_or(0)
            .max(g.columns[c].chars().count());
        w.clamp(3, 40) as u16
    };
    // The first column stays; the others scroll so that the cursor's is shown.
    let inner = area.width.saturating_sub(2);
    let first = width_of(0);
    let mut cols = vec![0usize];
    let mut used = first + 1;
    let start = if s.col == 0 { 1 } else { s.col };
    let mut c = start;
    // Columns before the cursor's when room is left.
    while c < g.columns.len() {
        let w = width_of(c);
        if used + w + 1 > inner && cols.len() > 1 {
            break;
        }
        cols.push(c);
        used += w + 1;
        c += 1;
    }
    let visible_rows = area.height.saturating_sub(3) as usize;
    let top = s.row.saturating_sub(visible_rows.saturating_sub(1));
    let header = Row::new(cols.iter().map(|&c| {
        let sort = match s.sort {
            Some((sc, asc)) if sc == c => {
                if asc {
                    " ▲"
                } else {
                    " ▼"
                }
            }
            _ => "",
        };
        Cell::from(format!("{}{sort}", g.columns[c]))
    }))
    .style(Style::default().add_modifier(Modifier::BOLD | Modifier::UNDERLINED));
    let rows: Vec<Row> = g
        .rows
        .iter()
        .enumerate()
        .skip(top)
        .take(visible_rows)
        .map(|(ri, r)| {
            Row::new(cols.iter().map(|&c| {
                let v = r.get(c).cloned().unwrap_or_default();
                let mut style = if v == "NULL" {
                    theme.dim()
                } else {
                    Style::default()
                };
                if c == 0 {
                    style = style.add_modifier(Modifier::BOLD);
                }
                if focused && ri == s.row && c == s.col {
                    style = theme.selected();
                }
                Cell::from(Span::styled(v, style))
            }))
        })
        .collect();
    let widths: Vec<Constraint> = cols
        .iter()
        .map(|&c| Constraint::Length(width_of(c)))
        .collect();
    f.render_widget(
        Table::new(rows, widths)
            .header(header)
            .block(block(&title, focused, theme)),
        area,
    );
}

fn draw_sources(f: &mut Frame, area: Rect, app: &App, theme: Theme) {
    let s = &app.sources;
    let progress_h = if s.progress.is_empty() {
        0
    } else {
        (area.height / 3).max(4)
    };
    let [table, progress] =
        Layout::vertical([Constraint::Min(3), Constraint::Length(progress_h)]).areas(area);
    let title = "Sources (s sync selected, a sync all, r refresh)";
    if let Some(e) = &s.error {
        f.render_widget(
            Paragraph::new(error_lines(e, theme)).block(block(title, true, theme)),
            table,
        );
    } else if let Some(st) = &s.status {
        let rows: Vec<Row> = st
            .sources
            .iter()
            .map(|x| {
                let (last, style) = match &x.last_run {
                    Some(r) => (
                        format!(
                            "{} {} +{} ~{} -{}",
                            r.status,
                            r.finished_at.format("%m-%d %H:%M"),
                            r.added,
                            r.updated,
                            r.deleted
                        ),
                        if r.status == "succeeded" {
                            Style::default()
                        } else {
                            theme.error()
                        },
                    ),
                    None => ("never synced".to_owned(), theme.dim()),
                };
                Row::new(vec![
                    Cell::from(Span::styled(x.source.clone(), badge(&x.source, theme))),
                    Cell::from(x.system.clone().unwrap_or_default()),
                    Cell::from(x.records.to_string()),
                    Cell::from(x.observations.to_string()),
                    Cell::from(Span::styled(last, style)),
                    Cell::from(
                        x.last_run
                            .as_ref()
                            .and_then(|r| r.error.clone())
                            .or_else(|| {
                                x.next_run
                                    .map(|n| format!("next {}", n.format("%m-%d %H:%M")))
                            })
                            .unwrap_or_default(),
                    ),
                ])
            })
            .collect();
        let mut state = TableState::default();
        state.select(Some(s.selected));
        f.render_stateful_widget(
            Table::new(
                rows,
                [
                    Constraint::Length(10),
                    Constraint::Length(10),
                    Constraint::Length(8),
                    Constraint::Length(8),
                    Constraint::Length(33),
                    Constraint::Min(10),
                ],
            )
            .header(header_row(&[
                "source",
                "system",
                "records",
                "observ.",
                "last run",
                "error / next",
            ]))
            .row_highlight_style(theme.selected())
            .highlight_symbol(MARK)
            .block(block(
                &format!(
                    "{title} - {} records, {} observations",
                    st.records, st.observations
                ),
                true,
                theme,
            )),
            table,
            &mut state,
        );
    } else {
        f.render_widget(
            Paragraph::new("loading…").block(block(title, true, theme)),
            table,
        );
    }
    if progress_h > 0 {
        let lines: Vec<Line> = s
            .progress
            .iter()
            .rev()
            .take(progress_h as usize - 2)
            .rev()
            .map(|l| Line::from(l.clone()))
            .collect();
        let t = if s.syncing { "Sync - running" } else { "Sync" };
        f.render_widget(
            Paragraph::new(lines).block(Block::default().borders(Borders::ALL).title(t)),
            progress,
        );
    }
}

/// One line of a sync's progress.
pub fn describe_event(e: &SyncEvent) -> String {
    match e {
        SyncEvent::Started { source, mode } => format!("{source}: {mode} sync started"),
        SyncEvent::Fetched {
            source,
            pages,
            items,
        } => {
            format!("{source}: fetched {pages} page(s), {items} item(s)")
        }
        SyncEvent::Written {
            source,
            pages,
            added,
            updated,
            unchanged,
            rejected,
        } => format!(
            "{source}: written {pages} page(s): +{added} ~{updated} ={unchanged} rejected {rejected}"
        ),
        SyncEvent::Finished { run } => format!(
            "{}: {} in {:.1} s{}",
            run.source,
            run.status,
            run.seconds,
            run.error
                .as_ref()
                .map_or(String::new(), |e| format!(": {e}"))
        ),
        SyncEvent::Linked { summary } => format!(
            "linked {} key(s) into {} subject(s), {} conflict(s)",
            summary.keys, summary.subjects, summary.conflicts
        ),
        SyncEvent::LinkFailed { error } => format!("linking failed: {}", error.message),
        SyncEvent::Note { message } => message.clone(),
    }
}

fn draw_datasets(f: &mut Frame, area: Rect, app: &App, theme: Theme) {
    let s = &app.datasets;
    let title = "Datasets (Enter its records, r refresh)";
    let list = match (&s.error, &s.list) {
        (Some(e), _) => {
            f.render_widget(
                Paragraph::new(error_lines(e, theme)).block(block(title, true, theme)),
                area,
            );
            return;
        }
        (None, None) => {
            f.render_widget(
                Paragraph::new("loading…").block(block(title, true, theme)),
                area,
            );
            return;
        }
        (None, Some(list)) => list,
    };
    if list.is_empty() {
        f.render_widget(
            Paragraph::new("no datasets: sync a source first").block(block(title, true, theme)),
            area,
        );
        return;
    }
    let [table, detail] =
        Layout::vertical([Constraint::Percentage(55), Constraint::Min(3)]).areas(area);
    let complete = list.iter().filter(|d| d.is_complete()).count();
    let rows: Vec<Row> = list
        .iter()
        .map(|d| {
            let held = match (d.counts.sessions, d.counts.images) {
                (0, 0) => format!("{} obs.", d.counts.observations),
                (0, n) => format!("{n} images"),
                (n, _) => format!("{n} sessions"),
            };
            Row::new(vec![
                Cell::from(Span::styled(d.source.clone(), badge(&d.source, theme))),
                Cell::from(d.kind.clone()),
                Cell::from(d.title.clone()),
                Cell::from(d.counts.subjects.to_string()),
                Cell::from(held),
                Cell::from(if d.is_complete() {
                    Span::raw("yes")
                } else {
                    Span::styled("no", theme.dim())
                }),
            ])
        })
        .collect();
    let mut state = TableState::default();
    state.select(Some(s.selected));
    f.render_stateful_widget(
        Table::new(
            rows,
            [
                Constraint::Length(10),
                Constraint::Length(10),
                Constraint::Min(12),
                Constraint::Length(8),
                Constraint::Length(13),
                Constraint::Length(8),
            ],
        )
        .header(header_row(&[
            "source", "kind", "title", "subjects", "holds", "DataCite",
        ]))
        .row_highlight_style(theme.selected())
        .highlight_symbol(MARK)
        .block(block(
            &format!(
                "{title} - {} datasets, {complete} with DataCite's mandatory properties",
                list.len()
            ),
            true,
            theme,
        )),
        table,
        &mut state,
    );
    let Some(d) = list.get(s.selected) else {
        return;
    };
    let mut lines = vec![Line::from(vec![
        Span::styled(d.id.clone(), theme.dim()),
        Span::raw(format!("  {}", d.resource_type)),
    ])];
    if let Some(desc) = &d.description {
        lines.push(Line::from(desc.replace('\n', " ")));
    }
    let field = |name: &str, value: String| {
        Line::from(vec![
            Span::styled(format!("{name:<12}"), theme.dim()),
            Span::raw(value),
        ])
    };
    if let Some(id) = &d.identifier {
        lines.push(field("identifier", format!("{} {}", id.kind, id.value)));
    }
    if !d.creators.is_empty() {
        let names: Vec<&str> = d.creators.iter().map(|c| c.name.as_str()).collect();
        lines.push(field("creators", names.join("; ")));
    }
    if let Some(p) = &d.publisher {
        lines.push(field("publisher", p.clone()));
    }
    if let Some(y) = d.publication_year {
        lines.push(field("published", y.to_string()));
    }
    if let Some(l) = &d.licence {
        lines.push(field("licence", l.clone()));
    }
    if let (Some(a), Some(b)) = (&d.first_observed, &d.last_observed) {
        lines.push(field(
            "collected",
            format!(
                "{} to {}",
                a.chars().take(10).collect::<String>(),
                b.chars().take(10).collect::<String>()
            ),
        ));
    }
    for m in d.missing() {
        lines.push(Line::from(vec![
            Span::styled(format!("missing {:<12}", m.property), theme.error()),
            Span::raw(format!(" set {}", m.keys.join(" or "))),
        ]));
    }
    f.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: true })
            .block(block(&d.title, false, theme)),
        detail,
    );
}

fn draw_links(f: &mut Frame, area: Rect, app: &App, theme: Theme) {
    let s = &app.links;
    let Some(r) = &s.report else {
        let body = match &s.error {
            Some(e) => Paragraph::new(error_lines(e, theme)),
            None => Paragraph::new("loading…"),
        };
        f.render_widget(body.block(block("Links", true, theme)), area);
        return;
    };
    let per_h = (r.per_source.len() as u16 + 3).min(area.height / 2);
    let [per, conflicts] =
        Layout::vertical([Constraint::Length(per_h), Constraint::Min(3)]).areas(area);
    let rows: Vec<Row> = r
        .per_source
        .iter()
        .map(|p| {
            Row::new(vec![
                Cell::from(Span::styled(p.source.clone(), badge(&p.source, theme))),
                Cell::from(p.keys.to_string()),
                Cell::from(p.linked.to_string()),
                Cell::from(p.unlinked.to_string()),
                Cell::from(p.conflicts.to_string()),
            ])
        })
        .collect();
    f.render_widget(
        Table::new(
            rows,
            [
                Constraint::Length(12),
                Constraint::Length(8),
                Constraint::Length(8),
                Constraint::Length(9),
                Constraint::Length(10),
            ],
        )
        .header(header_row(&[
            "source",
            "keys",
            "linked",
            "unlinked",
            "conflicts",
        ]))
        .block(Block::default().borders(Borders::ALL).title(format!(
            "Links - {} subjects, {} keys linked, {} ambiguous, {} single-system",
            r.subjects,
            r.links,
            r.ambiguous.len(),
            r.single_system_subjects.len()
        ))),
        per,
    );
    let rows: Vec<Row> = r
        .conflicts
        .iter()
        .map(|c| {
            Row::new(vec![
                Cell::from(Span::styled(c.source.clone(), badge(&c.source, theme))),
                Cell::from(c.subject_key.clone()),
                Cell::from(c.identifier.clone()),
                Cell::from(Span::styled(c.value.clone(), theme.error())),
                Cell::from(Span::styled(c.subject_value.clone(), theme.error())),
                Cell::from(c.subject_id.clone()),
            ])
        })
        .collect();
    let mut state = TableState::default();
    state.select(Some(s.selected));
    f.render_stateful_widget(
        Table::new(
            rows,
            [
                Constraint::Length(10),
                Constraint::Min(10),
                Constraint::Length(10),
                Constraint::Length(8),
                Constraint::Length(8),
                Constraint::Min(12),
            ],
        )
        .header(header_row(&[
            "source",
            "key",
            "identifier",
            "key's",
            "subject's",
            "kept apart from",
        ]))
        .row_highlight_style(theme.selected())
        .highlight_symbol(MARK)
        .block(block(
            &format!(
                "Conflicts ({}) - Enter opens the subject",
                r.conflicts.len()
            ),
            true,
            theme,
        )),
        conflicts,
        &mut state,
    );
}

fn centered(area: Rect, w: u16, h: u16) -> Rect {
    let w = w.min(area.width.saturating_sub(2));
    let h = h.min(area.height.saturating_sub(2));
    Rect {
        x: area.x + (area.width - w) / 2,
        y: area.y + (area.height - h) / 2,
        width: w,
        height: h,
    }
}

fn draw_overlay(f: &mut Frame, area: Rect, overlay: &Overlay, theme: Theme) {
    match overlay {
        Overlay::Help { filter, scroll } => {
            let r = centered(area, 76, area.height.saturating_sub(2));
            f.render_widget(Clear, r);
            let needle = filter.text().to_lowercase();
            let lines: Vec<Line> = keys::KEYMAP
                .iter()
                .filter(|(ctx, k, what)| {
                    needle.is_empty()
                        || format!("{ctx} {k} {what}").to_lowercase().contains(&needle)
                })
                .skip(*scroll)
                .map(|(ctx, k, what)| {
                    Line::from(vec![
                        Span::styled(format!("{ctx:<8}"), theme.dim()),
                        Span::styled(
                            format!("{k:<14}"),
                            Style::default().add_modifier(Modifier::BOLD),
                        ),
                        Span::raw(*what),
                    ])
                })
                .collect();
            f.render_widget(
                Paragraph::new(lines).block(block(
                    &format!("Keys - type to filter: {}_  (Esc closes)", filter.text()),
                    true,
                    theme,
                )),
                r,
            );
        }
        Overlay::Palette {
            input,
            matches,
            selected,
        } => {
            let r = centered(area, 70, 16);
            f.render_widget(Clear, r);
            let [i, list] = Layout::vertical([Constraint::Length(3), Constraint::Min(1)]).areas(r);
            f.render_widget(
                Paragraph::new(input.text().to_owned()).block(block(
                    "Go to: views, tables, saved queries, subjects",
                    true,
                    theme,
                )),
                i,
            );
            f.set_cursor_position((
                (i.x + 1 + input.cursor() as u16).min(i.right().saturating_sub(2)),
                i.y + 1,
            ));
            let items: Vec<ListItem> = matches.iter().map(|m| ListItem::new(m.label())).collect();
            let mut state = ListState::default();
            state.select(Some(*selected));
            f.render_stateful_widget(
                List::new(items)
                    .block(Block::default().borders(Borders::ALL))
                    .highlight_style(theme.selected())
                    .highlight_symbol(MARK),
                list,
                &mut state,
            );
        }
        Overlay::Prompt {
            query,
            index,
            input,
            ..
        } => {
            let r = centered(area, 70, 6);
            f.render_widget(Clear, r);
            let p = &query.params[*index];
            let title = format!(
                "{}: {} ({}){}",
                query.name,
                p.name,
                p.kind,
                p.default
                    .as_ref()
                    .map_or(String::new(), |d| format!(", default {d}"))
            );
            f.render_widget(
                Paragraph::new(vec![
                    Line::from(Span::styled(p.description.clone(), theme.dim())),
                    Line::from(input.text().to_owned()),
                ])
                .block(block(&title, true, theme)),
                r,
            );
        }
    }
}
