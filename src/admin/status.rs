//! The status page of the admin HTTP port (`/` and `/status`): one server-rendered HTML page an
//! operator opens without Prometheus or Grafana — scenes with their model versions, load times and
//! traffic split; what the publish gate recorded for each (evaluation and lineage); their online
//! quality side by side (`ListModels`' `quality`); the canary decisions of scenes with a rollout
//! policy (`ListModels`' `rollout`); request counts,
//! rate and latency per scene; the batch-size distribution; the top fallbacks; the sample
//! pipeline; and drift per version and feature (`crate::drift`, found through the registry).
//!
//! No template engine, no JavaScript, no CDN: the page is a `String` built here, so it renders on
//! an air-gapped host and needs no build step. It reads the same sources as everything else
//! operators see: the models come from `ModelAdmin.ListModels`' data (a [`ModelSource`] the
//! server implements, so this module does not import the scene router and the module graph
//! stays one-way), the numbers from the one [`Metrics`] registry — typed handles where they
//! exist, and the encoded exposition for families this module cannot know in advance (the sample
//! pipeline registers `augur_samples_*` when it is on). Every dynamic string goes through
//! [`escape`]: scene, model, feature and label values come from config files and specs an
//! operator may not have written.

use std::fmt::Write as _;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::proto::ModelStatus;
use crate::quality::display::{DecisionCells, QualityCells};
use crate::telemetry::Metrics;

/// The gRPC method whose calls the per-scene numbers describe.
const PREDICT: &str = "/augur.v1.Prediction/Predict";

/// How many fallback series the page lists (the rest is on `/metrics`).
const TOP_FALLBACKS: usize = 10;

/// What a family's sample names add to its name, by metric type.
const SUFFIXES: [&str; 7] = ["", "_total", "_created", "_bucket", "_count", "_sum", "_info"];

/// A boxed future, so [`ModelSource`] stays object-safe; one allocation per page view.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where the page reads the served models and their versions from.
pub trait ModelSource: Send + Sync + std::fmt::Debug {
    /// What `ModelAdmin.ListModels` answers now.
    fn models(&self) -> BoxFuture<'_, Vec<ModelStatus>>;
}

/// Escapes `s` for HTML text and double- or single-quoted attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// One sample line of the text exposition.
#[derive(Debug, Clone, PartialEq)]
struct Sample {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
}

impl Sample {
    fn label(&self, key: &str) -> &str {
        self.labels.iter().find(|(k, _)| k == key).map_or("", |(_, v)| v.as_str())
    }
}

/// Parses `name{key="value",...} value [exemplar]`; `None` for comments and anything else.
fn parse_sample(line: &str) -> Option<Sample> {
    if line.starts_with('#') || line.is_empty() {
        return None;
    }
    let name_end = line.find(['{', ' '])?;
    let name = line[..name_end].to_owned();
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(body) = rest.strip_prefix('{') {
        rest = body;
        loop {
            if let Some(after) = rest.strip_prefix('}') {
                rest = after;
                break;
            }
            let (key, after) = rest.split_once("=\"")?;
            let mut value = String::new();
            let mut chars = after.char_indices();
            let end = loop {
                match chars.next()? {
                    (i, '"') => break i,
                    (_, '\\') => match chars.next()?.1 {
                        'n' => value.push('\n'),
                        c => value.push(c),
                    },
                    (_, c) => value.push(c),
                }
            };
            labels.push((key.to_owned(), value));
            rest = &after[end + 1..];
            rest = rest.strip_prefix(',').unwrap_or(rest);
        }
    }
    let value = rest.split_whitespace().next()?.parse().ok()?;
    Some(Sample { name, labels, value })
}

/// Renders the page. `uptime` is how long the admin port has served: rates are averages over it.
pub fn render(models: &[ModelStatus], metrics: &Metrics, uptime: Duration) -> String {
    let text = metrics.render();
    let samples: Vec<Sample> = text.lines().filter_map(parse_sample).collect();
    let mut page = String::with_capacity(16 * 1024);
    head(&mut page, uptime);
    scenes(&mut page, models);
    provenance(&mut page, models);
    quality(&mut page, models);
    canary(&mut page, models);
    traffic(&mut page, models, metrics, &samples, uptime);
    batch_sizes(&mut page, &samples);
    fallbacks(&mut page, &samples);
    sample_pipeline(&mut page, &text, &samples);
    drift(&mut page, metrics);
    page.push_str("</body>\n</html>\n");
    page
}

