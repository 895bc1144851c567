use actix_web::{HttpResponse, web};
use diesel::RunQueryDsl;

use crate::state::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(healthz)).route("/readyz", web::get().to(readyz));
}

/// The process is up and serving.
async fn healthz() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("ok")
}

/// The database answers: a load balancer may send traffic here.
async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let answered = state.engine.run(|conn| Ok(diesel::sql_query("SELECT 1").execute(conn)?)).await;
    match answered {
        Ok(_) => HttpResponse::Ok().content_type("text/plain").body("ready"),
        Err(e) => {
            log::warn!("readyz: database not ready: {e}");
            HttpResponse::ServiceUnavailable().content_type("text/plain").body("database unavailable")
        }
    }
}
