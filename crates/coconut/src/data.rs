//! The dataset format of the official code: a JSON array of
//! `{"question", "answer", "steps": [...]}`; ProsQA items also carry the graph
//! (`idx_to_symbol`, `edges`, `root`, `target`, `neg_target`).
//!
//! Parsing is strict: a malformed file, a missing or mistyped field or an index that is not a
//! number is an error naming the item index and the field. Never a panic. Whether a ProsQA item's
//! graph agrees with its text is `prosqa::validate`; `dataset` reads files with both checks.

use serde::{Deserialize, Serialize};
use serde_json::Value;


#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Item {
    pub question: String,
    pub answer: String,
    pub steps: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub idx_to_symbol: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub edges: Option<Vec<[usize; 2]>>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub root: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub target: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub neg_target: Option<usize>,
}

impl Item {
    pub fn text(question: &str, steps: &[&str], answer: &str) -> Self {
        Self {
            question: question.into(),
            answer: answer.into(),
            steps: steps.iter().map(|s| s.to_string()).collect(),
            idx_to_symbol: None,
            edges: None,
            root: None,
            target: None,
            neg_target: None,
        }
    }

    pub fn is_prosqa(&self) -> bool {
        self.idx_to_symbol.is_some()
    }

    /// Whether the item carries any of the graph fields (then it must carry a consistent graph).
    pub fn has_graph_fields(&self) -> bool {
        self.idx_to_symbol.is_some() || self.edges.is_some() || self.root.is_some() || self.target.is_some() || self.neg_target.is_some()
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DataError {
    #[error("malformed JSON: {0}")]
    Json(String),
    #[error("the file must be a JSON array of items, found {0}")]
    NotArray(&'static str),
    #[error("item {index}, field `{field}`: {msg}")]
    Item { index: usize, field: String, msg: String },
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Parses a dataset file's bytes (the format only; `dataset::parse_items` also checks the graphs).
pub fn parse_format(bytes: &[u8]) -> Result<Vec<Item>, DataError> {
    let v: Value = serde_json::from_slice(bytes).map_err(|e| DataError::Json(e.to_string()))?;
    let Value::Array(items) = v else { return Err(DataError::NotArray(kind(&v))) };
    items.iter().enumerate().map(|(index, v)| parse_item(index, v)).collect()
}

fn parse_item(index: usize, v: &Value) -> Result<Item, DataError> {
    let err = |field: &str, msg: String| DataError::Item { index, field: field.into(), msg };
    let obj = v.as_object().ok_or_else(|| err("-", format!("an item must be an object, found {}", kind(v))))?;
    let string = |field: &str| -> Result<String, DataError> {
        match obj.get(field) {
            Some(Value::String(s)) => Ok(s.clone()),
            Some(other) => Err(err(field, format!("must be a string, found {}", kind(other)))),
            None => Err(err(field, "is missing".into())),
        }
    };
    let index_of = |field: &str| -> Result<Option<usize>, DataError> {
        match obj.get(field) {
            None => Ok(None),
            Some(x) => x.as_u64().map(|n| Some(n as usize)).ok_or_else(|| err(field, format!("must be a node index, found {x}"))),
        }
    };
    let question = string("question")?;
    let answer = string("answer")?;
    let steps = match obj.get("steps") {
        Some(Value::Array(a)) => a
            .iter()
            .enumerate()
            .map(|(i, s)| s.as_str().map(str::to_string).ok_or_else(|| err("steps", format!("step {i} must be a string, found {}", kind(s)))))
            .collect::<Result<Vec<_>, _>>()?,
        Some(other) => return Err(err("steps", format!("must be an array of strings, found {}", kind(other)))),
        None => return Err(err("steps", "is missing".into())),
    };
    let idx_to_symbol = match obj.get("idx_to_symbol") {
        None => None,
        Some(Value::Array(a)) => Some(
            a.iter()
                .enumerate()
                .map(|(i, s)| s.as_str().map(str::to_string).ok_or_else(|| err("idx_to_symbol", format!("entry {i} must be a string"))))
                .collect::<Result<Vec<_>, _>>()?,
        ),
        Some(other) => return Err(err("idx_to_symbol", format!("must be an array of names, found {}", kind(other)))),
    };
    let edges = match obj.get("edges") {
        None => None,
        Some(Value::Array(a)) => Some(
            a.iter()
                .enumerate()
                .map(|(i, e)| match e.as_array().map(|p| p.iter().map(Value::as_u64).collect::<Vec<_>>()) {
                    Some(p) if p.len() == 2 && p.iter().all(Option::is_some) => Ok([p[0].unwrap() as usize, p[1].unwrap() as usize]),
                    _ => Err(err("edges", format!("edge {i} must be a pair of node indices, found {e}"))),
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
        Some(other) => return Err(err("edges", format!("must be an array of pairs, found {}", kind(other)))),
    };
    let item = Item {
        question,
        answer,
        steps,
        idx_to_symbol,
        edges,
        root: index_of("root")?,
        target: index_of("target")?,
        neg_target: index_of("neg_target")?,
    };
    Ok(item)
}

pub fn to_json(items: &[Item]) -> String {
    serde_json::to_string(items).expect("items serialise")
}
