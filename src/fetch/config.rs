//! `[store]` and `[fetch]`: where feature rows come from (memory tables, Redis, Redis Cluster,
//! the local cache of hot rows, the key layout) and the fetch's time budget, owned by the module
//! that reads them.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use crate::validate::{Invalid, in_range, invalid, redact_url};

/// Time budget of the feature fetch: min(`max_budget_ms`, caller's deadline − `inference_reserve_ms`).
/// When it runs out the request is answered with spec defaults and a degraded-feature report.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FetchConfig {
    /// Cap on the fetch, whatever the caller's deadline.
    #[serde(default = "default_fetch_budget_ms")]
    pub max_budget_ms: u64,
    /// Kept back from the caller's deadline for assembly and inference.
    #[serde(default = "default_inference_reserve_ms")]
    pub inference_reserve_ms: u64,
}

impl Default for FetchConfig {
    fn default() -> Self {
        FetchConfig { max_budget_ms: default_fetch_budget_ms(), inference_reserve_ms: default_inference_reserve_ms() }
    }
}

const fn default_max_streamed_rows() -> usize {
    1_000_000
}

const fn default_fetch_budget_ms() -> u64 {
    100
}

const fn default_inference_reserve_ms() -> u64 {
    10
}

/// Where feature rows come from.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum StoreConfig {
    /// Tables loaded from CSV or JSONL files into memory at start-up.
    Memory {
        /// The tables; a feature spec refers to them by name.
        #[serde(default)]
        tables: Vec<TableConfig>,
        /// Rows feature streams may add to one table beyond those loaded from its file (each new
        /// entity id is a row, with its fields' event times). An update for a new id past it is
        /// refused, counted and dead-lettered (reason `store`); rows held keep taking updates.
        /// Size it with the memory: a row costs its fields' values and names, twice over.
        #[serde(default = "default_max_streamed_rows")]
        max_streamed_rows: usize,
    },
    /// Redis or Redis Cluster, one hash per entity (`src/fetch/redis.rs` describes the layout).
    Redis(RedisConfig),
}

/// `store.kind = "redis"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://[user:pass@]host:port[/db]`: exactly one for a single node; with `cluster = true`
    /// any number of seed nodes (the rest of the cluster is discovered from them).
    #[serde(default = "default_redis_urls")]
    pub urls: Vec<String>,
    /// Redis Cluster instead of a single node.
    #[serde(default)]
    pub cluster: bool,
    /// First part of every key, so several deployments (or a staging copy) can share a Redis.
    #[serde(default = "default_redis_namespace")]
    pub namespace: String,
    /// Key of one row: `{namespace}`, `{table}` and `{id}` placeholders; `{{`/`}}` are literal
    /// braces (Redis Cluster hash tags — the default has none, so rows spread over all masters).
    #[serde(default = "default_redis_key_template")]
    pub key_template: KeyTemplate,
    /// Bound on one read (all rows of a request's table), in ms: a hung or restarting Redis costs
    /// a request at most this long.
    #[serde(default = "default_redis_timeout_ms")]
    pub timeout_ms: u64,
    /// Bound on establishing a connection, in ms (start-up and every reconnection attempt).
    #[serde(default = "default_redis_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// Multiplexed connections to a single node, used in turn by successive reads. One
    /// connection's replies are parsed by one task; more connections spread that parsing over
    /// the async workers, for hosts where that task becomes the limit. On 2 cores 1 and 2
    /// measured the same (BENCHMARKS.md, "Fetch stage against Redis"). A cluster keeps one
    /// connection per node.
    #[serde(default = "default_redis_connections")]
    pub connections: usize,
    /// CA certificate (PEM) that signed the server's certificate, for `rediss://` URLs to a Redis
    /// with a private CA; without it the system's roots are used.
    #[serde(default)]
    pub tls_ca_path: Option<PathBuf>,
    /// Local cache of hot rows, per table.
    #[serde(default)]
    pub cache: CacheConfig,
    /// Source files of the tables: not read by the service, but the defaults of
    /// `augur features load --table NAME` (`--file` = `path`, `--key-column` = `key`). Kept
    /// under the same name as the memory store's so a file that switches `kind` over the
    /// embedded defaults still parses.
    #[serde(default)]
    pub tables: Vec<TableConfig>,
}

