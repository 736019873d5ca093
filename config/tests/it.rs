//! Settings as users meet them: the printed defaults load back, each layer
//! overrides the one before, unknown keys name themselves and their file,
//! the seed's keys and `POLYGON_RELAY_SOCKET` work, validation lists every
//! problem, and hot reload applies a good edit and keeps the last good
//! settings on a bad one. Environment variables are set inside
//! `figment::Jail`, which serialises the tests that touch them.

#![allow(clippy::unwrap_used, clippy::result_large_err, reason = "a failed unwrap is a failed test")]

use std::path::Path;
use std::time::Duration;

use figment::Jail;
use myc_config::{Error, Settings, Sources, Span, Stage, Watched, load};

#[test]
fn the_printed_default_parses_validates_and_equals_the_default() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("myc.toml");
    std::fs::write(&file, Settings::default().to_toml().unwrap()).unwrap();
    let mut loaded = load(&Sources::file_only(&file)).unwrap();
    // Rollout and report paths are resolved beside the file; everything else is the default.
    assert_eq!(loaded.rollout.file, dir.path().join("rollout.toml"));
    assert_eq!(loaded.console.reports_dir, dir.path().join("reports"));
    assert_eq!(loaded.broker.spool_dir, dir.path().join("spool"));
    loaded.rollout = Settings::default().rollout;
    loaded.console.reports_dir = Settings::default().console.reports_dir;
    loaded.broker.spool_dir = Settings::default().broker.spool_dir;
    assert_eq!(loaded, Settings::default());
}

#[test]
fn an_empty_file_is_the_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("empty.toml");
    std::fs::write(&file, "").unwrap();
    let mut broker = load(&Sources::file_only(&file)).unwrap().broker;
    assert_eq!(broker.spool_dir, dir.path().join("spool"), "the spool lives beside the file");
    broker.spool_dir = Settings::default().broker.spool_dir;
    assert_eq!(broker, Settings::default().broker);
}

#[test]
fn spool_and_breaker_keys_parse_into_types_and_bad_values_name_their_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("myc.toml");
    std::fs::write(
        &file,
        "[broker]\nspool = \"always\"\nspool_dir = \"/var/spool/myc\"\nspool_max_bytes = 2147483648\n\
         spool_fsync = \"0ms\"\nbreaker_failures = 0\nbreaker_open_for = \"250ms\"\n",
    )
    .unwrap();
    let broker = load(&Sources::file_only(&file)).unwrap().broker;
    assert_eq!(broker.spool, myc_config::SpoolMode::Always);
    assert_eq!(broker.spool_dir, Path::new("/var/spool/myc"), "an absolute directory stays as written");
    assert_eq!((broker.spool_max_bytes, broker.spool_fsync), (2 << 30, Span::from_millis(0)));
    assert_eq!((broker.breaker_failures, broker.breaker_open_for), (0, Span::from_millis(250)));

    std::fs::write(&file, "[broker]\nspool = \"sometimes\"\n").unwrap();
    let Err(Error::Parse(message)) = load(&Sources::file_only(&file)) else { panic!("an unknown mode parses") };
    assert!(message.contains("spool"), "{message}");

    std::fs::write(&file, "[broker]\nspool = \"overflow\"\nspool_max_bytes = 10\nbreaker_open_for = \"0ms\"\n")
        .unwrap();
    let Err(Error::Invalid(problems)) = load(&Sources::file_only(&file)) else { panic!("must be invalid") };
    let all = problems.join("\n");
    for key in ["broker.spool_max_bytes", "broker.breaker_open_for"] {
        assert!(all.contains(key), "{key} missing from:\n{all}");
    }
}

#[test]
fn each_layer_overrides_the_one_before() {
    Jail::expect_with(|jail| {
        jail.create_file(
            "myc.toml",
            "[broker]\nendpoint = \"unix:/from/file.sock\"\nmax_reconnects = 7\n[topics]\nmarket_data = \"md\"\n",
        )?;
        let file = jail.directory().join("myc.toml");
        let sources = Sources::discover(Some(file.clone()));
        let from_file = load(&sources).unwrap();
        assert_eq!(from_file.broker.endpoint, "unix:/from/file.sock");
        assert_eq!((from_file.broker.max_reconnects, from_file.topics.market_data.as_str()), (7, "md"));
        assert_eq!(from_file.topics.signal, "signals", "keys the file leaves alone keep their defaults");

        jail.set_env("MYC_BROKER__ENDPOINT", "unix:/from/env.sock");
        jail.set_env("MYC_GATE__MAX_AGE", "2h");
        jail.set_env("MYC_CONFIG", file.display().to_string());
        let from_env = load(&sources).unwrap();
        assert_eq!(from_env.broker.endpoint, "unix:/from/env.sock");
        assert_eq!(from_env.broker.max_reconnects, 7);
        assert_eq!(from_env.gate.max_age, Span::from_secs(7200));

        let from_cli = load(&sources.clone().with_override("broker.endpoint", "tcp:127.0.0.1:4000")).unwrap();
        assert_eq!(from_cli.broker.endpoint, "tcp:127.0.0.1:4000");
        Ok(())
    });
}

