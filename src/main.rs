use std::process::ExitCode;

use paymall::config::Settings;
use paymall::db::{self, DatabaseLocation};
use paymall::startup::Application;

const USAGE: &str = "usage: paymall [serve | migrate]";

fn main() -> ExitCode {
    env_logger::init_from_env(env_logger::Env::new().default_filter_or("info"));
    let command = std::env::args().nth(1).unwrap_or_else(|| "serve".to_owned());
    if !matches!(command.as_str(), "serve" | "migrate") {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    }
    let settings = match Settings::load() {
        Ok(settings) => settings,
        Err(e) => {
            log::error!("{}", with_causes(&e));
            return ExitCode::FAILURE;
        }
    };
    let outcome = if command == "migrate" { migrate(&settings) } else { serve(settings) };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{}", with_causes(e.as_ref()));
            ExitCode::FAILURE
        }
    }
}

fn migrate(settings: &Settings) -> Result<(), Box<dyn std::error::Error>> {
    let location = DatabaseLocation::parse(settings.database.url.expose());
    let applied = db::prepare(&location)?;
    log::info!("{} database {}: {applied} migrations applied", location.backend, location.redacted());
    Ok(())
}

fn serve(settings: Settings) -> Result<(), Box<dyn std::error::Error>> {
    actix_web::rt::System::new().block_on(async move {
        let app = Application::build(settings).await?;
        app.run_until_stopped().await?;
        log::info!("paymall stopped");
        Ok(())
    })
}

/// The error and every cause in its source chain that its message does not already say, logged
/// once, here.
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let said = cause.to_string();
        if !text.contains(&said) {
            text = format!("{text}: {said}");
        }
        source = cause.source();
    }
    text
}