fn head(page: &mut String, uptime: Duration) {
    let _ = write!(
        page,
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta http-equiv=\"refresh\" content=\"10\">\n<title>augur status</title>\n<style>\n\
         body {{ font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }}\n\
         h1 {{ font-size: 1.4em; }} h2 {{ font-size: 1.1em; margin-top: 1.6em; }}\n\
         table {{ border-collapse: collapse; margin: .4em 0; }}\n\
         th, td {{ border: 1px solid #ccc; padding: .25em .6em; text-align: left; }}\n\
         td.n {{ text-align: right; font-variant-numeric: tabular-nums; }}\n\
         th {{ background: #f2f2f2; }} .note {{ color: #666; }}\n\
         .bar {{ background: #4a7bd0; height: .8em; }}\n</style>\n</head>\n<body>\n\
         <h1>augur {}</h1>\n<p class=\"note\">Admin port up {}; this page reloads every 10 s. \
         Raw numbers: <a href=\"/metrics\">/metrics</a>.</p>\n",
        escape(env!("CARGO_PKG_VERSION")),
        human_duration(uptime),
    );
}

fn scenes(page: &mut String, models: &[ModelStatus]) {
    page.push_str("<h2>Scenes and model versions</h2>\n");
    if models.is_empty() {
        page.push_str("<p>No scene is served.</p>\n");
        return;
    }
    page.push_str(
        "<table>\n<tr><th>Scene</th><th>Model</th><th>Version</th><th>Labels</th><th>Traffic</th>\
         <th>Loaded</th><th>Load time</th><th>Warm-up</th><th>Batches</th><th>Rows</th>\
         <th>CPU per 1,000 scores</th></tr>\n",
    );
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
    for m in models {
        for v in &m.versions {
            let age = Duration::from_millis(now.saturating_sub(v.loaded_at_unix_ms).max(0) as u64);
            let _ = writeln!(
                page,
                "<tr><td>{}</td><td>{}</td><td class=\"n\">{}</td><td>{}</td><td class=\"n\">{:.0}%</td>\
                 <td>{} ago</td><td class=\"n\">{:.1} ms</td><td class=\"n\">{:.1} ms</td>\
                 <td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
                escape(&m.scene),
                escape(&m.name),
                v.version,
                escape(&v.labels.join(", ")),
                v.traffic_weight * 100.0,
                human_duration(age),
                v.load_ms,
                v.warmup_ms,
                v.batches,
                v.rows,
                cost_per_thousand(v.inference_cpu_seconds, v.rows),
            );
        }
        if m.versions.is_empty() {
            let _ = writeln!(
                page,
                "<tr><td>{}</td><td>{}</td><td colspan=\"9\">no version loaded</td></tr>",
                escape(&m.scene),
                escape(&m.name)
            );
        }
        if !m.last_error.is_empty() {
            let _ = writeln!(
                page,
                "<tr><td colspan=\"11\" class=\"note\">{}: last error: {}</td></tr>",
                escape(&m.name),
                escape(&m.last_error)
            );
        }
    }
    page.push_str("</table>\n");
}

/// Inference CPU per 1,000 scores (rows), from a version's counters since it was loaded.
fn cost_per_thousand(cpu_seconds: f64, rows: u64) -> String {
    if rows == 0 {
        return "–".into();
    }
    format!("{:.2} CPU-ms", cpu_seconds * 1e6 / rows as f64)
}

