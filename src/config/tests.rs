//! The config tree parses, validates and names keys; the defaults file and the code agree.
use super::*;

/// The field names serde asks for when it deserializes `T` (a struct).
fn fields_of<'de, T: serde::Deserialize<'de>>() -> &'static [&'static str] {
    struct Capture<'a>(&'a mut &'static [&'static str]);
    impl<'de> serde::Deserializer<'de> for Capture<'_> {
        type Error = serde::de::value::Error;
        fn deserialize_struct<V: serde::de::Visitor<'de>>(
            self,
            _name: &'static str,
            fields: &'static [&'static str],
            _visitor: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = fields;
            Err(serde::de::Error::custom("captured"))
        }
        fn deserialize_any<V: serde::de::Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Self::Error> {
            Err(serde::de::Error::custom("not a struct"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option
            unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier ignored_any
        }
    }
    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(Capture(&mut fields));
    fields
}

/// The text of `[header]` in `config/default.toml`, up to the next table header.
fn section(header: &str) -> String {
    let start = DEFAULT_TOML.find(&format!("\n[{header}]\n")).unwrap_or_else(|| panic!("[{header}]"));
    let body = &DEFAULT_TOML[start + header.len() + 4..];
    body[..body.find("\n[").unwrap_or(body.len())].to_owned()
}

/// A section as the code's serde defaults alone make it, from a document with only `required`.
fn code_defaults<T: serde::de::DeserializeOwned>(required: &str) -> T {
    Figment::from(Toml::string(required)).extract().expect("the code's defaults parse")
}

/// One source of defaults: `config/default.toml` sets (or shows in a `# key = ` comment) every key
/// of every section with defaults, and what it sets is what the code would use without it — so
/// the file an operator reads, the generated reference and the running binary cannot disagree.
#[test]
fn default_toml_has_every_key_and_agrees_with_the_code() {
    let file = Config::from_toml("").unwrap();
    let same = |name: &str, file: String, code: String| assert_eq!(file, code, "[{name}]: default.toml vs code");
    let listen = format!("listen = \"{}\"", file.server.listen);
    same("server", format!("{:?}", file.server), format!("{:?}", code_defaults::<ServerConfig>(&listen)));
    same("model", format!("{:?}", file.model), format!("{:?}", code_defaults::<ModelConfig>("")));
    same("fetch", format!("{:?}", file.fetch), format!("{:?}", FetchConfig::default()));
    same("admin", format!("{:?}", file.admin), format!("{:?}", AdminConfig::default()));
    same("log", format!("{:?}", file.log), format!("{:?}", LogConfig::default()));
    same("trace", format!("{:?}", file.trace), format!("{:?}", TraceConfig::default()));
    same("registry", format!("{:?}", file.registry), format!("{:?}", RegistryConfig::default()));
    same("samples", format!("{:?}", file.samples), format!("{:?}", SamplesConfig::default()));
    same("drift", format!("{:?}", file.drift), format!("{:?}", crate::drift::config::DriftConfig::default()));
    same("feature_history", format!("{:?}", file.feature_history), format!("{:?}", HistoryConfig::default()));
    for (header, fields, subtables) in [
        ("server", fields_of::<ServerConfig>(), &["http2"][..]),
        ("server.http2", fields_of::<Http2Config>(), &[]),
        ("model", fields_of::<ModelConfig>(), &[]),
        ("fetch", fields_of::<FetchConfig>(), &[]),
        ("admin", fields_of::<AdminConfig>(), &[]),
        ("log", fields_of::<LogConfig>(), &[]),
        ("trace", fields_of::<TraceConfig>(), &[]),
        ("samples", fields_of::<SamplesConfig>(), &["join", "log", "quality"]),
        ("samples.join", fields_of::<JoinConfig>(), &[]),
        ("samples.log", fields_of::<SampleLogConfig>(), &[]),
        ("samples.quality", fields_of::<crate::quality::config::QualityConfig>(), &[]),
        ("drift", fields_of::<crate::drift::config::DriftConfig>(), &[]),
        ("feature_history", fields_of::<HistoryConfig>(), &[]),
    ] {
        let text = section(header);
        for field in fields.iter().filter(|f| !subtables.contains(f)) {
            let set = text.lines().any(|l| l.starts_with(&format!("{field} = ")));
            let shown = text.lines().any(|l| l.starts_with(&format!("# {field} = ")));
            assert!(set || shown, "config/default.toml [{header}] lacks `{field}`");
        }
    }
    assert!(fields_of::<JoinConfig>().contains(&"window_s"), "the field capture works");
    // The sinks' `tail` table is shown once, with every key at its default.
    let samples = section("samples");
    let line = samples.lines().find_map(|l| l.strip_prefix("# tail = ")).expect("# tail = {...}");
    #[derive(Deserialize)]
    struct Sink {
        tail: TailConfig,
    }
    let shown: Sink = Figment::from(Toml::string(&format!("tail = {line}"))).extract().expect("parses");
    assert_eq!(shown.tail, TailConfig::default());
    for field in fields_of::<TailConfig>() {
        assert!(line.contains(&format!("{field} = ")), "config/default.toml `# tail =` lacks `{field}`");
    }
}

