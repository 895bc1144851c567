// Migrations and templates are compiled into the binary: rebuild when they change.
// `PAYMALL_TEST_POSTGRES=1` (set by scripts/test when a server runs) builds the PostgreSQL
// variants of the tests to run; without it they are listed as ignored, with the reason.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
    println!("cargo:rerun-if-changed=templates");
    println!("cargo:rerun-if-env-changed=PAYMALL_TEST_POSTGRES");
    println!("cargo::rustc-check-cfg=cfg(paymall_postgres_tests)");
    if std::env::var("PAYMALL_TEST_POSTGRES").as_deref() == Ok("1") {
        println!("cargo:rustc-cfg=paymall_postgres_tests");
    }
}
