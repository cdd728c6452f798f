//! Reading a dataset file: the format ([`data`](crate::data)) and, for every item that carries a
//! ProsQA graph, the graph checked against the text ([`prosqa::validate`]). Errors name the file,
//! the item and the field.

use std::path::Path;

use crate::data::{DataError, Item, parse_format};
use crate::prosqa;

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path}: {source}")]
    Data { path: String, source: DataError },
}

/// Parses a dataset file's bytes and checks every graph an item carries.
pub fn parse_items(bytes: &[u8]) -> Result<Vec<Item>, DataError> {
    let items = parse_format(bytes)?;
    for (index, item) in items.iter().enumerate() {
        if item.has_graph_fields() {
            prosqa::validate(item).map_err(|(field, msg)| DataError::Item { index, field, msg })?;
        }
    }
    Ok(items)
}

/// Reads and checks the dataset file at `path`.
pub fn load_items(path: &Path) -> Result<Vec<Item>, LoadError> {
    let shown = || path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| LoadError::Read { path: shown(), source })?;
    parse_items(&bytes).map_err(|source| LoadError::Data { path: shown(), source })
}