#[cfg(feature = "otel")]
#[test]
fn tracing_is_off_by_default_and_its_validation_names_the_key() {
    let trace = Config::from_toml("").unwrap().trace;
    assert_eq!(trace.otlp_endpoint, None);
    assert_eq!((trace.service_name.as_str(), trace.sample_ratio), ("augur", 1.0));
    let on = Config::from_toml("[trace]\notlp_endpoint = \"http://127.0.0.1:4317\"\nsample_ratio = 0.25\n").unwrap();
    assert_eq!(on.trace.otlp_endpoint.as_deref(), Some("http://127.0.0.1:4317"));
    let err = |toml: &str| Config::from_toml(toml).unwrap_err().to_string();
    for bad in ["otlp_endpoint = \"127.0.0.1:4317\"", "otlp_endpoint = \"\"", "otlp_endpoint = \"grpc://c:4317\""] {
        let e = err(&format!("[trace]\n{bad}\n"));
        assert!(e.contains("`trace.otlp_endpoint`"), "{bad}: {e}");
    }
    assert!(err("[trace]\nsample_ratio = 1.5\n").contains("`trace.sample_ratio`"));
    assert!(err("[trace]\nservice_name = \" \"\n").contains("`trace.service_name`"));
    assert!(err("[trace]\nexport_delay_ms = 0\n").contains("`trace.export_delay_ms`"));
}

#[cfg(feature = "etcd")]
#[test]
fn registry_is_off_by_default_and_etcd_defaults_apply() {
    assert!(matches!(Config::from_toml("").unwrap().registry, RegistryConfig::None));
    let config = Config::from_toml("[registry]\nkind = \"etcd\"\nendpoints = [\"http://127.0.0.1:2379\"]\n").unwrap();
    let RegistryConfig::Etcd(etcd) = config.registry else { panic!("etcd") };
    assert_eq!(etcd.services, ["augur"]);
    assert_eq!(etcd.lease_ttl_s, 10);
}

#[cfg(feature = "etcd")]
#[test]
fn registry_validation_names_the_key() {
    let etcd = "[registry]\nkind = \"etcd\"\nendpoints = [\"http://127.0.0.1:2379\"]\n";
    let err = |toml: &str| Config::from_toml(toml).unwrap_err().to_string();
    let e = err(&format!("{etcd}services = [\"augur\", \"augur-canary\"]\n"));
    assert!(e.contains("`registry.services[0]`") && e.contains("prefix"), "{e}");
    let e = err(&format!("[server]\nlisten = \"0.0.0.0:50051\"\n{etcd}"));
    assert!(e.contains("`registry.advertise`") && e.contains("required"), "{e}");
    let e = err(&format!("[server]\nlisten = \"127.0.0.1:0\"\n{etcd}"));
    assert!(e.contains("`registry.advertise`"), "{e}");
    let e = err(&format!("{etcd}advertise = \"10.0.0.7\"\n"));
    assert!(e.contains("`registry.advertise`"), "{e}");
    let e = err(&format!("{etcd}lease_ttl_s = 1\n"));
    assert!(e.contains("`registry.lease_ttl_s`"), "{e}");
    let e = err("[registry]\nkind = \"etcd\"\nendpoints = []\n");
    assert!(e.contains("`registry.endpoints`"), "{e}");
    Config::from_toml(&format!("[server]\nlisten = \"0.0.0.0:50051\"\n{etcd}advertise = \"10.0.0.7:50051\"\n"))
        .expect("advertise given");
}

