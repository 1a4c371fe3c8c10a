//! [`JsonAuditLayer`]: zsp's audit events, received through `tracing`, written as JSON lines.
//!
//! The default audit path is `tracing` (target `zsp::audit`), and with tracing-subscriber's
//! `fmt` layer every field goes through the generic formatting machinery: about 2 µs per
//! request with the request span. This layer takes the same events and writes each as one JSON
//! line with [`JsonLinesAudit`]'s hand-written formatter, for a fraction of that, and it sees
//! every zsp audit event: the verifier's, the inbound layer's, `RequireScopes`' and the
//! broker's.

use std::fmt::Write as _;
use std::io::Write;
use std::sync::Arc;

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

use crate::audit_log::{JsonLinesAudit, decimal, escape_into, unix_millis};

/// The target of zsp's audit events.
const AUDIT_TARGET: &str = "zsp::audit";

/// A tracing-subscriber [`Layer`] that writes every event on target `zsp::audit` as one JSON
/// line: `ts_ms` (milliseconds since the Unix epoch), then the event's fields in order, all
/// escaped as RFC 8259 requires; the event's message is left out. For the verifier's events
/// the line is the one [`JsonLinesAudit`] writes, and the two can share one
/// [`JsonLinesAudit`] ([`from_sink`](Self::from_sink)).
///
/// Lines are buffered like [`JsonLinesAudit`]'s. A layer installed as the global subscriber is
/// never dropped, so nothing flushes its buffer at exit by itself: keep its [`sink`](Self::sink)
/// and flush that at shutdown, or build it [`with_buffer`](Self::with_buffer)`(out, 0)` to write
/// each line as it comes.
///
/// Give it a per-layer filter for the audit target, so that it neither sees nor enables
/// anything else (and the verifier's request span, on `zsp::verify`, is not opened for it):
///
/// ```
/// use tracing_subscriber::{filter::Targets, prelude::*};
/// use zsp_core::audit::{AuditDecision, AuditEvent, JsonAuditLayer};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = std::env::temp_dir().join(format!("zsp-audit-doc-{}", std::process::id()));
/// # std::fs::create_dir_all(&dir)?;
/// let path = dir.join("audit.jsonl");
/// let layer = JsonAuditLayer::new(std::fs::File::create(&path)?);
/// let audit_log = layer.sink(); // to flush at shutdown
/// let subscriber = tracing_subscriber::registry()
///     .with(layer.with_filter(Targets::new().with_target("zsp::audit", tracing::Level::INFO)));
/// tracing::subscriber::with_default(subscriber, || {
///     // What the verifier emits for each decision:
///     AuditEvent {
///         decision: AuditDecision::Allow, reason: "ok", iss: Some("https://broker"),
///         sub: Some("svc-a"), client_id: None, jti: Some("j-1"), method: "GET",
///         route: Some("/orders/{id}"), scopes: Some("orders:read"), elapsed_us: 3,
///     }
///     .emit();
///     tracing::info!(target: "app", "not an audit event: not written");
/// });
/// audit_log.flush()?;
/// let text = std::fs::read_to_string(&path)?;
/// assert_eq!(text.lines().count(), 1);
/// let v: serde_json::Value = serde_json::from_str(&text)?;
/// assert_eq!(v["decision"], "allow");
/// assert_eq!(v["route"], "/orders/{id}");
/// assert_eq!(v["elapsed_us"], 3);
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct JsonAuditLayer<W: Write + Send + 'static> {
    lines: Arc<JsonLinesAudit<W>>,
}

impl<W: Write + Send + 'static> JsonAuditLayer<W> {
    /// Audit lines to `out`, buffered (8 KiB).
    pub fn new(out: W) -> Self {
        Self::from_sink(Arc::new(JsonLinesAudit::new(out)))
    }

    /// Audit lines to `out` through a buffer of `capacity` bytes; with 0, each line is written
    /// as its event arrives.
    pub fn with_buffer(out: W, capacity: usize) -> Self {
        Self::from_sink(Arc::new(JsonLinesAudit::with_buffer(out, capacity)))
    }

    /// Audit lines through `sink`, which a verifier may also use directly
    /// ([`crate::VerifierBuilder::audit_sink`]): one file, one buffer, whole lines.
    pub fn from_sink(sink: Arc<JsonLinesAudit<W>>) -> Self {
        Self { lines: sink }
    }

    /// The sink the lines go through: keep it to flush at shutdown.
    pub fn sink(&self) -> Arc<JsonLinesAudit<W>> {
        self.lines.clone()
    }
}

impl<S: Subscriber, W: Write + Send + 'static> Layer<S> for JsonAuditLayer<W> {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        // The per-layer filter should already have done this; checked again so that an
        // unfiltered layer still writes only audit events.
        if event.metadata().target() != AUDIT_TARGET {
            return;
        }
        let ts_ms = unix_millis();
        self.lines.write_line(|out| {
            out.extend_from_slice(b"{\"ts_ms\":");
            decimal(out, ts_ms);
            event.record(&mut JsonFields { out });
            out.extend_from_slice(b"}\n");
        });
    }
}

