//! `augur predict`: a small gRPC client for the demo and for poking a running server.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::proto::feature_value::Kind;
use crate::proto::prediction_client::PredictionClient;
use crate::proto::{Candidate, FeatureValue, PredictRequest, PredictResponse};

/// Connects to `addr`, retrying until `wait` has passed (the server may still be loading).
pub async fn connect(
    addr: &str,
    wait: Duration,
) -> Result<PredictionClient<tonic::transport::Channel>, tonic::transport::Error> {
    let give_up = Instant::now() + wait;
    loop {
        match PredictionClient::connect(addr.to_owned()).await {
            Ok(client) => return Ok(client),
            Err(e) if Instant::now() >= give_up => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// Parses `key=value` context pairs: ints, then floats, else strings; `key="2024"` (quotes
/// included) forces a string.
pub fn parse_context(pairs: &[String]) -> Result<HashMap<String, FeatureValue>, String> {
    pairs
        .iter()
        .map(|pair| {
            let (k, v) = pair.split_once('=').ok_or_else(|| format!("context `{pair}` is not key=value"))?;
            let quoted = v.len() >= 2 && v.starts_with('"') && v.ends_with('"');
            let kind = if quoted {
                Kind::StringValue(v[1..v.len() - 1].to_owned())
            } else if let Ok(i) = v.parse::<i64>() {
                Kind::IntValue(i)
            } else if let Ok(x) = v.parse::<f64>() {
                Kind::FloatValue(x)
            } else {
                Kind::StringValue(v.to_owned())
            };
            Ok((k.to_owned(), FeatureValue { kind: Some(kind) }))
        })
        .collect()
}

/// Builds a request for `items`.
pub fn request(scene: &str, user: &str, items: &[String], context: HashMap<String, FeatureValue>) -> PredictRequest {
    PredictRequest {
        request_id: String::new(),
        scene: scene.to_owned(),
        user_id: user.to_owned(),
        context,
        candidates: items.iter().map(|i| Candidate { item_id: i.clone(), features: HashMap::new() }).collect(),
        model_version: String::new(),
    }
}

/// Human-readable table of a response, best score first.
pub fn render(items: &[String], response: &PredictResponse) -> String {
    let mut rows: Vec<(&String, f32)> = items.iter().zip(response.scores.iter().copied()).collect();
    rows.sort_by(|a, b| b.1.total_cmp(&a.1));
    let width = items.iter().map(|i| i.chars().count()).max().unwrap_or(4).max(4);
    let mut out = format!(
        "request {}  model {} v{}\n{:<width$}  {:>8}\n",
        response.request_id, response.model_name, response.model_version, "item", "p(click)"
    );
    for (item, score) in rows {
        out.push_str(&format!("{item:<width$}  {score:>8.4}\n"));
    }
    for f in &response.fallbacks {
        let who = if f.candidates.is_empty() {
            "all candidates".to_owned()
        } else {
            format!("candidates {:?}", f.candidates)
        };
        out.push_str(&format!("fallback: {} ({:?}) for {who}\n", f.feature, f.reason()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_values_are_typed_and_quotes_force_strings() {
        let parsed = parse_context(&["h=20".into(), "p=1.5".into(), "d=ios".into(), "q=\"2024\"".into()]).unwrap();
        assert_eq!(parsed["h"].kind, Some(Kind::IntValue(20)));
        assert_eq!(parsed["p"].kind, Some(Kind::FloatValue(1.5)));
        assert_eq!(parsed["d"].kind, Some(Kind::StringValue("ios".into())));
        assert_eq!(parsed["q"].kind, Some(Kind::StringValue("2024".into())));
        assert!(parse_context(&["novalue".into()]).unwrap_err().contains("novalue"));
    }
}