#[test]
fn embedded_default_parses_and_validates() {
    let config = Config::from_toml("").expect("default config");
    assert_eq!(config.scenes[0].name, "ranking");
    assert_eq!(config.model.inference_threads, 1);
    assert!(config.admin.enabled);
    assert!(config.admin.listen.ip().is_loopback(), "/metrics is unauthenticated: loopback by default");
    assert!(config.admin.grpc_listen.ip().is_loopback(), "ModelAdmin changes serving: loopback by default");
    assert_eq!(config.admin.grpc_listen.port(), 50052);
    assert_eq!(config.admin.auth_token, None);
    assert_eq!(config.log.format, LogFormat::Human);
    assert_eq!(config.log.level, DEFAULT_LOG_LEVEL);
}

#[test]
fn admin_and_log_sections_parse() {
    let config = Config::from_toml(
        "[admin]\nlisten = \"0.0.0.0:0\"\nenabled = false\n[log]\nformat = \"json\"\nlevel = \"debug\"\n",
    )
    .expect("config");
    assert!(!config.admin.enabled);
    assert_eq!(config.admin.listen.port(), 0);
    assert_eq!(config.log.format, LogFormat::Json);
    assert_eq!(config.log.level, "debug");
    assert!(Config::from_toml("[log]\nformat = \"xml\"\n").is_err());
    let grpc = Config::from_toml("[admin]\ngrpc_listen = \"127.0.0.1:0\"\nauth_token = \"s3cret\"\n").expect("config");
    assert_eq!((grpc.admin.grpc_listen.port(), grpc.admin.auth_token.as_deref()), (0, Some("s3cret")));
    let e = Config::from_toml("[admin]\ngrpc_listen = \"127.0.0.1:50051\"\n").unwrap_err().to_string();
    assert!(e.contains("admin.grpc_listen") && e.contains("server.listen"), "{e}");
    let e = Config::from_toml("[admin]\ngrpc_listen = \"0.0.0.0:9090\"\n").unwrap_err().to_string();
    assert!(e.contains("admin.grpc_listen") && e.contains("admin.listen"), "{e}");
    assert!(Config::from_toml("[admin]\nauth_token = \"a b\"\n").unwrap_err().to_string().contains("admin.auth_token"));
    assert!(Config::from_toml("[log]\nlevel = \" \"\n").is_err());
}

#[test]
fn redis_store_parses_over_the_memory_defaults_and_validates() {
    let config = Config::from_toml(
        "[store]\nkind = \"redis\"\nurls = [\"redis://127.0.0.1:7000\"]\n\
         [store.cache.tables.items]\nmax_entries = 1000\n",
    )
    .expect("redis config");
    let StoreConfig::Redis(redis) = &config.store else { panic!("{:?}", config.store) };
    assert_eq!((redis.timeout_ms, redis.namespace.as_str(), redis.cluster), (50, "augur", false));
    assert_eq!(redis.key_template.with_namespace("augur").key("t", "1"), "augur:t:1");
    assert_eq!(redis.cache.tables["items"].max_entries, 1000);
    assert_eq!(redis.cache.tables["items"].negative_ttl_ms, 5_000);
    assert_eq!(redis.tables.len(), 3, "the embedded tables stay as load defaults");

    for (toml, key) in [
        ("timeout_ms = 0", "store.timeout_ms"),
        ("connections = 0", "store.connections"),
        ("connections = 65", "store.connections"),
        ("urls = [\"redis://a:1\", \"redis://b:1\"]", "store.urls"),
        ("urls = [\"http://x\"]", "store.urls[0]"),
        ("key_template = \"{namespace}:{id}\"", "store.key_template"),
        ("[store.cache.tables.items]\nttl_ms = 100\nnegative_ttl_ms = 200", "store.cache.tables.items.negative_ttl_ms"),
    ] {
        let err = Config::from_toml(&format!("[store]\nkind = \"redis\"\n{toml}\n")).unwrap_err();
        assert!(err.to_string().contains(key), "{toml}: {err}");
    }
    let err = Config::from_toml("[store]\nkind = \"redis\"\ntimeout = 5\n").unwrap_err();
    assert!(err.to_string().contains("timeout"), "{err}");
    let config =
        Config::from_toml("[store]\nkind = \"redis\"\ncluster = true\nurls = [\"redis://a:1\", \"redis://b:1\"]\n");
    assert!(config.is_ok(), "{config:?}");
}

