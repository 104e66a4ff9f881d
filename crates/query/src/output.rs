//! Query results and their renderings.

use arrow::array::{Array, RecordBatch};
use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;

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

    /// Renders the rows in `format`.
    pub fn render(&self, format: OutputFormat) -> Result<String, ArrowError> {
        match format {
            OutputFormat::Table => Ok(arrow::util::pretty::pretty_format_batches_with_schema(
                self.schema.clone(),
                &self.batches,
            )?
            .to_string()),
            OutputFormat::Csv => {
                let mut buf = Vec::new();
                {
                    let mut w = arrow::csv::WriterBuilder::new()
                        .with_header(true)
                        .build(&mut buf);
                    if self.batches.is_empty() {
                        w.write(&RecordBatch::new_empty(self.schema.clone()))?;
                    }
                    for b in &self.batches {
                        w.write(b)?;
                    }
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
}