fn default_redis_urls() -> Vec<String> {
    vec!["redis://127.0.0.1:6379".to_owned()]
}

pub(crate) fn default_redis_namespace() -> String {
    "augur".to_owned()
}

const fn default_redis_timeout_ms() -> u64 {
    50
}

const fn default_redis_connections() -> usize {
    1
}

const fn default_redis_connect_timeout_ms() -> u64 {
    1000
}

/// Local row cache in front of a remote store: `[store.cache.tables.<table>]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheConfig {
    /// Tables cached, by name; tables not listed are always read from the store.
    #[serde(default)]
    pub tables: BTreeMap<String, TableCacheConfig>,
}

/// Caching of one table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableCacheConfig {
    /// Switch a listed table off without deleting its settings.
    #[serde(default = "default_cache_enabled")]
    pub enabled: bool,
    /// Rows kept at most (LRU/LFU eviction beyond): bounds the memory a hot table can take.
    #[serde(default = "default_cache_max_entries")]
    pub max_entries: u64,
    /// How long a row is served from the cache, in ms: the staleness accepted after a reload.
    #[serde(default = "default_cache_ttl_ms")]
    pub ttl_ms: u64,
    /// How long "no such row" is cached, in ms (0 = not cached): shorter than `ttl_ms` so that
    /// newly loaded ids appear quickly, yet a flood of unknown ids costs one read per period.
    #[serde(default = "default_cache_negative_ttl_ms")]
    pub negative_ttl_ms: u64,
}

const fn default_cache_enabled() -> bool {
    true
}

const fn default_cache_max_entries() -> u64 {
    100_000
}

const fn default_cache_ttl_ms() -> u64 {
    30_000
}

const fn default_cache_negative_ttl_ms() -> u64 {
    5_000
}

/// One in-memory table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableConfig {
    /// Name the feature specs use (`entities.user.table`).
    pub name: String,
    /// `.csv` (header row; list values joined by `|`) or `.jsonl` (one object per line).
    pub path: PathBuf,
    /// Column holding the entity id.
    pub key: String,
}

/// A compiled key template: `{namespace}`, `{table}` and `{id}` placeholders, `{{`/`}}` escapes.
/// Parsed when the config is (serde `try_from`), so a bad template fails start-up naming
/// `store.key_template`; the store binds the namespace with [`KeyTemplate::with_namespace`].
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct KeyTemplate {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Namespace,
    Table,
    Id,
}

impl KeyTemplate {
    /// Compiles `template`. It must contain `{table}` (tables sharing ids must not collide) and
    /// `{id}`.
    pub fn parse(template: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut chars = template.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    literal.push('{');
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    literal.push('}');
                }
                '{' => {
                    let mut name = String::new();
                    loop {
                        match chars.next() {
                            Some('}') => break,
                            Some(c) => name.push(c),
                            None => return Err(format!("unclosed `{{{name}` in `{template}`")),
                        }
                    }
                    let part = match name.as_str() {
                        "namespace" => Part::Namespace,
                        "table" => Part::Table,
                        "id" => Part::Id,
                        other => {
                            return Err(format!(
                                "unknown placeholder `{{{other}}}` (use {{namespace}}, {{table}}, \
                                 {{id}}; {{{{ and }}}} for literal braces)"
                            ));
                        }
                    };
                    if !literal.is_empty() {
                        parts.push(Part::Literal(std::mem::take(&mut literal)));
                    }
                    parts.push(part);
                }
                '}' => return Err(format!("unmatched `}}` in `{template}` (write `}}}}`)")),
                c => literal.push(c),
            }
        }
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        for (needed, part) in [("{table}", Part::Table), ("{id}", Part::Id)] {
            if !parts.contains(&part) {
                return Err(format!("`{template}` must contain {needed}"));
            }
        }
        Ok(KeyTemplate { parts })
    }

    /// The template with `{namespace}` replaced by `namespace` (adjacent literals merged, so
    /// building a key stays one pass over few parts).
    pub fn with_namespace(&self, namespace: &str) -> KeyTemplate {
        let mut parts: Vec<Part> = Vec::with_capacity(self.parts.len());
        for part in &self.parts {
            let text = match part {
                Part::Namespace => namespace,
                Part::Literal(s) => s.as_str(),
                other => {
                    parts.push(other.clone());
                    continue;
                }
            };
            match parts.last_mut() {
                Some(Part::Literal(prev)) => prev.push_str(text),
                _ => parts.push(Part::Literal(text.to_owned())),
            }
        }
        KeyTemplate { parts }
    }

    /// The key of `id` in `table` (a `{namespace}` not yet bound is written as empty).
    pub fn key(&self, table: &str, id: &str) -> String {
        let mut key = String::with_capacity(32 + table.len() + id.len());
        self.write_key(&mut key, table, id);
        key
    }

    /// Appends the key of `id` in `table` to `out` (the loader reuses one buffer).
    pub fn write_key(&self, out: &mut String, table: &str, id: &str) {
        for part in &self.parts {
            match part {
                Part::Literal(s) => out.push_str(s),
                Part::Namespace => {}
                Part::Table => out.push_str(table),
                Part::Id => out.push_str(id),
            }
        }
    }
}

