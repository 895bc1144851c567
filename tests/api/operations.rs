//! Start-up, configuration, health and migrations: what an operator relies on.

use std::process::Command;

use crate::helpers::{Backend, TestApp, TestDatabase, both_backends, config_dir, environment};
use paymall::config::Settings;
use paymall::db;

fn health_and_readiness_answer(backend: Backend) {
    let app = TestApp::spawn(backend);
    let mut browser = app.browser();
    let health = browser.get("/healthz");
    assert_eq!((health.status, health.body.as_str()), (200, "ok"));
    let ready = browser.get("/readyz");
    assert_eq!((ready.status, ready.body.as_str()), (200, "ready"));
}

fn migrations_run_twice_are_a_no_op(backend: Backend) {
    let database = TestDatabase::new(backend);
    let location = database.location();
    let first = db::prepare(&location).expect("first migration run");
    assert!(first >= 2, "the first run applies every migration, got {first}");
    assert_eq!(db::prepare(&location).expect("second migration run"), 0);
}

fn instances_starting_together_migrate_once(backend: Backend) {
    let database = TestDatabase::new(backend);
    let location = database.location();
    let applied: Vec<usize> = std::thread::scope(|s| {
        let runs: Vec<_> =
            (0..3).map(|_| s.spawn(|| db::prepare(&location).expect("concurrent migration"))).collect();
        runs.into_iter().map(|r| r.join().expect("thread")).collect()
    });
    assert_eq!(applied.iter().filter(|n| **n > 0).count(), 1, "{applied:?}");
}

both_backends!(
    health_and_readiness_answer,
    migrations_run_twice_are_a_no_op,
    instances_starting_together_migrate_once
);

#[test]
fn a_malformed_value_names_its_key() {
    let err =
        Settings::load_from(&config_dir(), None, environment(&[("PAYMALL__DATABASE__POOL_SIZE", "many")]))
            .expect_err("a pool size of 'many' is refused");
    assert!(err.to_string().contains("database.pool_size"), "{err}");
}

#[test]
fn an_unknown_key_is_refused() {
    let err = Settings::load_from(&config_dir(), None, environment(&[("PAYMALL__SERVER__PROT", "1")]))
        .expect_err("a misspelt key is refused");
    assert!(err.to_string().contains("prot"), "{err}");
}

#[test]
fn environment_variables_override_the_files() {
    let settings = Settings::load_from(
        &config_dir(),
        Some("prod"),
        environment(&[("PAYMALL__ALIPAY__APP_ID", "2021001"), ("PAYMALL__SERVER__BIND", "127.0.0.1:9999")]),
    );
    // prod.toml turns the sandbox off, so the still-missing credentials are named.
    let err = settings.expect_err("prod needs real credentials");
    assert!(err.to_string().contains("weixin.app_id"), "{err}");

    let settings =
        Settings::load_from(&config_dir(), None, environment(&[("PAYMALL__SERVER__BIND", "127.0.0.1:9999")]))
            .expect("defaults with an override");
    assert_eq!(settings.server.bind, "127.0.0.1:9999");
    assert!(settings.sandbox.enabled);
    assert!(settings.server.trusted_proxies.is_empty());

    let proxies = environment(&[("PAYMALL__SERVER__TRUSTED_PROXIES", "172.30.0.10,::1")]);
    let settings = Settings::load_from(&config_dir(), None, proxies).expect("a list from the environment");
    let expected: Vec<std::net::IpAddr> = vec!["172.30.0.10".parse().unwrap(), "::1".parse().unwrap()];
    assert_eq!(settings.server.trusted_proxies, expected);
}

fn run_binary(extra_env: &[(&str, &str)]) -> (bool, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut command = Command::new(env!("CARGO_BIN_EXE_paymall"));
    command.arg("migrate").current_dir(env!("CARGO_MANIFEST_DIR")).env("RUST_LOG", "info");
    for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("PAYMALL")) {
        command.env_remove(key);
    }
    command.env("PAYMALL__DATABASE__URL", format!("sqlite://{}", dir.path().join("x.db").display()));
    command.envs(extra_env.iter().copied());
    let output = command.output().expect("run paymall");
    (output.status.success(), String::from_utf8_lossy(&output.stderr).into_owned())
}

#[test]
fn bad_config_stops_the_binary_with_the_key_named() {
    let (ok, stderr) = run_binary(&[("PAYMALL__DATABASE__POOL_SIZE", "-3")]);
    assert!(!ok, "must exit non-zero");
    assert!(stderr.contains("database.pool_size"), "{stderr}");
}

#[test]
fn dead_database_stops_the_binary_with_the_real_reason() {
    let (ok, stderr) =
        run_binary(&[("PAYMALL__DATABASE__URL", "postgres://paymall:hunter2@127.0.0.1:1/paymall")]);
    assert!(!ok, "must exit non-zero");
    assert!(stderr.contains("PostgreSQL"), "{stderr}");
    assert!(stderr.to_lowercase().contains("connect"), "{stderr}");
    assert!(!stderr.contains("Invalid connection url"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "the password must not be logged: {stderr}");
}

#[test]
fn migrate_subcommand_migrates_and_exits() {
    let (ok, stderr) = run_binary(&[]);
    assert!(ok, "{stderr}");
    assert!(stderr.contains("migrations applied"), "{stderr}");
}

#[test]
fn prod_refuses_to_start_without_an_admin_password() {
    let prod_credentials = [
        ("PAYMALL__WEIXIN__APP_ID", "wx1"),
        ("PAYMALL__WEIXIN__APP_SECRET", "s"),
        ("PAYMALL__WEIXIN__TOKEN", "t"),
        ("PAYMALL__ALIPAY__APP_ID", "2021"),
        ("PAYMALL__ALIPAY__SELLER_ID", "2088"),
        ("PAYMALL__SANDBOX__ENABLED", "true"),
        // The sandbox stays on loopback (see `sandbox.allow_public`).
        ("PAYMALL__SERVER__BIND", "127.0.0.1:8080"),
    ];
    let err = Settings::load_from(&config_dir(), Some("prod"), environment(&prod_credentials))
        .expect_err("no password");
    assert!(err.to_string().contains("admin.password"), "{err}");
    let mut with_password = prod_credentials.to_vec();
    with_password.push(("PAYMALL__ADMIN__PASSWORD", "chosen"));
    assert!(Settings::load_from(&config_dir(), Some("prod"), environment(&with_password)).is_ok());
}
