//! GetContainerEvents: the engine's event log (written by the engine and
//! the monitors, so exits nobody asked for are seen too) turned into CRI
//! container events: create, start, die and destroy of CRI containers and
//! of pod sandboxes (whose events carry the sandbox's id, as containerd's).

use k8s_cri::v1 as cri;
use tokio::sync::mpsc::Sender;

use crate::sandbox::KIND_LABEL;
use crate::server::State;

type Item = Result<cri::ContainerEventResponse, tonic::Status>;

/// Send every CRI container event from `since` (unix ns: when the client
/// asked, so nothing falls between the request and the thread) to `tx`,
/// until it closes.
pub(crate) fn follow(state: &State, since: i128, tx: Sender<Item>) {
    let engine = match crate::sandbox::open(&state.root) {
        Ok((e, _)) => e,
        Err(e) => {
            let _ = tx.blocking_send(Err(e.into()));
            return;
        }
    };
    let filter = match hako_engine::events::Filter::parse(&["type=container".to_string()]) {
        Ok(f) => f,
        Err(e) => {
            let _ = tx.blocking_send(Err(tonic::Status::internal(e.to_string())));
            return;
        }
    };
    // Ends with its client (checked at least every 200 ms), not at the
    // first event after it left.
    let result = engine.events().follow_while(
        &filter,
        Some(since),
        None,
        |e| {
            let kind = match e.action.as_str() {
                "create" => cri::ContainerEventType::ContainerCreatedEvent,
                "start" => cri::ContainerEventType::ContainerStartedEvent,
                "die" => cri::ContainerEventType::ContainerStoppedEvent,
                "destroy" => cri::ContainerEventType::ContainerDeletedEvent,
                _ => return !tx.is_closed(),
            };
            let item = match e.attributes.get(KIND_LABEL).map(String::as_str) {
                Some("container") => container_event(state, e, kind),
                Some("sandbox") => sandbox_event(state, e, kind),
                _ => return !tx.is_closed(),
            };
            tx.blocking_send(Ok(item)).is_ok()
        },
        || !tx.is_closed(),
    );
    if let Err(e) = result {
        let _ = tx.blocking_send(Err(tonic::Status::internal(crate::error::one_line(
            &format!("following the engine's events: {e}"),
        ))));
    }
}

/// An event of a CRI container, with its status and its sandbox's.
fn container_event(
    state: &State,
    e: &hako_engine::events::Event,
    kind: cri::ContainerEventType,
) -> cri::ContainerEventResponse {
    let mut status = crate::container::status(state, &e.id, false)
        .ok()
        .and_then(|s| s.status);
    // The monitor says "die" before the record shows the exit: take
    // the exit from the event itself.
    if kind == cri::ContainerEventType::ContainerStoppedEvent {
        if let Some(s) = status.as_mut() {
            s.state = cri::ContainerState::ContainerExited as i32;
            if let Some(code) = e.attributes.get("exitCode").and_then(|c| c.parse().ok()) {
                s.exit_code = code;
            }
            s.finished_at = e.time_nano as i64;
        }
    }
    let sandbox = e
        .attributes
        .get(crate::sandbox::SANDBOX_LABEL)
        .and_then(|id| crate::sandbox::status(state, id, false).ok())
        .and_then(|s| s.status);
    cri::ContainerEventResponse {
        container_id: e.id.clone(),
        container_event_type: kind as i32,
        created_at: e.time_nano as i64,
        pod_sandbox_status: sandbox,
        containers_statuses: status.into_iter().collect(),
    }
}

/// An event of a pod sandbox itself, as containerd sends them: the
/// sandbox's id as the container id, its status, its containers'.
fn sandbox_event(
    state: &State,
    e: &hako_engine::events::Event,
    kind: cri::ContainerEventType,
) -> cri::ContainerEventResponse {
    let mut sandbox = crate::sandbox::status(state, &e.id, false)
        .ok()
        .and_then(|s| s.status);
    // As for containers, the event is ahead of the record: its state is
    // what the event says.
    if let Some(s) = sandbox.as_mut() {
        match kind {
            cri::ContainerEventType::ContainerStartedEvent => {
                s.state = cri::PodSandboxState::SandboxReady as i32
            }
            cri::ContainerEventType::ContainerStoppedEvent => {
                s.state = cri::PodSandboxState::SandboxNotready as i32
            }
            _ => {}
        }
    }
    let members = state
        .open()
        .ok()
        .and_then(|h| crate::sandbox::members(h.engine(), &e.id).ok())
        .unwrap_or_default();
    let containers = members
        .iter()
        .filter_map(|c| crate::container::status(state, &c.id, false).ok())
        .filter_map(|s| s.status)
        .collect();
    cri::ContainerEventResponse {
        container_id: e.id.clone(),
        container_event_type: kind as i32,
        created_at: e.time_nano as i64,
        pod_sandbox_status: sandbox,
        containers_statuses: containers,
    }
}
