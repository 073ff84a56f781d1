//! `augur models rollout|decide|promote|rollback` and `augur models list --admin-addr`: a running
//! augur's canary and served versions (with their drift), read and driven through its ModelAdmin
//! service (the admin gRPC port), where [`super::models`] works on the repository itself. The canary's state lives in the server (which version is stable and which
//! canary, the share, the online quality of each, the decider's last look), so the tool asks the
//! server rather than reading the repository: what it shows is what that replica routes by.
//!
//! A scene is named as the config names it; ListModels gives the model repository serving it,
//! which is what DecideCanary takes. Every view renders as a table for a person and as JSON
//! (`--json`) for a script; the JSON keeps every number, the table rounds them.

use std::fmt;

use serde_json::{Value, json};
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;

use crate::proto::model_admin_client::ModelAdminClient;
use crate::proto::{CanaryAction, CanaryDecision, DecideCanaryRequest, ListModelsRequest, ModelStatus, VersionQuality};
use crate::quality::display::{DecisionCells, QualityCells};

/// Why a ModelAdmin command failed.
#[derive(Debug, thiserror::Error)]
pub enum ServedError {
    /// `--admin-addr` is not a URI tonic accepts.
    #[error("--admin-addr {addr}: {source}")]
    Address {
        /// As given.
        addr: String,
        /// What the URI parser said.
        #[source]
        source: http::uri::InvalidUri,
    },
    /// `--token` cannot be sent as a header value.
    #[error("--token: not a valid header value (visible ASCII only)")]
    Token,
    /// The server could not be reached.
    #[error("cannot reach the admin port at {addr}: {source}")]
    Connect {
        /// As given.
        addr: String,
        /// The transport error.
        #[source]
        source: tonic::transport::Error,
    },
    /// The server answered with an error.
    #[error("{call}: {source}")]
    Call {
        /// The RPC.
        call: &'static str,
        /// Its status.
        #[source]
        source: tonic::Status,
    },
    /// No served model has this scene.
    #[error("scene `{scene}` is not served there (served: {served})")]
    UnknownScene {
        /// As given.
        scene: String,
        /// The scenes the server has.
        served: String,
    },
    /// The scene has no rollout policy: nothing decides its canary.
    #[error("scene `{scene}` has no rollout policy (scenes[].rollout): no canary to decide")]
    NoPolicy {
        /// As given.
        scene: String,
    },
    /// promote/rollback/hold/resume without `--version` while no canary is under evaluation.
    #[error("scene `{scene}` has no canary under evaluation; name the version with --version")]
    NoCanary {
        /// As given.
        scene: String,
    },
}

/// A connection to one augur's admin gRPC port.
#[derive(Debug, Clone)]
pub struct Admin {
    client: ModelAdminClient<Channel>,
    /// `authorization: Bearer <token>` when the admin port asks for one (`admin.auth_token`).
    token: Option<MetadataValue<tonic::metadata::Ascii>>,
}