/// Each loaded version's publish-gate evaluation and lineage, from its marker (`ListModels`'
/// `evaluation` and `lineage`): which run and which samples made it, and how it compared.
fn provenance(page: &mut String, models: &[ModelStatus]) {
    page.push_str("<h2>Publish gate and lineage per version</h2>\n");
    let versions: Vec<_> = models.iter().flat_map(|m| m.versions.iter().map(move |v| (m, v))).collect();
    if !versions.iter().any(|(_, v)| v.evaluation.is_some() || v.lineage.is_some()) {
        page.push_str("<p>No loaded version was published through the gate (<code>augur models publish</code>).</p>\n");
        return;
    }
    page.push_str(
        "<p class=\"note\">Recorded by <code>augur models publish</code>: the candidate and the version \
         LATEST named, scored on the same joined samples (candidate / baseline). Lineage as the trainer \
         reported it.</p>\n<table>\n<tr><th>Scene</th><th>Version</th><th>Gate</th><th>Against</th>\
         <th>Rows</th><th>AUC</th><th>Log loss</th><th>Calibration</th><th>Reasons</th><th>Trained on</th>\
         <th>Warm start</th><th>Run</th></tr>\n",
    );
    let pair = |c: Option<f64>, b: Option<f64>, digits: usize| match (c, b) {
        (Some(c), Some(b)) => format!("{c:.digits$} / {b:.digits$}"),
        (Some(c), None) => format!("{c:.digits$}"),
        _ => String::new(),
    };
    for (m, v) in versions {
        let mut cells = vec![String::new(); 9];
        if let Some(e) = &v.evaluation {
            let (c, b) = (e.candidate.as_ref(), e.baseline.as_ref());
            cells[0] = format!("{}{}", e.decision, if e.forced { " (forced)" } else { "" });
            cells[1] = if e.baseline_version > 0 { e.baseline_version.to_string() } else { String::new() };
            if e.rows > 0 {
                let held = if e.held_out_from_ms > 0 { "held out" } else { "recent" };
                cells[2] = format!("{} ({} {}), {held}", e.rows, e.positives, e.positive_event);
            }
            cells[3] = pair(c.and_then(|s| s.auc), b.and_then(|s| s.auc), 4);
            cells[4] = pair(c.map(|s| s.log_loss), b.map(|s| s.log_loss), 4);
            cells[5] = pair(c.and_then(|s| s.calibration), b.and_then(|s| s.calibration), 3);
            cells[6] = e.reasons.join("; ");
        }
        if let Some(l) = &v.lineage {
            if l.trained_rows > 0 || l.trained_to_ms > 0 {
                let span = Duration::from_millis((l.trained_to_ms - l.trained_from_ms).max(0) as u64);
                cells[7] =
                    format!("{} rows ({} positive) over {}", l.trained_rows, l.trained_positives, human_duration(span));
            }
            cells[8] = l.warm_start_version.map_or("scratch".to_owned(), |w| w.to_string());
        }
        let run = v.lineage.as_ref().map_or("", |l| l.run_json.as_str());
        let _ = writeln!(
            page,
            "<tr><td>{}</td><td class=\"n\">{}</td><td>{}</td><td class=\"n\">{}</td><td>{}</td>\
             <td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td><td>{}</td>\
             <td class=\"n\">{}</td><td><code>{}</code></td></tr>",
            escape(&m.scene),
            v.version,
            escape(&cells[0]),
            cells[1],
            escape(&cells[2]),
            cells[3],
            cells[4],
            cells[5],
            escape(&cells[6]),
            escape(&cells[7]),
            cells[8],
            escape(run),
        );
    }
    page.push_str("</table>\n");
}

