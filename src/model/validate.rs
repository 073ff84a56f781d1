//! Checks a model's declared inputs and output against the scene's feature spec, so a model that
//! would mis-read its tensors never serves. Messages name the input and the features feeding it.

use crate::assemble::{Level, Spec};

/// What the model declares for one input or output.
#[derive(Debug, Clone)]
pub struct ModelInput {
    /// Name.
    pub name: String,
    /// Element type (`int64`, `float32`, ...); `None` for non-tensors.
    pub dtype: Option<String>,
    /// Dimensions; -1 = dynamic.
    pub shape: Option<Vec<i64>>,
}

/// `Err` names the first disagreement.
pub fn check(spec: &Spec, inputs: &[ModelInput], outputs: &[ModelInput]) -> Result<(), String> {
    for (index, input) in spec.inputs.iter().enumerate() {
        let fed_by: Vec<&str> = spec.features.iter().filter(|f| f.input == index).map(|f| f.name.as_str()).collect();
        let fed_by = fed_by.join(", ");
        let level = match input.level {
            Level::Row => "",
            Level::Request => "request-level ",
        };
        let Some(model) = inputs.iter().find(|m| m.name == input.name) else {
            let names: Vec<&str> = inputs.iter().map(|m| m.name.as_str()).collect();
            return Err(format!(
                "{level}input `{}` (features {fed_by}) is not a model input; the model has [{}]",
                input.name,
                names.join(", ")
            ));
        };
        if model.dtype.as_deref() != Some(input.dtype.name()) {
            return Err(format!(
                "input `{}` (features {fed_by}) is {} in the spec but {} in the model",
                input.name,
                input.dtype.name(),
                model.dtype.as_deref().unwrap_or("not a tensor")
            ));
        }
        let width = input.width as i64;
        match model.shape.as_deref() {
            Some([_, w]) if *w == width || *w < 0 => {}
            other => {
                return Err(format!(
                    "{level}input `{}` (features {fed_by}) has {width} columns in the spec but shape {} in the model (want [N, {width}])",
                    input.name,
                    shape_text(other)
                ));
            }
        }
    }
    if let Some(name) = &spec.request_index {
        let Some(model) = inputs.iter().find(|m| &m.name == name) else {
            return Err(format!(
                "request index `{name}` (row → request, int64 [N]) is not a model input: the spec has request-level inputs, the model must gather them per row"
            ));
        };
        if model.dtype.as_deref() != Some("int64") || !matches!(model.shape.as_deref(), Some([_])) {
            return Err(format!(
                "request index `{name}` must be int64 [N], the model declares {} {}",
                model.dtype.as_deref().unwrap_or("not a tensor"),
                shape_text(model.shape.as_deref())
            ));
        }
    }
    let known = |name: &str| spec.input_index(name).is_some() || spec.request_index.as_deref() == Some(name);
    if let Some(extra) = inputs.iter().find(|m| !known(&m.name)) {
        let hint = match extra.shape.as_deref() {
            Some([_]) if spec.request_index.is_none() => {
                " (a request index? the spec declares no request-level inputs: a split model needs the split spec)"
            }
            _ => "",
        };
        return Err(format!("model input `{}` is fed by no feature of the spec{hint}", extra.name));
    }
    let Some(output) = outputs.iter().find(|o| o.name == spec.output) else {
        return Err(format!("output `{}` is not a model output", spec.output));
    };
    if output.dtype.as_deref() != Some("float32") {
        let declared = output.dtype.as_deref().unwrap_or("no tensor type");
        return Err(format!("output `{}` must be float32, the model declares {declared}", spec.output));
    }
    match output.shape.as_deref() {
        Some([_]) | Some([_, 1]) => Ok(()),
        other => {
            Err(format!("output `{}` must be [N] or [N, 1], the model declares {}", spec.output, shape_text(other)))
        }
    }
}