impl Admin {
    /// Connects to `addr` (`http://host:port`), sending `token` with every call when given.
    pub async fn connect(addr: &str, token: Option<&str>) -> Result<Self, ServedError> {
        let token = token
            .map(|t| MetadataValue::try_from(format!("Bearer {t}")).map_err(|_| ServedError::Token))
            .transpose()?;
        let endpoint = Channel::from_shared(addr.to_owned())
            .map_err(|source| ServedError::Address { addr: addr.to_owned(), source })?;
        let channel =
            endpoint.connect().await.map_err(|source| ServedError::Connect { addr: addr.to_owned(), source })?;
        Ok(Admin { client: ModelAdminClient::new(channel), token })
    }

    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Some(token) = &self.token {
            request.metadata_mut().insert("authorization", token.clone());
        }
        request
    }

    /// Every model the server serves (ListModels).
    pub async fn models(&self) -> Result<Vec<ModelStatus>, ServedError> {
        let response = self.client.clone().list_models(self.request(ListModelsRequest {})).await;
        Ok(response.map_err(|source| ServedError::Call { call: "ListModels", source })?.into_inner().models)
    }

    /// The model serving `scene`.
    pub async fn scene(&self, scene: &str) -> Result<ModelStatus, ServedError> {
        let models = self.models().await?;
        let served: Vec<String> = models.iter().map(|m| m.scene.clone()).collect();
        models
            .into_iter()
            .find(|m| m.scene == scene)
            .ok_or_else(|| ServedError::UnknownScene { scene: scene.to_owned(), served: served.join(", ") })
    }

    /// `scene`'s rollout as the server sees it.
    pub async fn rollout(&self, scene: &str) -> Result<Rollout, ServedError> {
        let status = self.scene(scene).await?;
        if status.rollout.is_none() {
            return Err(ServedError::NoPolicy { scene: scene.to_owned() });
        }
        Ok(Rollout { status })
    }

    /// An operator's decision on `scene`'s `version` (default: its canary under evaluation),
    /// through DecideCanary; returns the rollout after it.
    pub async fn decide(
        &self,
        scene: &str,
        version: Option<u64>,
        action: CanaryAction,
        reason: &str,
    ) -> Result<Rollout, ServedError> {
        let Rollout { status } = self.rollout(scene).await?;
        let canary = status.rollout.as_ref().map_or(0, |r| r.canary_version);
        let version = match version {
            Some(v) => v,
            None if canary != 0 => canary,
            None => return Err(ServedError::NoCanary { scene: scene.to_owned() }),
        };
        let request = DecideCanaryRequest {
            model: status.name.clone(),
            version,
            action: action as i32,
            reason: reason.to_owned(),
        };
        let response = self.client.clone().decide_canary(self.request(request)).await;
        let status = response.map_err(|source| ServedError::Call { call: "DecideCanary", source })?.into_inner();
        Ok(Rollout { status })
    }
}

/// One scene's rollout: the policy, stable and canary with their share and online quality, the
/// decider's last look on this replica and the decisions recorded in the repository.
#[derive(Debug, Clone, PartialEq)]
pub struct Rollout {
    /// ListModels' entry for the scene (it has a `rollout`).
    pub status: ModelStatus,
}

/// One routed version's line.
#[derive(Debug, Clone, PartialEq)]
struct Arm<'a> {
    role: &'static str,
    version: u64,
    share: f64,
    quality: Option<&'a VersionQuality>,
}

impl Rollout {
    fn arms(&self) -> Vec<Arm<'_>> {
        let Some(r) = &self.status.rollout else { return Vec::new() };
        let share = |v: u64| self.status.versions.iter().find(|s| s.version == v).map_or(0.0, |s| s.traffic_weight);
        let quality = |v: u64| self.status.quality.iter().find(|q| q.version == v.to_string());
        [("stable", r.stable_version), ("canary", r.canary_version)]
            .into_iter()
            .filter(|(_, v)| *v != 0)
            .map(|(role, version)| Arm { role, version, share: share(version), quality: quality(version) })
            .collect()
    }

    /// Everything shown, as JSON (every number unrounded; absent ratios are `null`).
    pub fn to_json(&self) -> Value {
        let s = &self.status;
        let r = s.rollout.clone().unwrap_or_default();
        let arms: Vec<Value> = self
            .arms()
            .iter()
            .map(|a| {
                let q = a.quality;
                json!({
                    "role": a.role,
                    "version": a.version,
                    "share": a.share,
                    "impressions": q.map(|q| q.impressions),
                    "impressions_total": q.map(|q| q.impressions_total),
                    "positives": q.map(|q| q.positives),
                    "ctr": q.and_then(|q| q.ctr),
                    "mean_score": q.and_then(|q| q.mean_score),
                    "auc": q.and_then(|q| q.auc),
                    "auc_error_bound": q.and_then(|q| q.auc_error_bound),
                    "calibration": q.and_then(|q| q.calibration),
                    "log_loss": q.and_then(|q| q.log_loss),
                    "window_start_ms": q.map(|q| q.window_start_ms),
                    "window_end_ms": q.map(|q| q.window_end_ms),
                })
            })
            .collect();
        json!({
            "scene": s.scene,
            "model": s.name,
            "policy": {
                "canary_share": r.canary_share,
                "min_impressions": r.min_impressions,
                "max_auc_drop": r.max_auc_drop,
                "max_calibration_error": r.max_calibration_error,
                "decision_window_s": r.decision_window_s,
            },
            "stable_version": (r.stable_version != 0).then_some(r.stable_version),
            "canary_version": (r.canary_version != 0).then_some(r.canary_version),
            "canary_since_ms": (r.canary_version != 0).then_some(r.canary_since_ms),
            "versions": arms,
            "last_evaluation": r.last_evaluation.as_ref().map(decision_json),
            "last_decision": r.decisions.first().map(decision_json),
            "decisions": r.decisions.iter().map(decision_json).collect::<Vec<_>>(),
        })
    }
}