impl TryFrom<String> for KeyTemplate {
    type Error = String;

    fn try_from(template: String) -> Result<Self, String> {
        // figment attributes a `try_from` error to the enclosing table only: name the key here.
        KeyTemplate::parse(&template).map_err(|e| format!("store.key_template: {e}"))
    }
}

fn default_redis_key_template() -> KeyTemplate {
    KeyTemplate::parse("{namespace}:{table}:{id}").expect("the default key template parses")
}

impl RedisConfig {
    /// Checks the URLs, connection bounds and cache bounds.
    pub fn validate(&self) -> Result<(), Invalid> {
        if self.urls.is_empty() || (!self.cluster && self.urls.len() != 1) {
            return Err(invalid(
                "store.urls",
                &format!("must list exactly one URL, or seed nodes with `cluster = true` (got {})", self.urls.len()),
            ));
        }
        for (i, url) in self.urls.iter().enumerate() {
            if let Err(e) = redis::IntoConnectionInfo::into_connection_info(url.as_str()) {
                return Err(invalid(&format!("store.urls[{i}]"), &format!("`{}`: {e}", redact_url(url))));
            }
        }
        in_range("store.connections", self.connections, 1, 64)?;
        if let Some(path) = &self.tls_ca_path
            && !path.is_file()
        {
            return Err(invalid("store.tls_ca_path", &format!("{} is not a readable file", path.display())));
        }
        if self.namespace.is_empty() {
            return Err(invalid("store.namespace", "must not be empty"));
        }
        in_range("store.timeout_ms", self.timeout_ms as usize, 1, 60_000)?;
        in_range("store.connect_timeout_ms", self.connect_timeout_ms as usize, 1, 600_000)?;
        for (name, table) in &self.cache.tables {
            let key = |field: &str| format!("store.cache.tables.{name}.{field}");
            in_range(&key("max_entries"), table.max_entries as usize, 1, 1 << 32)?;
            in_range(&key("ttl_ms"), table.ttl_ms as usize, 1, 86_400_000)?;
            in_range(&key("negative_ttl_ms"), table.negative_ttl_ms as usize, 0, table.ttl_ms as usize)?;
        }
        Ok(())
    }
}

impl FetchConfig {
    /// Range checks serde cannot express.
    pub fn validate(&self) -> Result<(), Invalid> {
        in_range("fetch.max_budget_ms", self.max_budget_ms as usize, 1, 60_000)?;
        in_range("fetch.inference_reserve_ms", self.inference_reserve_ms as usize, 0, 60_000)?;
        Ok(())
    }
}

impl StoreConfig {
    /// Checks the store and its tables.
    pub fn validate(&self) -> Result<(), Invalid> {
        let tables = match self {
            StoreConfig::Memory { tables, max_streamed_rows } => {
                in_range("store.max_streamed_rows", *max_streamed_rows, 0, 1_000_000_000)?;
                tables
            }
            StoreConfig::Redis(redis) => {
                redis.validate()?;
                &redis.tables
            }
        };
        for (i, table) in tables.iter().enumerate() {
            if tables[..i].iter().any(|t| t.name == table.name) {
                return Err(invalid(&format!("store.tables[{i}].name"), &format!("`{}` is listed twice", table.name)));
            }
        }
        Ok(())
    }
}