#[test]
fn unknown_keys_are_errors_naming_the_key_and_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("typo.toml");
    std::fs::write(&file, "[broker]\nendpont = \"unix:/x.sock\"\n").unwrap();
    let Err(Error::Parse(message)) = load(&Sources::file_only(&file)) else { panic!("a typo must be refused") };
    assert!(message.contains("endpont"), "{message}");
    assert!(message.contains(&file.display().to_string()), "{message}");

    std::fs::write(&file, "[brokr]\n").unwrap();
    let Err(Error::Parse(message)) = load(&Sources::file_only(&file)) else {
        panic!("an unknown table must be refused")
    };
    assert!(message.contains("brokr"), "{message}");
}

#[test]
fn a_mistyped_value_names_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, "[gate]\nmax_age = \"soon\"\nmin_messages = \"many\"\n").unwrap();
    let Err(Error::Parse(message)) = load(&Sources::file_only(&file)) else { panic!("must be refused") };
    assert!(message.contains("gate."), "{message}");
}

#[test]
fn the_seed_compatibility_keys_and_polygon_relay_socket_work() {
    Jail::expect_with(|jail| {
        jail.create_file(
            "seed.toml",
            "[broker]\nsocket_path = \"/run/mycelium.sock\"\nconnection_timeout_ms = 750\n\
             max_reconnects = 3\nretry_backoff_ms = 20\n",
        )?;
        jail.set_env("POLYGON_RELAY_SOCKET", "/run/polygon.sock");
        let settings = load(&Sources::discover(Some(jail.directory().join("seed.toml")))).unwrap();
        assert_eq!(settings.broker.endpoint, "unix:/run/mycelium.sock");
        assert_eq!(settings.broker.connect_timeout, Span::from_millis(750));
        assert_eq!(settings.broker.backoff_initial, Span::from_millis(20));
        assert_eq!(settings.broker.max_reconnects, 3);
        assert_eq!(settings.relay.market_data, Path::new("/run/polygon.sock"));
        assert!(settings.broker.socket_path.is_none(), "folded into endpoint");
        Ok(())
    });
}

#[test]
fn validation_reports_every_problem_with_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("invalid.toml");
    std::fs::write(
        &file,
        "[broker]\nendpoint = \"mycelium.sock\"\n\
         [topics]\nmarket_data = \"Market/Data\"\n[services.feed]\nsource = 0\n\
         [services.\"a');alert(1);('\"]\nsource = 7\n",
    )
    .unwrap();
    let Err(Error::Invalid(problems)) = load(&Sources::file_only(&file)) else { panic!("must be invalid") };
    let all = problems.join("\n");
    for key in ["broker.endpoint", "topics.market_data", "services.feed.source", "is not a service name"] {
        assert!(all.contains(key), "{key} missing from:\n{all}");
    }
    assert_eq!(problems.len(), 4, "{all}");
    // Parsing alone accepts it: validation is a separate step.
    assert!(myc_config::parse(&Sources::file_only(&file)).is_ok());
}

#[test]
fn an_unknown_policy_is_refused_when_parsed_naming_the_key_and_the_choices() {
    let dir = tempfile::tempdir().unwrap();
    for (text, key, choice) in [
        ("[broker]\nbuffer_policy = \"sometimes\"\n", "buffer_policy", "drop_newest"),
        ("[broker.server]\nslow_consumer = \"Disconnect\"\n", "slow_consumer", "drop_new"),
        ("[relay_server]\npolicy = \"drop_new\"\n", "policy", "drop_oldest"),
    ] {
        let file = dir.path().join("policy.toml");
        std::fs::write(&file, text).unwrap();
        let Err(Error::Parse(message)) = myc_config::parse(&Sources::file_only(&file)) else {
            panic!("{text:?} must not parse")
        };
        assert!(message.contains(key) && message.contains(choice), "{text:?}: {message}");
    }
}

