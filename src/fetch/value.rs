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
