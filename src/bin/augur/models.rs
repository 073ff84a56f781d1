//! `augur models publish|list|set-latest`: the scene's repository (bucket or directory) from the
//! config, the work in `augur::cli::models`. `augur models rollout|decide|promote|rollback`: a
//! running augur's canary through its admin port, the work in `augur::cli::served`.

use std::sync::Arc;

use anyhow::Context;

use augur::cli::gate::Gate;
use augur::cli::models::{self, Repo};
use augur::config::{Config, SceneConfig};
use augur::repository::provenance::Tolerance;

use augur::cli::served::{Admin, Rollout};
use augur::proto::CanaryAction;

use crate::args::{
    DecideAction, DecideArgs, DecisionArgs, ListArgs, ModelRepoArgs, PublishArgs, ServedArgs, SetLatestArgs,
};

fn scene(args: &ModelRepoArgs) -> anyhow::Result<(Config, SceneConfig)> {
    let config = Config::load(args.config.as_deref())?;
    let scene = config
        .scenes
        .iter()
        .find(|s| s.name == args.scene)
        .cloned()
        .with_context(|| format!("scene `{}` is not in the config's scenes", args.scene))?;
    Ok((config, scene))
}

/// ONNX Runtime as the service would open the model (one intra-op thread: a check, not serving).
fn loader(config: &Config) -> Arc<augur::model::onnx::OnnxLoader> {
    Arc::new(augur::model::onnx::OnnxLoader::new(augur::model::onnx::SessionOptions {
        intra_op_threads: 1,
        library: config.model.ort_library.clone(),
    }))
}

pub(crate) async fn publish(PublishArgs { repo, model, files, to, version, gate }: PublishArgs) -> anyhow::Result<()> {
    let (config, scene) = scene(&repo)?;
    let spec = augur::assemble::Spec::load(&scene.spec)?;
    let loader = loader(&config);
    let target = Repo::open(&scene, to.as_deref())?;
    let files = models::with_reference(std::iter::once(model).chain(files).collect());
    let lineage = gate.lineage.as_deref().map(models::read_lineage).transpose()?;
    let samples = gate.samples.or_else(|| config.samples.enabled.then(|| config.samples.log.dir.clone()));
    let options = models::PublishOptions {
        version,
        lineage,
        gate: Gate {
            samples,
            scene: scene.name.clone(),
            positive_event: gate.positive_event.unwrap_or_else(|| config.samples.quality.positive_event.clone()),
            tolerance: Tolerance {
                max_auc_drop: gate.max_auc_drop,
                max_log_loss_rise: gate.max_log_loss_rise,
                max_calibration_error: gate.max_calibration_error,
            },
            min_rows: gate.gate_min_rows,
            max_rows: gate.gate_max_rows,
            window_ms: i64::try_from(gate.gate_window_s.saturating_mul(1000)).unwrap_or(i64::MAX),
            force: gate.force,
        },
    };
    let published = models::publish_gated(&spec, loader, &target, &files, &options).await?;
    if let Some(evaluation) = &published.marker.evaluation {
        println!("{}", augur::cli::gate::summary(evaluation, published.version));
    }
    println!(
        "published version {} to {} ({} files, {} bytes); LATEST = {}",
        published.version,
        published.location,
        published.marker.files.len(),
        published.marker.total_bytes(),
        published.version
    );
    Ok(())
}

pub(crate) async fn list(
    ListArgs { repo, from, verify, admin_addr, token, top, json }: ListArgs,
) -> anyhow::Result<()> {
    if let Some(addr) = admin_addr {
        let served = Admin::connect(&addr, token.as_deref()).await?.served(&repo.scene, top).await?;
        match json {
            true => println!("{}", served.to_json()),
            false => print!("{served}"),
        }
        return Ok(());
    }
    let (config, scene) = scene(&repo)?;
    let spec = if verify { Some(augur::assemble::Spec::load(&scene.spec)?) } else { None };
    let check = models::Verify {
        files: verify,
        spec: spec.as_ref().map(|spec| (spec, loader(&config) as Arc<dyn augur::model::ModelLoader>)),
    };
    let listing = models::list(&Repo::open(&scene, from.as_deref())?, &check).await?;
    print!("{listing}");
    Ok(())
}

pub(crate) async fn set_latest(SetLatestArgs { repo, to, version }: SetLatestArgs) -> anyhow::Result<()> {
    let (_, scene) = scene(&repo)?;
    let target = Repo::open(&scene, to.as_deref())?;
    models::set_latest(&target, version).await?;
    println!("{}: LATEST = {version}", target.location());
    Ok(())
}

fn print_rollout(rollout: &Rollout, json: bool) {
    if json {
        println!("{}", rollout.to_json());
    } else {
        print!("{rollout}");
    }
}

pub(crate) async fn rollout(args: ServedArgs) -> anyhow::Result<()> {
    let admin = Admin::connect(&args.admin_addr, args.token.as_deref()).await?;
    print_rollout(&admin.rollout(&args.scene).await?, args.json);
    Ok(())
}

pub(crate) async fn decide(DecideArgs { decision, action }: DecideArgs) -> anyhow::Result<()> {
    let action = match action {
        DecideAction::Promote => CanaryAction::Promote,
        DecideAction::Rollback => CanaryAction::Rollback,
        DecideAction::Hold => CanaryAction::Hold,
        DecideAction::Resume => CanaryAction::Resume,
    };
    decided(decision, action).await
}

/// DecideCanary `action`, then the rollout as the server sees it after.
pub(crate) async fn decided(
    DecisionArgs { served, version, reason }: DecisionArgs,
    action: CanaryAction,
) -> anyhow::Result<()> {
    let admin = Admin::connect(&served.admin_addr, served.token.as_deref()).await?;
    print_rollout(&admin.decide(&served.scene, version, action, &reason).await?, served.json);
    Ok(())
}
