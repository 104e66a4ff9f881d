//! `subject_of(source, key)`: the subject a source's key is linked to, in this engine's
//! snapshot. The `records` and `observations` views resolve `subject_id` with it.
//!
//! A function over a map read once per snapshot, not a join with `subject_links`
//! planned into every query: the answer cannot depend on the plan the optimizer picks
//! (a left join with a coalesce gave empty cross-source joins once plans changed with
//! the data's size).

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, StringArray};
use arrow::datatypes::DataType;
use datafusion::common::cast::as_string_array;
use datafusion::error::Result;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

use crossdex_store::SubjectIndex;

/// One source's keys and their subjects.
type SourceKeys = std::collections::HashMap<String, Arc<str>>;

#[derive(Debug)]
pub(crate) struct SubjectOf {
    subjects: Arc<SubjectIndex>,
    /// Sources whose keys resolve (`None`: all): a reader learns nothing of a source
    /// outside its scope, not even whether it knows a key.
    sources: Option<std::collections::BTreeSet<String>>,
    /// For a reader of some projects, the keys its records carry
    /// ([`crate::scope::source_key`]), known once the engine's views are registered
    /// (before its first query): until then nothing resolves.
    keys: Option<InScope>,
    signature: Signature,
}

/// Keys in a reader's scope, filled once per engine.
pub(crate) type InScope = Arc<std::sync::OnceLock<std::collections::HashSet<String>>>;

impl SubjectOf {
    pub(crate) fn new(
        subjects: Arc<SubjectIndex>,
        sources: Option<std::collections::BTreeSet<String>>,
        keys: Option<InScope>,
    ) -> Self {
        SubjectOf {
            subjects,
            sources,
            keys,
            // Immutable within one engine: an engine reads one snapshot.
            signature: Signature::exact(
                vec![DataType::Utf8, DataType::Utf8],
                Volatility::Immutable,
            ),
        }
    }
}

impl PartialEq for SubjectOf {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.subjects, &other.subjects)
            && self.sources == other.sources
            && match (&self.keys, &other.keys) {
                (None, None) => true,
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                _ => false,
            }
    }
}

impl Eq for SubjectOf {}

impl Hash for SubjectOf {
    fn hash<H: Hasher>(&self, state: &mut H) {
        std::ptr::hash(Arc::as_ptr(&self.subjects), state);
    }
}

impl ScalarUDFImpl for SubjectOf {
    fn name(&self) -> &str {
        "subject_of"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let [sources, keys] = arrays.as_slice() else {
            return datafusion::common::exec_err!("subject_of(source, key) takes 2 arguments");
        };
        let (sources, keys) = (as_string_array(sources)?, as_string_array(keys)?);
        // A table file holds one source: its keys are looked up once per run of rows.
        let mut current: Option<(&str, Option<&SourceKeys>)> = None;
        let resolved: StringArray = (0..sources.len())
            .map(|i| {
                if sources.is_null(i) || keys.is_null(i) {
                    return None;
                }
                let source = sources.value(i);
                let keys_of_source = match current {
                    Some((s, k)) if s == source => k,
                    _ => {
                        let k = if self.sources.as_ref().is_none_or(|s| s.contains(source)) {
                            self.subjects.source_keys(source)
                        } else {
                            None
                        };
                        current = Some((source, k));
                        k
                    }
                };
                let key = keys.value(i);
                if let Some(in_scope) = &self.keys
                    && !in_scope
                        .get()
                        .is_some_and(|k| k.contains(&crate::scope::source_key(source, key)))
                {
                    return None;
                }
                keys_of_source?.get(key).map(|s| &**s)
            })
            .collect();
        let out: ArrayRef = Arc::new(resolved);
        if args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)))
        {
            return Ok(ColumnarValue::Scalar(
                datafusion::common::ScalarValue::try_from_array(&out, 0)?,
            ));
        }
        Ok(ColumnarValue::Array(out))
    }
}