fn decision_json(d: &CanaryDecision) -> Value {
    json!({
        "version": d.version,
        "decision": d.decision,
        "by": d.by,
        "at_ms": d.at_ms,
        "stable_version": d.stable_version,
        "reason": d.reason,
        "replica": d.replica,
        "stable_impressions": d.stable_impressions,
        "canary_impressions": d.canary_impressions,
        "stable_auc": d.stable_auc,
        "canary_auc": d.canary_auc,
        "auc_difference": d.auc_difference,
        "standard_error": d.standard_error,
        "z": d.z,
        "canary_calibration": d.canary_calibration,
        "window_start_ms": d.window_start_ms,
        "window_end_ms": d.window_end_ms,
    })
}

/// `at 1796608674535 ms (12 s ago)`: the server's clock in ms, and how long before now.
fn when(ms: i64) -> String {
    let ago = (crate::quality::now_ms() - ms) as f64 / 1000.0;
    format!("at {ms} ms ({ago:.0} s ago)")
}

/// A decision's numbers in one line: what the test compared.
fn numbers(d: &CanaryDecision) -> String {
    if d.stable_auc.is_none() && d.canary_auc.is_none() && d.canary_impressions == 0 {
        return String::new();
    }
    let DecisionCells { stable_auc, canary_auc, auc_difference, standard_error, z, canary_calibration } =
        DecisionCells::of(d, "-");
    format!(
        "impressions {}/{}  AUC {stable_auc}/{canary_auc}  diff {auc_difference}  se {standard_error}  z {z}  \
         calibration {canary_calibration}",
        d.stable_impressions, d.canary_impressions,
    )
}

fn decision_line(d: &CanaryDecision) -> String {
    let mut line = format!("v{} {} by {} {}", d.version, d.decision, d.by, when(d.at_ms));
    if d.stable_version != 0 {
        line.push_str(&format!(" (stable v{})", d.stable_version));
    }
    if !d.replica.is_empty() {
        line.push_str(&format!(" on {}", d.replica));
    }
    if !d.reason.is_empty() {
        line.push_str(&format!(": {}", d.reason));
    }
    let n = numbers(d);
    if !n.is_empty() {
        line.push_str(&format!("\n    {n}"));
    }
    line
}

impl fmt::Display for Rollout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.status;
        let r = s.rollout.clone().unwrap_or_default();
        writeln!(f, "scene {}  model {}", s.scene, s.name)?;
        writeln!(
            f,
            "policy: canary share {}, min impressions {}, max AUC drop {}, max calibration error {}, window {} s",
            r.canary_share, r.min_impressions, r.max_auc_drop, r.max_calibration_error, r.decision_window_s
        )?;
        writeln!(
            f,
            "{:<7}  {:>7}  {:>5}  {:>11}  {:>9}  {:>6}  {:>6}  {:>11}  {:>8}",
            "ROLE", "VERSION", "SHARE", "IMPRESSIONS", "(TOTAL)", "CTR", "AUC", "CALIBRATION", "LOG LOSS"
        )?;
        let arms = self.arms();
        if arms.is_empty() {
            writeln!(f, "(no version routed yet)")?;
        }
        for a in arms {
            let q = a.quality;
            let cells = QualityCells::of(q, "-");
            writeln!(
                f,
                "{:<7}  {:>7}  {:>5.2}  {:>11}  {:>9}  {:>6}  {:>6}  {:>11}  {:>8}",
                a.role,
                a.version,
                a.share,
                q.map_or(0, |q| q.impressions),
                q.map_or(0, |q| q.impressions_total),
                cells.ctr,
                cells.auc,
                cells.calibration,
                cells.log_loss,
            )?;
        }
        if r.canary_version == 0 {
            writeln!(f, "no canary under evaluation")?;
        } else {
            writeln!(f, "canary v{} routed {}", r.canary_version, when(r.canary_since_ms).replacen("at", "since", 1))?;
        }
        match &r.last_evaluation {
            Some(e) => writeln!(f, "last look (this replica): {}", decision_line(e))?,
            None => writeln!(f, "last look (this replica): none yet")?,
        }
        match r.decisions.first() {
            Some(d) => writeln!(f, "last decision: {}", decision_line(d))?,
            None => writeln!(f, "last decision: none")?,
        }
        for d in r.decisions.iter().skip(1) {
            writeln!(f, "earlier: {}", decision_line(d))?;
        }
        Ok(())
    }
}