#[test]
fn a_missing_file_is_an_error_naming_it() {
    let error = load(&Sources::file_only(Path::new("/nonexistent/myc.toml"))).unwrap_err();
    assert_eq!(error.to_string(), "settings file /nonexistent/myc.toml not found");
}

#[test]
fn stages_walk_forward_and_back() {
    assert_eq!(Stage::Relay.next(), Some(Stage::DualRelayPrimary));
    assert_eq!(Stage::Broker.next(), None);
    assert_eq!(Stage::DualBrokerPrimary.previous(), Some(Stage::DualRelayPrimary));
    assert_eq!(Stage::Relay.previous(), None);
    for stage in Stage::ALL {
        assert_eq!(Stage::from_name(stage.name()), Some(stage));
    }
}

#[tokio::test]
async fn hot_reload_applies_a_good_edit_within_a_second_and_keeps_the_last_good_on_a_bad_one() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("myc.toml");
    std::fs::write(&file, "[gate]\nmin_messages = 100\n").unwrap();
    let loader_file = file.clone();
    let watched = Watched::start(&file, move || load(&Sources::file_only(&loader_file))).unwrap();
    assert_eq!(watched.current().gate.min_messages, 100);
    let mut changes = watched.subscribe();

    // A good edit, written the way editors do: a new file renamed over the old.
    let scratch = dir.path().join(".myc.toml.swp");
    std::fs::write(&scratch, "[gate]\nmin_messages = 200\n").unwrap();
    std::fs::rename(&scratch, &file).unwrap();
    tokio::time::timeout(Duration::from_secs(1), changes.changed()).await.unwrap().unwrap();
    assert_eq!(watched.current().gate.min_messages, 200);

    // A bad edit: refused, counted, and the last good settings stay.
    std::fs::write(&file, "[gate]\nmin_messages = 0\n").unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while watched.counts().rejected.get() == 0 {
        assert!(tokio::time::Instant::now() < deadline, "the bad edit was never seen");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(watched.current().gate.min_messages, 200);
    assert!(!changes.has_changed().unwrap());

    // And a good edit after it is applied again.
    std::fs::write(&file, "[gate]\nmin_messages = 300\n").unwrap();
    tokio::time::timeout(Duration::from_secs(1), changes.changed()).await.unwrap().unwrap();
    assert_eq!(watched.current().gate.min_messages, 300);
}

#[test]
fn a_broker_max_frame_over_the_protocols_16_mib_is_refused_and_16_mib_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("frame.toml");
    std::fs::write(&file, "[broker.server]\nmax_frame = 100000000\n").unwrap();
    let Err(Error::Invalid(problems)) = load(&Sources::file_only(&file)) else { panic!("must be refused") };
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].contains("broker.server.max_frame") && problems[0].contains("16 MiB"), "{problems:?}");
    std::fs::write(&file, "[broker.server]\nmax_frame = 16777216\n").unwrap();
    assert_eq!(load(&Sources::file_only(&file)).unwrap().broker.server.max_frame, 16 * 1024 * 1024);
}

#[test]
fn socket_modes_are_octal_and_never_world_writable() {
    assert_eq!(myc_config::socket_mode("0640"), Some(0o640));
    assert_eq!(myc_config::socket_mode("0666"), None, "world-writable");
    assert_eq!(myc_config::socket_mode("rw-rw----"), None);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("open.toml");
    std::fs::write(&file, "[broker.server]\nsocket_mode = \"0666\"\nsocket_group = 1000\n").unwrap();
    let Err(Error::Invalid(problems)) = load(&Sources::file_only(&file)) else { panic!("must be refused") };
    assert!(problems.join("\n").contains("broker.server.socket_mode"), "{problems:?}");
}

#[test]
fn a_scrape_target_that_is_not_an_http_url_is_refused_with_its_index() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("scrape.toml");
    std::fs::write(
        &file,
        "[console]\nscrape = [\"http://127.0.0.1:9466/metrics\", \"127.0.0.1:19466\", \"https://h:1/m\", \"http://h/metrics\", \"http://h:9466\"]\n",
    )
    .unwrap();
    let Err(Error::Invalid(problems)) = load(&Sources::file_only(&file)) else { panic!("must be invalid") };
    let all = problems.join("\n");
    for index in 1..=4 {
        assert!(all.contains(&format!("console.scrape[{index}]")), "[{index}] missing from:\n{all}");
    }
    assert!(!all.contains("console.scrape[0]"), "{all}");
    assert!(all.contains("http://127.0.0.1:9466/metrics"), "the message shows the expected form:\n{all}");
}

