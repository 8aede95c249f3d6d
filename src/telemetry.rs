//! Logs and traces of the binary: log lines to stderr (`MERIT_LOG_FORMAT`,
//! `MERIT_LOG_FILTER`), and, when `MERIT_OTEL_ENDPOINT` is set, OpenTelemetry spans
//! exported over OTLP/HTTP with the W3C trace-context propagator installed, so that one
//! vote's request, deliveries, actor turns and outbox relay share one trace (see
//! `merit_messages::trace`).
//!
//! Exported: every span of merit's crates at INFO or above (HTTP requests, sagas and their
//! steps) and the per-message spans that are DEBUG so they cost nothing untraced
//! ([`TRACED_SPANS`]). Log events are not exported. The two outputs filter separately:
//! `MERIT_LOG_FILTER` never hides a span from the exporter, nor the reverse.

use std::time::Duration;

use anyhow::{Context, Result};
use merit_config::{LogFormat, Settings};
use opentelemetry::KeyValue;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::{
    propagation::TraceContextPropagator,
    trace::{self, Sampler},
    Resource,
};
use tracing::{Level, Metadata};
use tracing_subscriber::{filter::filter_fn, layer::SubscriberExt, EnvFilter, Layer};

/// DEBUG spans exported when tracing is on: one delivery, one actor turn, one relayed row.
pub(crate) const TRACED_SPANS: [&str; 3] = ["merit.delivery", "actor.turn", "outbox.relay"];

/// Flushes the exporter when dropped (at the end of `merit serve`).
pub(crate) struct Telemetry {
    exporting: bool,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if self.exporting {
            opentelemetry::global::shutdown_tracer_provider();
        }
    }
}

/// Logs only (every command but `serve`).
pub(crate) fn init_logs(settings: &Settings) {
    let registry = tracing_subscriber::registry().with(log_layer(settings));
    let _ = tracing::subscriber::set_global_default(registry);
}

/// Logs, and spans to the OTLP endpoint if one is set. Must run inside the tokio runtime
/// that will export the batches.
pub(crate) fn init(settings: &Settings) -> Result<Telemetry> {
    let Some(endpoint) = &settings.otel.endpoint else {
        init_logs(settings);
        return Ok(Telemetry { exporting: false });
    };
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let ratio = f64::from(settings.otel.sample_percent) / 100.0;
    let tracer = opentelemetry_otlp::new_pipeline()
        .tracing()
        .with_exporter(
            opentelemetry_otlp::new_exporter()
                .http()
                .with_endpoint(endpoint.expose())
                .with_timeout(Duration::from_secs(5)),
        )
        .with_trace_config(
            trace::config()
                // A trace that arrives sampled (a producer's, a front-end's) is kept.
                .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
                    ratio,
                ))))
                .with_resource(Resource::new([
                    KeyValue::new("service.name", "merit"),
                    KeyValue::new("service.instance.id", settings.node_id.clone()),
                ])),
        )
        .install_batch(opentelemetry_sdk::runtime::Tokio)
        .with_context(|| format!("start the OTLP exporter for {}", endpoint.redacted()))?;
    let spans = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_filter(filter_fn(exported));
    let registry = tracing_subscriber::registry()
        .with(log_layer(settings))
        .with(spans);
    let _ = tracing::subscriber::set_global_default(registry);
    tracing::info!(endpoint = %endpoint.redacted(), sample_percent = settings.otel.sample_percent, "exporting traces");
    Ok(Telemetry { exporting: true })
}

/// Whether a span goes to the exporter (see the module docs).
fn exported(meta: &Metadata<'_>) -> bool {
    meta.is_span()
        && meta.target().starts_with("merit")
        && (*meta.level() <= Level::INFO || TRACED_SPANS.contains(&meta.name()))
}

fn log_layer<S>(settings: &Settings) -> Box<dyn Layer<S> + Send + Sync>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    let filter =
        EnvFilter::try_new(&settings.log.filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    match settings.log.format {
        LogFormat::Json => fmt.json().with_filter(filter).boxed(),
        LogFormat::Text => fmt.with_filter(filter).boxed(),
    }
}