/// A tensor shape as an operator writes it: `[N, 13]` (a dynamic dimension is `N`), or `no shape`.
fn shape_text(shape: Option<&[i64]>) -> String {
    match shape {
        None => "no shape".to_owned(),
        Some(dims) => {
            let dims: Vec<String> = dims.iter().map(|&d| if d < 0 { "N".to_owned() } else { d.to_string() }).collect();
            format!("[{}]", dims.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> Spec {
        Spec::parse(
            "scene: t\nentities: {user: {table: u}, item: {table: i}}\ninputs: [{name: ids, dtype: int64}]\noutput: ctr\nfeatures:\n  - {name: item, source: item.$key, type: string, transform: [hash: {buckets: 9}], input: ids}\n",
        )
        .unwrap()
    }

    fn io(name: &str, dtype: &str, shape: &[i64]) -> ModelInput {
        ModelInput { name: name.into(), dtype: Some(dtype.into()), shape: Some(shape.to_vec()) }
    }

    #[test]
    fn matching_model_passes_and_mismatches_name_the_feature() {
        let out = [io("ctr", "float32", &[-1])];
        assert!(check(&spec(), &[io("ids", "int64", &[-1, 1])], &out).is_ok());
        let err = check(&spec(), &[io("ids", "float32", &[-1, 1])], &out).unwrap_err();
        assert!(err.contains("`ids` (features item)") && err.contains("float32"), "{err}");
        let err = check(&spec(), &[io("ids", "int64", &[-1, 3])], &out).unwrap_err();
        assert!(err.contains("1 columns") && err.contains("item"), "{err}");
        let err = check(&spec(), &[io("x", "int64", &[-1, 1])], &out).unwrap_err();
        assert!(err.contains("not a model input"), "{err}");
        let err = check(&spec(), &[io("ids", "int64", &[-1, 1])], &[io("p", "float32", &[-1])]).unwrap_err();
        assert!(err.contains("output `ctr`"), "{err}");
    }

    fn split_spec() -> Spec {
        Spec::parse(
            "scene: t\nentities: {user: {table: u}, item: {table: i}}\ninputs: [{name: ids, dtype: int64}, {name: user_ids, dtype: int64, level: request, part_of: ids}]\nrequest_index: request_index\noutput: ctr\nfeatures:\n  - {name: user, source: user.$key, type: string, transform: [hash: {buckets: 9}], input: user_ids}\n  - {name: item, source: item.$key, type: string, transform: [hash: {buckets: 9}], input: ids}\n",
        )
        .unwrap()
    }

    #[test]
    fn split_models_must_match_the_request_level_inputs_and_index() {
        let out = [io("ctr", "float32", &[-1])];
        let split =
            [io("ids", "int64", &[-1, 1]), io("user_ids", "int64", &[-1, 1]), io("request_index", "int64", &[-1])];
        assert!(check(&split_spec(), &split, &out).is_ok());
        // A model without the request-level input.
        let err = check(&split_spec(), &[io("ids", "int64", &[-1, 1])], &out).unwrap_err();
        assert!(err.contains("request-level input `user_ids` (features user) is not a model input"), "{err}");
        // A request-level input of the wrong width.
        let wide =
            [io("ids", "int64", &[-1, 1]), io("user_ids", "int64", &[-1, 2]), io("request_index", "int64", &[-1])];
        let err = check(&split_spec(), &wide, &out).unwrap_err();
        assert!(err.contains("request-level input `user_ids`") && err.contains("1 columns"), "{err}");
        // No index, or an index of the wrong shape.
        let err = check(&split_spec(), &split[..2], &out).unwrap_err();
        assert!(err.contains("request index `request_index`") && err.contains("not a model input"), "{err}");
        let bad =
            [io("ids", "int64", &[-1, 1]), io("user_ids", "int64", &[-1, 1]), io("request_index", "int64", &[-1, 1])];
        let err = check(&split_spec(), &bad, &out).unwrap_err();
        assert!(err.contains("must be int64 [N]") && err.contains("[N, 1]"), "{err}");
        // The split model against a flat spec.
        let err =
            check(&spec(), &[io("ids", "int64", &[-1, 1]), io("request_index", "int64", &[-1])], &out).unwrap_err();
        assert!(err.contains("`request_index` is fed by no feature") && err.contains("split spec"), "{err}");
    }
}
