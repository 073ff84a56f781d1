//! Fallbacks: a feature served from its default instead of a real value, and why.
//!
//! [`super::assemble`] reports one per feature (with the candidates affected); predict turns a
//! fallback of a `required` feature into an error, the scene counts them per reason, and the
//! server reports them in the response. Domain types only: the wire form lives in
//! `server::convert`, so the proto can change without touching assembly.

/// Why a feature was served from its default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FallbackReason {
    /// No row for the entity.
    MissingRow,
    /// Row (or request context) without this field.
    MissingField,
    /// A stored value that is not of the declared type.
    ParseError,
    /// The store did not answer within the fetch budget.
    Timeout,
    /// The store failed or could not be reached.
    StoreError,
}

/// One feature served from its default, for some or all candidates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fallback {
    /// Feature name.
    pub feature: String,
    /// Why.
    pub reason: FallbackReason,
    /// Affected candidates; empty = all (user and context features).
    pub candidates: Vec<u32>,
}

// === impl FallbackReason ===

impl FallbackReason {
    /// Number of reasons (for per-reason counter arrays indexed by `reason as usize`).
    pub const COUNT: usize = 5;

    /// Every reason, in declaration order, so `ALL[reason as usize] == reason` (stats and metrics
    /// walk it instead of listing the reasons by hand).
    pub const ALL: [FallbackReason; Self::COUNT] = [
        FallbackReason::MissingRow,
        FallbackReason::MissingField,
        FallbackReason::ParseError,
        FallbackReason::Timeout,
        FallbackReason::StoreError,
    ];

    /// Stable snake_case name, for metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            FallbackReason::MissingRow => "missing_row",
            FallbackReason::MissingField => "missing_field",
            FallbackReason::ParseError => "parse_error",
            FallbackReason::Timeout => "timeout",
            FallbackReason::StoreError => "store_error",
        }
    }
}

// Counters are indexed by `reason as usize`; a reordered `ALL` would count under the wrong label.
const _: () = {
    let mut i = 0;
    while i < FallbackReason::COUNT {
        assert!(FallbackReason::ALL[i] as usize == i, "FallbackReason::ALL must follow declaration order");
        i += 1;
    }
};