/// Online quality per version, side by side (`ListModels`' `quality`, from the label join).
fn quality(page: &mut String, models: &[ModelStatus]) {
    page.push_str("<h2>Online quality per version</h2>\n");
    let Some(first) = models.iter().flat_map(|m| &m.quality).next() else {
        page.push_str("<p>No joined sample yet (or sample logging or <code>samples.quality</code> is off).</p>\n");
        return;
    };
    let window = Duration::from_millis((first.window_end_ms - first.window_start_ms).max(0) as u64);
    let _ = writeln!(
        page,
        "<p class=\"note\">Impressions emitted by the label join in the last {} (positive: <code>{}</code>; \
         labels known at emission, corrections counted apart). AUC from score histograms, \
         &plusmn; its error bound. Blank: undefined (no impression, no positive or one class only).</p>",
        human_duration(window),
        escape(&first.positive_event),
    );
    page.push_str(
        "<table>\n<tr><th>Scene</th><th>Model</th><th>Version</th><th>Impressions</th><th>Positives</th>\
         <th>CTR</th><th>Mean score</th><th>Calibration</th><th>Score &minus; rate</th><th>Log loss</th>\
         <th>AUC</th><th>Impressions since seen</th><th>Corrections</th></tr>\n",
    );
    for m in models {
        for q in &m.quality {
            let cells = QualityCells::of(Some(q), "");
            let auc = if cells.auc.is_empty() || cells.auc_error_bound.is_empty() {
                String::new()
            } else {
                format!("{} &plusmn; {}", cells.auc, cells.auc_error_bound)
            };
            let _ = writeln!(
                page,
                "<tr><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
                 <td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
                 <td class=\"n\">{}</td><td class=\"n\">{auc}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
                escape(&m.scene),
                escape(&m.name),
                escape(&q.version),
                q.impressions,
                q.positives,
                cells.ctr,
                cells.mean_score,
                cells.calibration,
                cells.calibration_difference,
                cells.log_loss,
                q.impressions_total,
                q.corrections_total,
            );
        }
    }
    page.push_str("</table>\n");
}

/// The canary decider per scene with a rollout policy (`ListModels`' `rollout`): policy, the
/// canary under evaluation with this replica's last look, and the recorded decisions.
fn canary(page: &mut String, models: &[ModelStatus]) {
    let with_policy: Vec<&ModelStatus> = models.iter().filter(|m| m.rollout.is_some()).collect();
    if with_policy.is_empty() {
        return;
    }
    page.push_str(
        "<h2>Canary decisions</h2>\n<p class=\"note\">Scenes with a rollout policy \
         (<code>scenes[].rollout</code>): the newest undecided version gets the canary share until \
         augur promotes it or rolls it back (one-sided DeLong test on the online AUC difference, \
         calibration guard; docs/quality.md). Decisions are recorded in the model repository and \
         followed by every replica; the last look is this replica's.</p>\n",
    );
    page.push_str(
        "<table>\n<tr><th>Scene</th><th>Model</th><th>Version</th><th>Decision</th><th>By</th><th>At</th>\
         <th>Stable</th><th>Impressions (stable / canary)</th><th>AUC (stable / canary)</th>\
         <th>Difference &plusmn; se</th><th>z</th><th>Calibration</th><th>Reason</th></tr>\n",
    );
    for m in with_policy {
        let Some(r) = &m.rollout else { continue };
        let policy = format!(
            "share {}, min {} impressions per arm, max AUC drop {}, max calibration error {}, window {} s; \
             stable {}, canary {}",
            r.canary_share,
            r.min_impressions,
            r.max_auc_drop,
            r.max_calibration_error,
            r.decision_window_s,
            r.stable_version,
            if r.canary_version == 0 { "none".to_owned() } else { r.canary_version.to_string() },
        );
        let rows = r.last_evaluation.iter().map(|e| (e, "last look: ")).chain(r.decisions.iter().map(|d| (d, "")));
        let _ = writeln!(
            page,
            "<tr><td>{}</td><td>{}</td><td colspan=\"11\">{}</td></tr>",
            escape(&m.scene),
            escape(&m.name),
            escape(&policy)
        );
        for (d, prefix) in rows {
            let at = chrono_ms(d.at_ms);
            let n = DecisionCells::of(d, "");
            let se =
                if n.standard_error.is_empty() { String::new() } else { format!(" &plusmn; {}", n.standard_error) };
            let _ = writeln!(
                page,
                "<tr><td>{}</td><td>{}</td><td class=\"n\">{}</td><td>{prefix}{}</td><td>{}</td><td>{at}</td>\
                 <td class=\"n\">{}</td><td class=\"n\">{} / {}</td><td class=\"n\">{} / {}</td>\
                 <td class=\"n\">{}{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td></tr>",
                escape(&m.scene),
                escape(&m.name),
                d.version,
                escape(&d.decision),
                escape(&d.by),
                d.stable_version,
                d.stable_impressions,
                d.canary_impressions,
                n.stable_auc,
                n.canary_auc,
                n.auc_difference,
                se,
                n.z,
                n.canary_calibration,
                escape(&d.reason),
            );
        }
    }
    page.push_str("</table>\n");
}

