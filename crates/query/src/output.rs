//! Query results and their renderings.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::error::ArrowError;
use arrow::util::display::{ArrayFormatter, FormatOptions};

/// Whether CSV can hold a column as it is; lists, structs and maps it cannot.
fn is_flat(t: &DataType) -> bool {
    !t.is_nested()
}

fn flat_schema(schema: &Schema) -> SchemaRef {
    Arc::new(Schema::new(
        schema
            .fields()
            .iter()
            .map(|f| {
                if is_flat(f.data_type()) {
                    f.as_ref().clone()
                } else {
                    Field::new(f.name(), DataType::Utf8, true)
                }
            })
            .collect::<Vec<_>>(),
    ))
}

/// `batch` with nested columns rendered as text (`[a, b]`), for CSV.
fn flatten(batch: &RecordBatch) -> Result<RecordBatch, ArrowError> {
    if batch
        .schema()
        .fields()
        .iter()
        .all(|f| is_flat(f.data_type()))
    {
        return Ok(batch.clone());
    }
    let options = FormatOptions::default();
    let columns = batch
        .columns()
        .iter()
        .map(|c| -> Result<ArrayRef, ArrowError> {
            if is_flat(c.data_type()) {
                return Ok(c.clone());
            }
            let f = ArrayFormatter::try_new(c.as_ref(), &options)?;
            Ok(Arc::new(
                (0..c.len())
                    .map(|i| (!c.is_null(i)).then(|| f.value(i).to_string()))
                    .collect::<StringArray>(),
            ))
        })
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new(flat_schema(&batch.schema()), columns)
}

/// How `crossdex sql` prints results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutputFormat {
    /// An aligned text table.
    #[default]
    Table,
    /// CSV with a header line.
    Csv,
    /// A JSON array of objects, nulls included.
    Json,
    /// One JSON object per line, nulls included.
    Ndjson,
}

/// The rows a query produced.
#[derive(Debug, Clone)]
pub struct QueryOutput {
    /// Column names and types.
    pub schema: SchemaRef,
    /// The rows, in batches.
    pub batches: Vec<RecordBatch>,
}

impl QueryOutput {
    pub(crate) fn new(schema: SchemaRef, batches: Vec<RecordBatch>) -> Self {
        QueryOutput { schema, batches }
    }

