//! Transform-chain type checking: whether a feature's steps fit its declared type, whether the
//! chain ends in ids, and how many ids it can produce.
//!
//! A chain is walked once, at load, tracking what the value is after each step (a raw int, a
//! number, text), so the encoder can rely on the chain's shape (a tokenizer first and followed by
//! `hash`, an id-producing step last) instead of checking it per request.

use super::types::{FeatureType, Step};

/// Walks the transform chain and returns (produces ids, id range incl. the reserved id).
pub(super) fn check_steps(name: &str, ty: FeatureType, steps: &[Step], is_key: bool) -> Result<(bool, u64), String> {
    #[derive(PartialEq)]
    enum Domain {
        RawInt,
        Num,
        Text,
    }
    let mut domain = match ty {
        FeatureType::Int | FeatureType::IntList => Domain::RawInt,
        FeatureType::Float | FeatureType::FloatList => Domain::Num,
        FeatureType::String | FeatureType::StringList => Domain::Text,
    };
    if is_key && ty != FeatureType::String {
        return Err(format!("feature `{name}`: an entity key is a string; declare type: string"));
    }
    for (i, step) in steps.iter().enumerate() {
        let last = i + 1 == steps.len();
        let terminal = |buckets: u64| -> Result<(bool, u64), String> {
            if !last {
                return Err(format!("feature `{name}`: {step:?} produces ids and must be the last transform"));
            }
            if buckets == 0 || buckets > (1 << 40) {
                return Err(format!("feature `{name}`: buckets must be between 1 and 2^40"));
            }
            Ok((true, buckets + 1))
        };
        match step {
            Step::Tokens | Step::CharNgrams { .. } => {
                let tokenizer = step.name();
                if i != 0 {
                    return Err(format!("feature `{name}`: {tokenizer} must be the first transform"));
                }
                if ty != FeatureType::String {
                    return Err(format!(
                        "feature `{name}`: {tokenizer} splits a string, but the feature is {}",
                        ty.name()
                    ));
                }
                if let Step::CharNgrams { n } = step
                    && !(1..=8).contains(n)
                {
                    return Err(format!("feature `{name}`: char_ngrams needs n between 1 and 8 (got {n})"));
                }
                if !matches!(steps.get(1), Some(Step::Hash { .. })) {
                    return Err(format!("feature `{name}`: {tokenizer} must be followed by hash (tokens are text)"));
                }
            }
            Step::Log1p | Step::Clip { .. } | Step::Normalize { .. } => {
                if domain == Domain::Text {
                    return Err(format!("feature `{name}`: {step:?} needs a number, the value is a string"));
                }
                if let Step::Clip { min, max } = step
                    && (min.is_nan() || max.is_nan() || min > max)
                {
                    return Err(format!("feature `{name}`: clip needs min <= max"));
                }
                if let Step::Normalize { std, .. } = step
                    && !(*std > 0.0 && std.is_finite())
                {
                    return Err(format!("feature `{name}`: normalize needs std > 0"));
                }
                domain = Domain::Num;
            }
            Step::Hash { buckets } => {
                if domain == Domain::Num && ty != FeatureType::Int && ty != FeatureType::IntList {
                    return Err(format!("feature `{name}`: hash of a float is ambiguous; bucketize it"));
                }
                return terminal(*buckets);
            }
            Step::Bucketize { boundaries } => {
                if domain == Domain::Text {
                    return Err(format!("feature `{name}`: bucketize needs a number, the value is a string"));
                }
                if boundaries.is_empty()
                    || boundaries.iter().any(|b| !b.is_finite())
                    || boundaries.windows(2).any(|w| w[0] >= w[1])
                {
                    return Err(format!(
                        "feature `{name}`: bucketize boundaries must be finite and strictly ascending"
                    ));
                }
                return terminal(boundaries.len() as u64 + 1);
            }
            Step::Identity { buckets } => {
                if domain != Domain::RawInt {
                    return Err(format!("feature `{name}`: identity ids need an untransformed int"));
                }
                return terminal(*buckets);
            }
        }
    }
    if domain == Domain::Text {
        return Err(format!("feature `{name}`: a string must end in a hash transform"));
    }
    Ok((false, 0))
}