/// `ms` since the Unix epoch as UTC `HH:MM:SS` of its day (the page is for a glance; the API has
/// the exact value).
fn chrono_ms(ms: i64) -> String {
    let s = ms.div_euclid(1000).rem_euclid(86_400);
    format!("{:02}:{:02}:{:02} UTC", s / 3600, s / 60 % 60, s % 60)
}

fn traffic(page: &mut String, models: &[ModelStatus], metrics: &Metrics, samples: &[Sample], uptime: Duration) {
    let _ = writeln!(
        page,
        "<h2>Traffic per scene</h2>\n<p class=\"note\">Answered Predict calls since the admin port \
         started ({}); the rate is their average over that time, latencies are percentiles of the \
         whole call inside augur over the same time.</p>",
        human_duration(uptime)
    );
    page.push_str(
        "<table>\n<tr><th>Scene</th><th>Requests</th><th>Rate</th><th>Candidates</th><th>p50</th>\
         <th>p99</th></tr>\n",
    );
    let seconds = uptime.as_secs_f64().max(1e-3);
    for scene in models.iter().map(|m| m.scene.as_str()) {
        let total = metrics.stage(scene, "total").cumulative();
        let candidates: f64 = samples
            .iter()
            .filter(|s| s.name == "augur_candidates_scored_total" && s.label("scene") == scene)
            .map(|s| s.value)
            .sum();
        let _ = writeln!(
            page,
            "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{:.2}/s</td><td class=\"n\">{}</td>\
             <td class=\"n\">{:.2} ms</td><td class=\"n\">{:.2} ms</td></tr>",
            escape(scene),
            total.count,
            total.count as f64 / seconds,
            candidates,
            total.p50_us as f64 / 1e3,
            total.p99_us as f64 / 1e3,
        );
    }
    page.push_str("</table>\n");
    let codes: Vec<&Sample> =
        samples.iter().filter(|s| s.name == "augur_rpc_requests_total" && s.label("method") == PREDICT).collect();
    if !codes.is_empty() {
        page.push_str("<table>\n<tr><th>Predict status</th><th>Calls</th></tr>\n");
        for s in codes {
            let _ = writeln!(page, "<tr><td>{}</td><td class=\"n\">{}</td></tr>", escape(s.label("code")), s.value);
        }
        page.push_str("</table>\n");
    }
}

fn batch_sizes(page: &mut String, samples: &[Sample]) {
    page.push_str("<h2>Batch size (rows per model run)</h2>\n");
    let mut models: Vec<&str> = samples
        .iter()
        .filter(|s| s.name == "augur_batch_size_rows_count" && s.value > 0.0)
        .map(|s| s.label("model"))
        .collect();
    models.sort_unstable();
    if models.is_empty() {
        page.push_str("<p>No model run yet.</p>\n");
        return;
    }
    page.push_str(
        "<p class=\"note\">Since start, warm-up runs included. Mostly 1 under load means dynamic \
         batching is not gathering rows.</p>\n",
    );
    for model in models {
        let series = |name: &'static str| samples.iter().filter(move |s| s.name == name && s.label("model") == model);
        let count = series("augur_batch_size_rows_count").map(|s| s.value).sum::<f64>();
        let sum = series("augur_batch_size_rows_sum").map(|s| s.value).sum::<f64>();
        let _ = writeln!(
            page,
            "<table>\n<tr><th colspan=\"3\">{}: {count} runs, {:.1} rows per run</th></tr>\n\
             <tr><th>Rows</th><th>Runs</th><th></th></tr>",
            escape(model),
            sum / count,
        );
        // Buckets are cumulative: a bucket's own runs are its count minus the one below.
        let mut below = 0.0;
        let mut lower = 0.0;
        for s in series("augur_batch_size_rows_bucket") {
            // `le` is a float label ("4.0", "+Inf"); shown as the whole number of rows it bounds.
            let upper: f64 = s.label("le").parse().unwrap_or(f64::INFINITY);
            let runs = s.value - below;
            below = s.value;
            let range =
                if upper.is_finite() { format!("{lower} &lt; n &le; {upper}") } else { format!("&gt; {lower}") };
            lower = upper;
            if runs > 0.0 {
                let _ = writeln!(
                    page,
                    "<tr><td>{range}</td><td class=\"n\">{runs}</td>\
                     <td style=\"width:20em\"><div class=\"bar\" style=\"width:{:.0}%\"></div></td></tr>",
                    100.0 * runs / count,
                );
            }
        }
        page.push_str("</table>\n");
    }
}