    /// Number of rows.
    pub fn num_rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }

    /// An aligned text table at most `width` characters wide: cells wrap where the
    /// columns would not fit (a terminal's width); `None` never wraps (a file, a pipe).
    pub fn render_table(&self, width: Option<u16>) -> Result<String, ArrowError> {
        use comfy_table::{Cell, ContentArrangement, Row, Table};
        let mut table = Table::new();
        // The layout of arrow's own tables, so pipes and files see what they always did.
        table.load_preset("||--+-++|    ++++++");
        if let Some(w) = width {
            table
                .set_width(w)
                .set_content_arrangement(ContentArrangement::Dynamic);
        }
        // On a terminal, one line per row, long cells cut with `…`, as k9s and
        // harlequin show wide results: a row wrapped over ten lines cannot be scanned.
        let row = |cells: Vec<Cell>| {
            let mut r = Row::from(cells);
            if width.is_some() {
                r.max_height(1);
            }
            r
        };
        table.set_truncation_indicator("…");
        table.set_header(row(self
            .schema
            .fields()
            .iter()
            .map(|f| Cell::new(f.name()))
            .collect()));
        let options = FormatOptions::default().with_display_error(true);
        for batch in &self.batches {
            let formatters = batch
                .columns()
                .iter()
                .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
                .collect::<Result<Vec<_>, _>>()?;
            for i in 0..batch.num_rows() {
                table.add_row(row(formatters
                    .iter()
                    .map(|f| Cell::new(f.value(i)))
                    .collect()));
            }
        }
        Ok(table.to_string())
    }

    /// Renders the rows in `format`.
    pub fn render(&self, format: OutputFormat) -> Result<String, ArrowError> {
        match format {
            OutputFormat::Table => self.render_table(None),
            OutputFormat::Csv => {
                let mut buf = Vec::new();
                {
                    let mut w = arrow::csv::WriterBuilder::new()
                        .with_header(true)
                        .build(&mut buf);
                    if self.batches.is_empty() {
                        w.write(&RecordBatch::new_empty(flat_schema(&self.schema)))?;
                    }
                    for b in &self.batches {
                        w.write(&flatten(b)?)?;
                    }
                }
                Ok(String::from_utf8_lossy(&buf).into_owned())
            }
            OutputFormat::Ndjson => {
                let mut buf = Vec::new();
                {
                    let mut w = arrow::json::WriterBuilder::new()
                        .with_explicit_nulls(true)
                        .build::<_, arrow::json::writer::LineDelimited>(&mut buf);
                    for b in &self.batches {
                        w.write(b)?;
                    }
                    w.finish()?;
                }
                Ok(String::from_utf8_lossy(&buf).into_owned())
            }
            OutputFormat::Json => {
                let mut buf = Vec::new();
                {
                    let mut w = arrow::json::WriterBuilder::new()
                        .with_explicit_nulls(true)
                        .build::<_, arrow::json::writer::JsonArray>(&mut buf);
                    for b in &self.batches {
                        w.write(b)?;
                    }
                    w.finish()?;
                }
                if buf.is_empty() {
                    return Ok("[]".to_owned());
                }
                Ok(String::from_utf8_lossy(&buf).into_owned())
            }
        }
    }

    /// Each cell rendered as text (`NULL` for nulls), row by row: for tests and
    /// plain-text front ends.
    pub fn rows_as_text(&self) -> Result<Vec<Vec<String>>, ArrowError> {
        Ok(self
            .text_rows()?
            .into_iter()
            .map(|row| {
                row.into_iter()
                    .map(|c| c.unwrap_or_else(|| "NULL".to_owned()))
                    .collect()
            })
            .collect())
    }

    /// Each cell rendered as text, `None` for nulls, row by row: for callers that read
    /// many rows, with no JSON built on the way.
    pub fn text_rows(&self) -> Result<Vec<Vec<Option<String>>>, ArrowError> {
        use arrow::util::display::{ArrayFormatter, FormatOptions};
        let options = FormatOptions::default();
        let mut rows = Vec::with_capacity(self.num_rows());
        for b in &self.batches {
            let formatters = b
                .columns()
                .iter()
                .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
                .collect::<Result<Vec<_>, _>>()?;
            for i in 0..b.num_rows() {
                rows.push(
                    b.columns()
                        .iter()
                        .zip(&formatters)
                        .map(|(c, f)| c.is_valid(i).then(|| f.value(i).to_string()))
                        .collect(),
                );
            }
        }
        Ok(rows)
    }

    /// The rows as an Arrow IPC stream (`application/vnd.apache.arrow.stream`), as
    /// pyarrow, polars and DuckDB read it.
    pub fn to_arrow_ipc(&self) -> Result<Vec<u8>, ArrowError> {
        let mut buf = Vec::new();
        {
            let mut w = arrow::ipc::writer::StreamWriter::try_new(&mut buf, &self.schema)?;
            for b in &self.batches {
                w.write(b)?;
            }
            w.finish()?;
        }
        Ok(buf)
    }

    /// The first `max_rows` rows, and whether rows were left out.
    pub fn truncated(mut self, max_rows: usize) -> (QueryOutput, bool) {
        let mut left = max_rows;
        let mut cut = false;
        let mut kept = Vec::with_capacity(self.batches.len());
        for b in self.batches.drain(..) {
            if left == 0 {
                cut |= b.num_rows() > 0;
                continue;
            }
            if b.num_rows() > left {
                kept.push(b.slice(0, left));
                cut = true;
                left = 0;
            } else {
                left -= b.num_rows();
                kept.push(b);
            }
        }
        self.batches = kept;
        (self, cut)
    }
}