#[test]
fn nats_stream_replicas_outside_one_to_five_are_explained() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("nats.toml");
    std::fs::write(&file, "[nats]\nreplicas = 7\nmax_bytes = 1073741824\nmax_age = \"24h\"\n").unwrap();
    let Err(Error::Invalid(problems)) = load(&Sources::file_only(&file)) else { panic!("must be invalid") };
    let all = problems.join("\n");
    assert!(all.contains("nats.replicas") && all.contains("1 to 5") && all.contains("three-node"), "{all}");
    assert_eq!(problems.len(), 1, "max_bytes and max_age are fine: {all}");
}

#[test]
fn guard_settings_default_as_documented_and_nonsense_is_refused_by_key() {
    let guard = Settings::default().guard;
    assert!(!guard.enabled && guard.targets.is_empty());
    assert_eq!((guard.interval, guard.window, guard.min_messages), (Span::from_secs(5), Span::from_secs(30), 1000));
    assert_eq!((guard.max_failed_ratio.get(), guard.max_error_increase.get()), (0.001, 2.0));
    assert_eq!((guard.max_shadow_dropped_ratio.get(), guard.max_rss_increase.get()), (0.01, 1.5));
    assert_eq!((guard.verify_every, guard.verify_for), (Span::from_secs(0), Span::from_secs(10)));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("guard.toml");
    std::fs::write(
        &file,
        "[guard]\ninterval = \"0s\"\nwindow = \"1s\"\nmax_failed_ratio = -0.5\nmax_rss_increase = nan\n\
         verify_every = \"1m\"\nverify_for = \"0s\"\ntargets = [\"127.0.0.1:9466\"]\n",
    )
    .unwrap();
    let Err(Error::Invalid(problems)) = load(&Sources::file_only(&file)) else { panic!("must be invalid") };
    let all = problems.join("\n");
    for key in
        ["guard.interval", "guard.max_failed_ratio", "guard.max_rss_increase", "guard.verify_for", "guard.targets[0]"]
    {
        assert!(all.contains(&format!("`{key}`")), "{key} missing from:\n{all}");
    }
    std::fs::write(&file, "[guard]\ninterval = \"10s\"\nwindow = \"5s\"\n").unwrap();
    let Err(Error::Invalid(problems)) = load(&Sources::file_only(&file)) else { panic!("must be invalid") };
    assert!(problems.join("\n").contains("`guard.window`: 5s is shorter than guard.interval (10s)"), "{problems:?}");
}

#[test]
fn an_acl_name_without_token_or_uids_is_warned_about_and_bound_ones_are_not() {
    let settings = myc_config::load_str(
        r#"
        [acl.clients.open_feed]
        publish = ["market_data"]
        [acl.clients.trusted_feed]
        publish = ["market_data"]
        token = "s3cret"
        [acl.clients.ops_tool]
        subscribe = ["*"]
        uids = [1001, 1002]
        [feeds.kraken]
        max_books = 50
        "#,
    )
    .unwrap();
    let warnings = settings.warnings();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("acl.clients.open_feed") && warnings[0].contains("any client"), "{warnings:?}");
    assert_eq!(settings.acl.clients["ops_tool"].uids, [1001, 1002]);
    assert_eq!(settings.feeds["kraken"].max_books, 50);
    assert_eq!(settings.feeds["kraken"].book_depth, 10, "unset keys of a feed keep their defaults");
    assert_eq!(Settings::default().feeds["kraken"].max_books, 1024);
}

#[test]
fn console_tokens_that_are_empty_shared_or_badly_named_are_refused_without_quoting_them() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens.toml");
    std::fs::write(
        &file,
        "[console]\ntoken = \"s3cret-shared\"\n[console.tokens]\nalice = \"s3cret-alice\"\nbob = \"\"\ncarol = \"s3cret-alice\"\n\
         dave = \"s3cret-shared\"\n\"e v\" = \"s3cret-eve\"\nfrank = \"s3cret-frank\"\n",
    )
    .unwrap();
    let Err(Error::Invalid(problems)) = load(&Sources::file_only(&file)) else { panic!("must be invalid") };
    let all = problems.join("\n");
    assert!(all.contains("`console.tokens.bob`: the token is empty"), "{all}");
    assert!(all.contains("`console.tokens.carol`: has the same token as `console.tokens.alice`"), "{all}");
    assert!(all.contains("`console.tokens.dave`: has the same token as `console.token`"), "{all}");
    assert!(all.contains("`console.tokens.e v`: a token's name is"), "{all}");
    assert_eq!(problems.len(), 4, "alice and frank are fine: {all}");
    assert!(!all.contains("s3cret"), "no secret is quoted back: {all}");
}