fn fallbacks(page: &mut String, samples: &[Sample]) {
    page.push_str("<h2>Top fallbacks</h2>\n");
    let mut rows: Vec<&Sample> =
        samples.iter().filter(|s| s.name == "augur_feature_fallbacks_total" && s.value > 0.0).collect();
    if rows.is_empty() {
        page.push_str("<p>No feature has been served from its default.</p>\n");
        return;
    }
    rows.sort_by(|a, b| b.value.total_cmp(&a.value));
    let _ = writeln!(
        page,
        "<p class=\"note\">Rows served from a feature default since start; the {TOP_FALLBACKS} largest \
         of {} series.</p>\n<table>\n<tr><th>Scene</th><th>Feature</th><th>Reason</th><th>Rows</th></tr>",
        rows.len()
    );
    for s in rows.into_iter().take(TOP_FALLBACKS) {
        let _ = writeln!(
            page,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"n\">{}</td></tr>",
            escape(s.label("scene")),
            escape(s.label("feature")),
            escape(s.label("reason")),
            s.value
        );
    }
    page.push_str("</table>\n");
}

/// Every `augur_samples_*` family the registry declares, whatever the sample logger registers.
fn sample_pipeline(page: &mut String, text: &str, samples: &[Sample]) {
    page.push_str("<h2>Sample pipeline</h2>\n");
    let families: Vec<(&str, &str)> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.split_once(' '))
        .filter(|(name, _)| name.starts_with("augur_samples_"))
        .collect();
    if families.is_empty() {
        page.push_str("<p>Sample logging off: no <code>augur_samples_*</code> metric is registered.</p>\n");
        return;
    }
    page.push_str("<table>\n<tr><th>Metric</th><th>Type</th><th>Labels</th><th>Value</th></tr>\n");
    for (family, kind) in families {
        let mut any = false;
        for s in samples.iter().filter(|s| s.name.strip_prefix(family).is_some_and(|x| SUFFIXES.contains(&x))) {
            let labels: Vec<String> = s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let _ = writeln!(
                page,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"n\">{}</td></tr>",
                escape(&s.name),
                escape(kind),
                escape(&labels.join(", ")),
                s.value
            );
            any = true;
        }
        if !any {
            let _ = writeln!(
                page,
                "<tr><td>{}</td><td>{}</td><td colspan=\"2\">no sample yet</td></tr>",
                escape(family),
                escape(kind)
            );
        }
    }
    page.push_str("</table>\n");
}

