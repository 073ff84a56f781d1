//! proto ⇄ domain, with the server's generic limits enforced on the way in (sizes, lengths,
//! finiteness); scene-specific checks happen in [`crate::predict`].

use std::collections::HashMap;

use crate::assemble::{Assembled, FallbackReason, Spec, TensorData};
use crate::error::RequestError;
use crate::fetch::Value;
use crate::predict::{Prediction, ScoreRequest};
use crate::proto;
use crate::proto::feature_value::Kind;
use crate::server::config::ServerConfig;

/// Converts and bounds a PredictRequest.
pub fn predict_request(p: proto::PredictRequest, limits: &ServerConfig) -> Result<ScoreRequest, RequestError> {
    check_str(|| "request_id".into(), &p.request_id, limits)?;
    check_str(|| "model_version".into(), &p.model_version, limits)?;
    let mut request = score_request(p.request_id, p.scene, p.user_id, p.context, p.candidates, limits)?;
    request.model_version = p.model_version;
    Ok(request)
}

/// Converts and bounds a GetFeaturesRequest.
pub fn features_request(p: proto::GetFeaturesRequest, limits: &ServerConfig) -> Result<ScoreRequest, RequestError> {
    score_request(String::new(), p.scene, p.user_id, p.context, p.candidates, limits)
}

fn score_request(
    request_id: String,
    scene: String,
    user_id: String,
    context: HashMap<String, proto::FeatureValue>,
    candidates: Vec<proto::Candidate>,
    limits: &ServerConfig,
) -> Result<ScoreRequest, RequestError> {
    if scene.is_empty() {
        return Err(RequestError::new("scene", "must not be empty"));
    }
    check_str(|| "scene".into(), &scene, limits)?;
    check_str(|| "user_id".into(), &user_id, limits)?;
    if candidates.is_empty() {
        return Err(RequestError::new("candidates", "must hold at least one candidate"));
    }
    if candidates.len() > limits.max_candidates {
        return Err(RequestError::new(
            "candidates",
            format!(
                "{} candidates exceed the limit of {} (server.max_candidates)",
                candidates.len(),
                limits.max_candidates
            ),
        ));
    }
    let context = values(&|| "context".into(), context, limits)?;
    let candidates = candidates
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            check_str(|| format!("candidates[{i}].item_id"), &c.item_id, limits)?;
            Ok((c.item_id, values(&|| format!("candidates[{i}].features"), c.features, limits)?))
        })
        .collect::<Result<_, RequestError>>()?;
    Ok(ScoreRequest { request_id, scene, user_id, context, candidates, model_version: String::new() })
}

/// `prefix` names the map in an error; it is only formatted when there is one (this runs once
/// per candidate on every Predict).
fn values(
    prefix: &dyn Fn() -> String,
    map: HashMap<String, proto::FeatureValue>,
    limits: &ServerConfig,
) -> Result<HashMap<String, Value>, RequestError> {
    map.into_iter()
        .map(|(key, value)| {
            let field = || format!("{}.{key}", prefix());
            check_str(field, &key, limits)?;
            let value = value_from_proto(&field, value, limits)?;
            Ok((key, value))
        })
        .collect()
}

fn value_from_proto(
    field: &dyn Fn() -> String,
    value: proto::FeatureValue,
    limits: &ServerConfig,
) -> Result<Value, RequestError> {
    let too_long = |n: usize| {
        RequestError::new(
            field(),
            format!("list of {n} values exceeds the limit of {} (server.max_list_len)", limits.max_list_len),
        )
    };
    let finite = |x: f64| {
        if x.is_finite() { Ok(x) } else { Err(RequestError::new(field(), format!("float value {x} is not finite"))) }
    };
    Ok(match value.kind {
        None => return Err(RequestError::new(field(), "value has no type set")),
        Some(Kind::IntValue(i)) => Value::Int(i),
        Some(Kind::FloatValue(x)) => Value::Float(finite(x)?),
        Some(Kind::StringValue(s)) => {
            check_str(field, &s, limits)?;
            Value::Str(s)
        }
        Some(Kind::IntList(l)) if l.values.len() > limits.max_list_len => {
            return Err(too_long(l.values.len()));
        }
        Some(Kind::IntList(l)) => Value::IntList(l.values),
        Some(Kind::FloatList(l)) if l.values.len() > limits.max_list_len => {
            return Err(too_long(l.values.len()));
        }
        Some(Kind::FloatList(l)) => Value::FloatList(l.values.into_iter().map(finite).collect::<Result<_, _>>()?),
        Some(Kind::StringList(l)) if l.values.len() > limits.max_list_len => {
            return Err(too_long(l.values.len()));
        }
        Some(Kind::StringList(l)) => {
            for s in &l.values {
                check_str(field, s, limits)?;
            }
            Value::StrList(l.values)
        }
    })
}

fn check_str(field: impl Fn() -> String, s: &str, limits: &ServerConfig) -> Result<(), RequestError> {
    if s.len() > limits.max_string_bytes {
        return Err(RequestError::new(
            field(),
            format!(
                "string of {} bytes exceeds the limit of {} (server.max_string_bytes)",
                s.len(),
                limits.max_string_bytes
            ),
        ));
    }
    Ok(())
}

/// Domain prediction → proto.
pub fn predict_response(p: Prediction) -> proto::PredictResponse {
    proto::PredictResponse {
        request_id: p.request_id,
        scores: p.scores,
        model_name: p.model_name,
        model_version: p.model_version,
        fallbacks: p.fallbacks.into_iter().map(proto::Fallback::from).collect(),
    }
}

/// Assembled tensors (in the stored form: [`Assembled::into_stored`]) → proto, with the column
/// layout of every feature.
pub fn features_response(spec: &Spec, assembled: Assembled) -> proto::GetFeaturesResponse {
    let inputs = assembled
        .tensors
        .into_iter()
        .map(|t| {
            let shape = vec![assembled.rows as i64, t.width as i64];
            let (int64_values, float_values) = match t.data {
                TensorData::I64(v) => (v, Vec::new()),
                TensorData::F32(v) => (Vec::new(), v),
            };
            proto::Tensor { name: t.name, shape, int64_values, float_values }
        })
        .collect();
    let layout = spec
        .features
        .iter()
        .zip(spec.stored_places())
        .map(|(f, (input, offset))| proto::FeatureLayout {
            feature: f.name.clone(),
            input: spec.stored[input].name.clone(),
            offset: offset as u32,
            width: f.width as u32,
        })
        .collect();
    proto::GetFeaturesResponse {
        inputs,
        fallbacks: assembled.fallbacks.into_iter().map(proto::Fallback::from).collect(),
        layout,
        error: String::new(),
    }
}

/// The domain reason of a proto reason (tests, clients); unspecified maps to missing row.
pub fn fallback_reason_from_proto(p: proto::FallbackReason) -> FallbackReason {
    use proto::FallbackReason as P;
    match p {
        P::Unspecified | P::MissingRow => FallbackReason::MissingRow,
        P::MissingField => FallbackReason::MissingField,
        P::ParseError => FallbackReason::ParseError,
        P::Timeout => FallbackReason::Timeout,
        P::StoreError => FallbackReason::StoreError,
    }
}