#[test]
fn key_template_placeholders_and_escapes() {
    let t = KeyTemplate::parse("{namespace}:{table}:{id}").unwrap().with_namespace("augur");
    assert_eq!(t.key("items", "i42"), "augur:items:i42");
    let t = KeyTemplate::parse("{namespace}:{table}:{{{id}}}").unwrap().with_namespace("ns");
    assert_eq!(t.key("users", "u1"), "ns:users:{u1}");
    for bad in ["{table}", "{id}", "{table}:{id", "{table}:{idd}", "{table}}:{id}"] {
        assert!(KeyTemplate::parse(bad).is_err(), "{bad} must be rejected");
    }
}

#[test]
fn passwords_in_urls_are_redacted() {
    assert_eq!(redact_url("redis://user:s3cret@10.0.0.5:6379/0"), "redis://user:***@10.0.0.5:6379/0");
    assert_eq!(redact_url("rediss://:s3cret@host:6380"), "rediss://:***@host:6380");
    assert_eq!(redact_url("redis://10.0.0.5:6379"), "redis://10.0.0.5:6379");
    assert_eq!(redact_url("redis://user@host:1/a@b"), "redis://user@host:1/a@b");
    // A bad URL in the config is reported without its password.
    let err = Config::from_toml("[store]\nkind = \"redis\"\nurls = [\"redis://u:s3cret@host:notaport\"]\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("store.urls[0]") && !err.contains("s3cret"), "{err}");
}

#[test]
fn unknown_key_is_rejected_by_name() {
    let err = Config::from_toml("[server]\nlisten = \"127.0.0.1:0\"\nmax_candidatez = 3\n").unwrap_err();
    assert!(err.to_string().contains("max_candidatez"), "{err}");
}

#[test]
fn out_of_range_value_names_the_key() {
    let err = Config::from_toml("[model]\nqueue_capacity = 0\n").unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("model.queue_capacity") && msg.contains("got 0"), "{msg}");
}

#[test]
fn load_priority_defaults_to_idle_and_names_its_key_when_bad() {
    let defaults = Config::from_toml("").unwrap();
    assert_eq!((defaults.model.load_priority, defaults.model.load_idle_limit_ms), (LoadPriority::Idle, 30_000));
    let low = Config::from_toml("[model]\nload_priority = \"low\"\n").unwrap();
    assert_eq!(low.model.load_priority, LoadPriority::Low);
    let zero = Config::from_toml("[model]\nload_idle_limit_ms = 0\n").unwrap_err().to_string();
    assert!(zero.contains("model.load_idle_limit_ms"), "{zero}");
    let err = Config::from_toml("[model]\nload_priority = \"realtime\"\n").unwrap_err().to_string();
    assert!(err.contains("load_priority") && err.contains("realtime"), "{err}");
}

#[cfg(feature = "bucket")]
#[test]
fn bucket_source_defaults_apply_and_bad_values_name_their_key() {
    let scene = "[[scenes]]\nname = \"ranking\"\nspec = \"features/ranking.yaml\"\nmodel = \"models/ranking\"\n";
    let config = Config::from_toml(&format!("{scene}source = {{ url = \"s3://b/deploy\" }}\n")).unwrap();
    let source = config.scenes[0].source.as_ref().expect("source parsed");
    assert_eq!((source.poll_interval_ms, source.allow_http, source.keep_versions), (30_000, false, 5));
    assert!(source.jitter > 0.0 && source.max_version_bytes > 0);
    for (bad, key) in [
        ("source = { url = \"http://b/x\" }", "scenes[0].source.url"),
        ("source = { url = \"s3:///x\" }", "scenes[0].source.url"),
        ("source = { url = \"s3://b\", jitter = 2.0 }", "scenes[0].source.jitter"),
        ("source = { url = \"s3://b\", poll_interval_ms = 0 }", "scenes[0].source.poll_interval_ms"),
    ] {
        let err = Config::from_toml(&format!("{scene}{bad}\n")).unwrap_err().to_string();
        assert!(err.contains(key), "{bad}: {err}");
    }
}

