//! The demo data generators: deterministic synthetic data with a learnable click signal, one
//! submodule per scene. The same seed always writes byte-identical files, and a test checks the
//! catalogues committed under `demo/` are what the default seed writes.
//!
//! - `ranking`: [`generate`] (`augur demo-data`), users, items and impressions for `ranking`.
//! - `suggest`: [`generate_suggestions`] (`augur suggest-demo-data`), suggestions and a query log
//!   for `search_suggest`, for the ranking demo's users.

mod ranking;
mod suggest;

pub use ranking::{DemoSpec, World, draw_item, generate, popularity};
pub use suggest::{SuggestSpec, SuggestSummary, generate_suggestions};

/// Item (and suggestion) categories, `c0..c19`; user segment `sN` names category `cN`.
const CATEGORIES: usize = 20;
/// Devices a request comes from.
pub const DEVICES: [&str; 3] = ["ios", "android", "web"];