/// Appends each field of an event as `,"name":value`.
struct JsonFields<'b> {
    out: &'b mut Vec<u8>,
}

impl JsonFields<'_> {
    fn key(&mut self, field: &Field) {
        self.out.extend_from_slice(b",\"");
        escape_into(self.out, field.name());
        self.out.extend_from_slice(b"\":");
    }

    fn string(&mut self, field: &Field, value: &str) {
        self.key(field);
        self.out.push(b'"');
        escape_into(self.out, value);
        self.out.push(b'"');
    }
}

impl Visit for JsonFields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() != "message" {
            self.string(field, value);
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.key(field);
        decimal(self.out, value);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.key(field);
        if value < 0 {
            self.out.push(b'-');
        }
        decimal(self.out, value.unsigned_abs());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.key(field);
        self.out.extend_from_slice(if value { b"true" } else { b"false" });
    }

    /// Everything else, `%display` and `?debug` values included, as a string.
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            return;
        }
        let mut text = String::new();
        // Writing to a String cannot fail; a Debug impl that reports an error leaves what it
        // wrote so far.
        let _ = write!(text, "{value:?}");
        self.string(field, &text);
    }
}

#[cfg(test)]
mod tests {
    use tracing_subscriber::filter::Targets;
    use tracing_subscriber::prelude::*;

    use super::*;
    use crate::audit_log::tests::{Shared, event};

    fn capture(emit: impl FnOnce()) -> Vec<serde_json::Value> {
        let out = Shared::default();
        let layer = JsonAuditLayer::with_buffer(out.clone(), 0);
        let subscriber = tracing_subscriber::registry()
            .with(layer.with_filter(Targets::new().with_target(AUDIT_TARGET, tracing::Level::INFO)));
        tracing::subscriber::with_default(subscriber, emit);
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert!(text.is_empty() || text.ends_with('\n'));
        text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }

    /// The verifier's event through tracing gives the line the sink writes, but the time.
    #[test]
    fn verifier_events_match_the_sink_line() {
        let hostile = "a\"b\\c\nd\u{7f}\u{1}é";
        let lines = capture(|| event(Some(hostile)).emit());
        assert_eq!(lines.len(), 1);
        let mut direct = Vec::new();
        event(Some(hostile)).write_json_line(&mut direct, 0);
        let mut expected: serde_json::Value = serde_json::from_slice(&direct).unwrap();
        let mut got = lines[0].clone();
        assert!(got["ts_ms"].as_u64().unwrap() > 1_600_000_000_000);
        got["ts_ms"] = 0.into();
        expected["ts_ms"] = 0.into();
        assert_eq!(got, expected);
        assert_eq!(got["sub"], hostile);
        assert!(got.get("client_id").is_none() && got.get("message").is_none());
    }

    /// A verifier's sink and the layer can share one sink: both lines land in it, whole.
    #[test]
    fn a_shared_sink_gets_both_lines() {
        use crate::audit::AuditSink;
        let out = Shared::default();
        let sink = Arc::new(JsonLinesAudit::new(out.clone()));
        let layer = JsonAuditLayer::from_sink(sink.clone());
        let subscriber = tracing_subscriber::registry()
            .with(layer.with_filter(Targets::new().with_target(AUDIT_TARGET, tracing::Level::INFO)));
        tracing::subscriber::with_default(subscriber, || {
            event(Some("through tracing")).emit();
            sink.record(&event(Some("direct")));
        });
        assert!(out.0.lock().unwrap().is_empty(), "buffered until flushed");
        sink.flush().unwrap();
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let subs: Vec<String> = text
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["sub"].to_string())
            .collect();
        assert_eq!(subs, ["\"through tracing\"", "\"direct\""]);
    }

    /// Other zsp audit events (the broker's use `%display` fields) and every value type.
    #[test]
    fn any_audit_event_and_nothing_else() {
        let lines = capture(|| {
            let id = "client\"1";
            tracing::info!(target: "zsp::audit", decision = "deny", client_id = %id, n = -5i64,
                ok = true, big = u64::MAX, dbg = ?Some(1), "client authentication failed");
            tracing::info!(target: "zsp::verify", decision = "allow", "not audit");
            tracing::info!(target: "app", "not audit");
            tracing::debug!(target: "zsp::audit", decision = "allow", "below the filter's level");
        });
        assert_eq!(lines.len(), 1);
        let v = &lines[0];
        assert_eq!(v["decision"], "deny");
        assert_eq!(v["client_id"], "client\"1");
        assert_eq!(v["n"], -5);
        assert_eq!(v["ok"], true);
        assert_eq!(v["big"], u64::MAX);
        assert_eq!(v["dbg"], "Some(1)");
        assert!(v.get("message").is_none());
    }
}
