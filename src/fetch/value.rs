//! The typed feature value shared by requests, the store and assembly.

/// One feature value as a request carries it or a store holds it.
///
/// Stores that keep text (CSV, Redis) hand back [`Value::Str`]; assembly parses it into the type the
/// spec declares and counts a fallback when that fails.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// 64-bit integer.
    Int(i64),
    /// Float; assembly narrows to f32 only when writing the tensor.
    Float(f64),
    /// UTF-8 text.
    Str(String),
    /// List of integers.
    IntList(Vec<i64>),
    /// List of floats.
    FloatList(Vec<f64>),
    /// List of strings.
    StrList(Vec<String>),
}

impl Value {
    /// The value as Redis holds it: the text `augur features load` writes and assembly parses
    /// (lists joined by `|`, floats in Rust's shortest round-trip form).
    pub fn store_text(&self) -> String {
        fn join<T: ToString>(items: &[T]) -> String {
            items.iter().map(ToString::to_string).collect::<Vec<_>>().join("|")
        }
        match self {
            Value::Int(i) => i.to_string(),
            Value::Float(x) => format!("{x}"),
            Value::Str(s) => s.clone(),
            Value::IntList(v) => join(v),
            Value::FloatList(v) => join(v),
            Value::StrList(v) => v.join("|"),
        }
    }

    /// The inverse of [`Value::store_text`] for a value of type `type_name` ([`Value::type_name`]):
    /// `None` when the text does not parse as that type. An empty list's text is empty; so is a
    /// one-element string list holding an empty string, which comes back as the empty list.
    pub fn from_store_text(type_name: &str, text: &str) -> Option<Value> {
        fn split<T: std::str::FromStr>(text: &str) -> Option<Vec<T>> {
            if text.is_empty() {
                return Some(Vec::new());
            }
            text.split('|').map(|t| t.parse().ok()).collect()
        }
        Some(match type_name {
            "int" => Value::Int(text.parse().ok()?),
            "float" => Value::Float(text.parse().ok()?),
            "string" => Value::Str(text.to_owned()),
            "int_list" => Value::IntList(split(text)?),
            "float_list" => Value::FloatList(split(text)?),
            "string_list" => Value::StrList(split(text)?),
            _ => return None,
        })
    }

    /// The name used in error messages (matches the spec's `type:` names).
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "string",
            Value::IntList(_) => "int_list",
            Value::FloatList(_) => "float_list",
            Value::StrList(_) => "string_list",
        }
    }
}