/// A build without one of the heavy integrations refuses, at start-up and naming the key, the
/// config that would need it; with the feature the same config passes validation.
#[test]
fn a_feature_left_out_of_the_build_is_refused_naming_its_key() {
    let scene_with_source = "[[scenes]]\nname = \"ranking\"\nspec = \"features/ranking.yaml\"\n\
                             model = \"models/ranking\"\nsource = { url = \"s3://models/deploy\" }\n";
    let cases = [
        (
            "kafka",
            cfg!(feature = "kafka"),
            "[samples]\nenabled = true\n[[samples.sinks]]\nkind = \"kafka\"\nbrokers = \"127.0.0.1:9092\"\ntopic = \"s\"\n",
            "samples.sinks[0].kind",
        ),
        ("bucket", cfg!(feature = "bucket"), scene_with_source, "scenes[0].source"),
        (
            "etcd",
            cfg!(feature = "etcd"),
            "[registry]\nkind = \"etcd\"\nendpoints = [\"http://127.0.0.1:2379\"]\nadvertise = \"10.0.0.1:50051\"\n",
            "registry.kind",
        ),
        ("otel", cfg!(feature = "otel"), "[trace]\notlp_endpoint = \"http://127.0.0.1:4317\"\n", "trace.otlp_endpoint"),
    ];
    for (feature, built, toml, key) in cases {
        match Config::from_toml(toml) {
            Ok(_) => assert!(built, "{feature}: accepted without the feature"),
            Err(e) => {
                assert!(!built, "{feature}: refused with the feature: {e}");
                let text = e.to_string();
                assert!(text.contains(key) && text.contains(&format!("`{feature}` feature")), "{text}");
            }
        }
    }
}

#[cfg(feature = "parquet")]
#[test]
fn feature_history_is_off_by_default_and_its_validation_names_the_key() {
    let history = Config::from_toml("").unwrap().feature_history;
    assert_eq!(history.active_dir(), None);
    let on = Config::from_toml("[feature_history]\ndir = \"h\"\n").unwrap().feature_history;
    assert_eq!(on.active_dir(), Some(Path::new("h")));
    let off = Config::from_toml("[feature_history]\ndir = \"h\"\nenabled = false\n").unwrap().feature_history;
    assert_eq!(off.active_dir(), None);
    let err =
        |toml: &str| Config::from_toml(&format!("[feature_history]\ndir = \"h\"\n{toml}")).unwrap_err().to_string();
    assert!(err("roll_interval_ms = 10\n").contains("`feature_history.roll_interval_ms`"));
    assert!(err("max_rows_per_part = 0\n").contains("`feature_history.max_rows_per_part`"));
    let e = err("max_rows_per_part = 10\nmax_uncommitted_rows = 5\n");
    assert!(e.contains("`feature_history.max_uncommitted_rows`"), "{e}");
    #[cfg(feature = "kafka")]
    {
        let stream = "[[feature_streams]]\nname = \"s\"\nbrokers = \"b:1\"\ntopic = \"t\"\nmax_batch = 500\n";
        let e = err(&format!("max_rows_per_part = 10\nmax_uncommitted_rows = 100\n{stream}"));
        assert!(
            e.contains("`feature_history.max_uncommitted_rows`") && e.contains("feature_streams[0].max_batch"),
            "{e}"
        );
    }
    assert!(Config::from_toml("[feature_history]\ndirectory = \"h\"\n").is_err(), "unknown keys are refused");
}

/// Without the `parquet` feature there is no changelog: a configured one is refused, naming it.
#[cfg(not(feature = "parquet"))]
#[test]
fn a_build_without_parquet_refuses_feature_history() {
    let err = Config::from_toml("[feature_history]\ndir = \"h\"\n").unwrap_err().to_string();
    assert!(err.contains("`feature_history.dir`") && err.contains("parquet"), "{err}");
    Config::from_toml("[feature_history]\ndir = \"h\"\nenabled = false\n").unwrap();
}