/// Drift per version and feature (`crate::drift`): PSI of the served values against the training
/// reference, served and training fallback rates, flagged above `drift.psi_threshold`.
fn drift(page: &mut String, metrics: &Metrics) {
    page.push_str("<h2>Drift per version</h2>\n");
    let Some((drift, config)) = metrics.get::<crate::drift::Drift>().and_then(|d| d.config().cloned().map(|c| (d, c)))
    else {
        page.push_str("<p>Drift off (<code>drift.enabled</code>).</p>\n");
        return;
    };
    let snapshot = drift.snapshot(crate::drift::now_ms());
    if snapshot.versions.is_empty() {
        page.push_str("<p>No Predict request observed yet.</p>\n");
        return;
    }
    let _ = writeln!(
        page,
        "<p class=\"note\">Served values of one Predict request in {} over the last {}, against the training \
         reference published with the version (<code>reference.json</code>). PSI once the window holds {} rows; \
         flagged above {}. Fallback: rows served from the feature's default (training: per the reference).</p>",
        config.sample_every,
        human_duration(Duration::from_millis(config.window_ms().max(0) as u64)),
        config.min_rows,
        config.psi_threshold,
    );
    page.push_str(
        "<table>\n<tr><th>Scene</th><th>Model</th><th>Version</th><th>Rows</th><th>Feature</th><th>PSI</th>\
         <th>Fallback</th><th>Training fallback</th><th>Flagged</th></tr>\n",
    );
    let pct = |v: Option<f64>| v.map_or(String::new(), |v| format!("{:.2}%", 100.0 * v));
    for v in &snapshot.versions {
        for f in &v.features {
            let psi = match f.psi {
                Some(p) => format!("{p:.4}"),
                None if !v.has_reference => "no reference".to_owned(),
                None if !f.in_reference => "not in reference".to_owned(),
                None => format!("&lt; {} rows", config.min_rows),
            };
            let _ = writeln!(
                page,
                "<tr><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td>\
                 <td class=\"n\">{psi}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td></tr>",
                escape(&v.key.scene),
                escape(&v.key.model),
                v.key.version,
                v.rows,
                escape(&f.name),
                pct(f.fallback_rate),
                pct(f.reference_fallback_rate),
                if f.flagged { "<strong>drift</strong>" } else { "" },
            );
        }
    }
    page.push_str("</table>\n");
}