/// `augur models list --admin-addr`: the versions a running augur serves for a scene, with their
/// labels, share and drift (ListModels).
#[derive(Debug, Clone, PartialEq)]
pub struct Served {
    /// ListModels' entry for the scene.
    pub status: ModelStatus,
    /// Features named per version in the table, worst PSI first (the JSON has them all).
    pub top: usize,
}

impl Admin {
    /// `scene`'s served versions, `top` worst drifting features of each in the table.
    pub async fn served(&self, scene: &str, top: usize) -> Result<Served, ServedError> {
        Ok(Served { status: self.scene(scene).await?, top })
    }
}

impl Served {
    /// Everything shown, as JSON: per version its labels, share and full drift summary.
    pub fn to_json(&self) -> Value {
        let s = &self.status;
        let versions: Vec<Value> = s
            .versions
            .iter()
            .map(|v| {
                let drift = v.drift.as_ref().map(|d| {
                    let features: Vec<Value> = d
                        .features
                        .iter()
                        .map(|f| {
                            json!({
                                "feature": f.feature,
                                "psi": f.psi,
                                "flagged": f.flagged,
                                "fallback_rate": f.fallback_rate,
                                "reference_fallback_rate": f.reference_fallback_rate,
                                "in_reference": f.in_reference,
                            })
                        })
                        .collect();
                    json!({
                        "has_reference": d.has_reference,
                        "rows": d.rows,
                        "rows_total": d.rows_total,
                        "window_start_ms": d.window_start_ms,
                        "window_end_ms": d.window_end_ms,
                        "psi_threshold": d.psi_threshold,
                        "flagged": d.flagged,
                        "features": features,
                    })
                });
                json!({
                    "version": v.version,
                    "labels": v.labels,
                    "share": v.traffic_weight,
                    "rows": v.rows,
                    "drift": drift,
                })
            })
            .collect();
        json!({ "scene": s.scene, "model": s.name, "source": s.source, "versions": versions })
    }
}

impl fmt::Display for Served {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.status;
        writeln!(f, "scene {}  model {}  served from {}", s.scene, s.name, s.directory)?;
        writeln!(f, "{:>8}  {:<14}  {:>5}  {:>10}  DRIFT", "VERSION", "LABELS", "SHARE", "SCORED")?;
        for v in &s.versions {
            let drift = match &v.drift {
                None => "not observed (drift off, or no traffic yet)".to_owned(),
                Some(d) if !d.has_reference => format!("no reference; {} rows observed", d.rows),
                Some(d) => {
                    let worst: Vec<String> = d
                        .features
                        .iter()
                        .filter_map(|x| x.psi.map(|p| (x, p)))
                        .take(self.top)
                        .map(|(x, p)| format!("{} {p:.3}{}", x.feature, if x.flagged { "!" } else { "" }))
                        .collect();
                    let psi = if worst.is_empty() {
                        "no PSI yet (fewer than drift.min_rows rows)".to_owned()
                    } else {
                        format!("worst PSI: {}", worst.join(", "))
                    };
                    format!(
                        "{} of {} flagged (PSI > {}) over {} rows; {psi}",
                        d.flagged,
                        d.features.len(),
                        d.psi_threshold,
                        d.rows
                    )
                }
            };
            writeln!(
                f,
                "{:>8}  {:<14}  {:>5.2}  {:>10}  {drift}",
                v.version,
                v.labels.join(","),
                v.traffic_weight,
                v.rows
            )?;
        }
        Ok(())
    }
}
