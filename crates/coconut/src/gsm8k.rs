//! GSM8k in the iCoT text format (Deng et al.): one item a line, `question||step step ... #### answer`,
//! steps being `<<...>>` calculator annotations separated by spaces.

use crate::data::{DataError, Item};

pub fn parse_icot(text: &str) -> Result<Vec<Item>, DataError> {
    let mut items = Vec::new();
    for (index, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let err = |field: &str, msg: &str| DataError::Item { index, field: field.into(), msg: format!("line {}: {msg}", index + 1) };
        let (question, rest) = line.split_once("||").ok_or_else(|| err("question", "no `||` between question and steps"))?;
        let (steps, answer) = rest.rsplit_once("####").ok_or_else(|| err("answer", "no `####` before the answer"))?;
        let (question, answer) = (question.trim(), answer.trim());
        if question.is_empty() {
            return Err(err("question", "empty question"));
        }
        if answer.is_empty() {
            return Err(err("answer", "empty answer"));
        }
        let steps: Vec<&str> = steps.split_whitespace().collect();
        items.push(Item::text(question, &steps, answer));
    }
    Ok(items)
}