/// `3 h 12 min`, `4 min 5 s`, `12.3 s`.
fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{:.1} s", d.as_secs_f64()),
        60..3600 => format!("{} min {} s", s / 60, s % 60),
        3600..86400 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        _ => format!("{} d {} h", s / 86400, s % 86400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::metrics::counter::Counter;

    use super::*;
    use crate::proto::VersionStatus;
    use crate::scene::metrics::FallbackLabels;

    const HOSTILE: &str = "<script>alert(\"x&y\")</script>'";

    #[test]
    fn escape_neutralises_markup() {
        assert_eq!(escape(HOSTILE), "&lt;script&gt;alert(&quot;x&amp;y&quot;)&lt;/script&gt;&#39;");
        assert_eq!(escape("ranking_v2 ü"), "ranking_v2 ü");
    }

    #[test]
    fn parses_escaped_labels_and_exemplars() {
        let s = parse_sample(r#"augur_x_total{a="q\"uo\\te",b="line\nbreak"} 3 # {trace_id="t"} 1"#).unwrap();
        assert_eq!(s.name, "augur_x_total");
        assert_eq!(s.label("a"), "q\"uo\\te");
        assert_eq!(s.label("b"), "line\nbreak");
        assert_eq!(s.value, 3.0);
        assert_eq!(parse_sample("augur_rpc_in_flight 2").map(|s| s.value), Some(2.0));
        assert_eq!(parse_sample("# TYPE augur_rpc_in_flight gauge"), None);
    }

    #[test]
    fn hostile_names_are_escaped_everywhere() {
        let metrics = Metrics::new();
        let labels =
            FallbackLabels { scene: HOSTILE.into(), feature: format!("f{HOSTILE}"), reason: "missing_row".into() };
        metrics.of::<crate::scene::metrics::PathMetrics>().fallbacks.get_or_create(&labels).inc_by(7);
        let models = vec![ModelStatus {
            name: format!("m{HOSTILE}"),
            scene: HOSTILE.into(),
            versions: vec![VersionStatus {
                version: 3,
                labels: vec![HOSTILE.into()],
                evaluation: Some(crate::proto::PublishEvaluation {
                    decision: "refused".into(),
                    forced: true,
                    reasons: vec![format!("AUC {HOSTILE}")],
                    baseline_version: 2,
                    rows: 600,
                    positives: 120,
                    positive_event: "click".into(),
                    candidate: Some(crate::proto::OfflineScores { auc: Some(0.53), ..Default::default() }),
                    baseline: Some(crate::proto::OfflineScores { auc: Some(0.61), ..Default::default() }),
                    ..Default::default()
                }),
                lineage: Some(crate::proto::Lineage {
                    run_json: format!("{{\"note\": \"{HOSTILE}\"}}"),
                    warm_start_version: Some(2),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            last_error: HOSTILE.into(),
            quality: vec![crate::proto::VersionQuality {
                version: format!("v{HOSTILE}"),
                positive_event: HOSTILE.into(),
                impressions: 10,
                auc: Some(0.75),
                auc_error_bound: Some(0.001),
                ..Default::default()
            }],
            rollout: Some(crate::proto::RolloutStatus {
                decisions: vec![crate::proto::CanaryDecision {
                    version: 4,
                    decision: "rollback".into(),
                    by: HOSTILE.into(),
                    reason: format!("r{HOSTILE}"),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        }];
        let page = render(&models, &metrics, Duration::from_secs(90));
        assert!(!page.contains("<script>"), "{page}");
        assert!(!page.contains("alert(\""), "{page}");
        assert!(page.contains("f&lt;script&gt;alert(&quot;x&amp;y&quot;)"), "the feature row is there: {page}");
        assert!(page.contains("m&lt;script&gt;"), "the model row is there: {page}");
        assert!(page.contains("1 min 30 s"), "{page}");
        assert!(page.contains("v&lt;script&gt;"), "the quality row is there: {page}");
        assert!(page.contains("0.7500 &plusmn; 0.0010"), "{page}");
        assert!(page.contains("<td>refused (forced)</td><td class=\"n\">2</td>"), "the gate row is there: {page}");
        assert!(page.contains("0.5300 / 0.6100"), "both AUCs: {page}");
        assert!(page.contains("AUC &lt;script&gt;") && page.contains("&quot;note&quot;"), "{page}");
        assert!(page.contains("Canary decisions") && page.contains("r&lt;script&gt;"), "the decision row: {page}");
        let empty = render(&[], &metrics, Duration::from_secs(1));
        assert!(empty.contains("No joined sample yet"), "{empty}");
        assert!(empty.contains("No loaded version was published through the gate"), "{empty}");
    }

    /// docs/sizing.md scales its per-CPU figure by this cell: inference CPU over rows, per
    /// version, in milliseconds per 1,000 scores; a version that scored nothing has no cost yet.
    #[test]
    fn the_version_row_shows_inference_cpu_per_thousand_scores() {
        let version = |version, rows, inference_cpu_seconds| VersionStatus {
            version,
            rows,
            inference_cpu_seconds,
            traffic_weight: 0.5,
            ..Default::default()
        };
        let models = vec![ModelStatus {
            name: "bench".into(),
            scene: "bench".into(),
            versions: vec![version(1, 400_000, 2.0), version(2, 0, 0.0)],
            ..Default::default()
        }];
        let page = render(&models, &Metrics::new(), Duration::from_secs(1));
        let row = |v: u64| {
            let start = format!("<tr><td>bench</td><td>bench</td><td class=\"n\">{v}</td>");
            page.lines().find(|l| l.starts_with(&start)).unwrap_or_else(|| panic!("version {v}'s row: {page}"))
        };
        // 2 CPU-s over 400,000 rows = 5 CPU-ms per 1,000.
        assert!(row(1).ends_with("<td class=\"n\">400000</td><td class=\"n\">5.00 CPU-ms</td></tr>"), "{}", row(1));
        assert!(row(2).ends_with("<td class=\"n\">0</td><td class=\"n\">–</td></tr>"), "{}", row(2));
        assert!(page.contains("<th>CPU per 1,000 scores</th>"), "{page}");
    }

    #[test]
    fn the_sample_section_lists_whatever_the_sample_logger_registers() {
        let metrics = Metrics::new();
        let page = render(&[], &metrics, Duration::from_secs(1));
        assert!(page.contains("Sample logging off"), "{page}");

        let mut registry = prometheus_client::registry::Registry::with_prefix("augur");
        let dropped = Counter::<u64>::default();
        dropped.inc_by(4);
        registry.register("samples_dropped", "Samples dropped by a full buffer", dropped);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        let samples: Vec<Sample> = text.lines().filter_map(parse_sample).collect();
        let mut page = String::new();
        sample_pipeline(&mut page, &text, &samples);
        assert!(
            page.contains("<td>augur_samples_dropped_total</td><td>counter</td><td></td><td class=\"n\">4</td>"),
            "{page}"
        );
        assert!(!page.contains("Sample logging off"), "{page}");
    }
}
