//! runtime.v1 RuntimeService: the runtime's version, status and
//! configuration; pod sandboxes and containers (in their own modules as
//! they arrive). RPCs not implemented yet answer Unimplemented, naming
//! themselves, so a client learns exactly what is missing.

use std::pin::Pin;
use std::sync::Arc;

use k8s_cri::v1 as cri;
use k8s_cri::v1::runtime_service_server::RuntimeService;
use tonic::{Request, Response, Status};

use crate::server::{blocking, blocking_long, State};
use crate::stream::Pending;

/// The RuntimeService of one root.
pub(crate) struct Runtime {
    state: Arc<State>,
}

impl Runtime {
    pub(crate) fn new(state: Arc<State>) -> Self {
        Runtime { state }
    }
}

type Reply<T> = Result<Response<T>, Status>;

/// The stream choices kubelet's streaming server refuses.
fn check_streams(
    rpc: &str,
    tty: bool,
    stdin: bool,
    stdout: bool,
    stderr: bool,
) -> Result<(), Status> {
    if tty && stderr {
        return Err(Status::invalid_argument(format!(
            "{rpc}: tty and stderr cannot both be true"
        )));
    }
    if !stdin && !stdout && !stderr {
        return Err(Status::invalid_argument(format!(
            "{rpc}: one of stdin, stdout, or stderr must be set"
        )));
    }
    Ok(())
}

fn unimplemented(rpc: &str) -> Status {
    Status::unimplemented(format!("{rpc} is not implemented by hako's CRI yet"))
}

#[tonic::async_trait]
impl RuntimeService for Runtime {
    async fn version(&self, _request: Request<cri::VersionRequest>) -> Reply<cri::VersionResponse> {
        Ok(Response::new(cri::VersionResponse {
            // The kubelet runtime API version ("0.1.0" as containerd and CRI-O answer).
            version: "0.1.0".into(),
            runtime_name: crate::RUNTIME_NAME.into(),
            runtime_version: crate::RUNTIME_VERSION.into(),
            runtime_api_version: crate::CRI_API_VERSION.into(),
        }))
    }

    async fn status(&self, request: Request<cri::StatusRequest>) -> Reply<cri::StatusResponse> {
        let verbose = request.into_inner().verbose;
        let state = self.state.clone();
        blocking("Status", move || {
            let conf_dir = &state.config.cni_conf_dir;
            let files = crate::cni::conf_files(conf_dir)?;
            let network = match files.first() {
                Some(_) => cri::RuntimeCondition {
                    r#type: "NetworkReady".into(),
                    status: true,
                    ..Default::default()
                },
                None => cri::RuntimeCondition {
                    r#type: "NetworkReady".into(),
                    status: false,
                    reason: "NetworkPluginNotReady".into(),
                    message: format!("no CNI configuration in {}", conf_dir.display()),
                },
            };
            let runtime = cri::RuntimeCondition {
                r#type: "RuntimeReady".into(),
                status: true,
                ..Default::default()
            };
            let mut info = std::collections::HashMap::new();
            if verbose {
                let config = serde_json::json!({
                    "root": state.root,
                    "cniConfDir": conf_dir,
                    "cniConfFiles": files,
                    "sandboxImage": state.config.sandbox_image,
                    "runtimeHandlers": state.config.runtimes.keys().collect::<Vec<_>>(),
                });
                info.insert("config".to_string(), config.to_string());
            }
            let mut handlers = vec![cri::RuntimeHandler {
                name: String::new(),
                features: Some(cri::RuntimeHandlerFeatures::default()),
            }];
            handlers.extend(state.config.runtimes.keys().map(|n| cri::RuntimeHandler {
                name: n.clone(),
                features: Some(cri::RuntimeHandlerFeatures::default()),
            }));
            Ok(cri::StatusResponse {
                status: Some(cri::RuntimeStatus {
                    conditions: vec![runtime, network],
                }),
                info,
                runtime_handlers: handlers,
                features: Some(cri::RuntimeFeatures::default()),
            })
        })
        .await
        .map(Response::new)
    }

    async fn runtime_config(
        &self,
        _request: Request<cri::RuntimeConfigRequest>,
    ) -> Reply<cri::RuntimeConfigResponse> {
        // The engine places containers at /hako/<id> in cgroupfs terms.
        Ok(Response::new(cri::RuntimeConfigResponse {
            linux: Some(cri::LinuxRuntimeConfiguration {
                cgroup_driver: cri::CgroupDriver::Cgroupfs as i32,
            }),
        }))
    }

    async fn update_runtime_config(
        &self,
        _request: Request<cri::UpdateRuntimeConfigRequest>,
    ) -> Reply<cri::UpdateRuntimeConfigResponse> {
        // The pod CIDR lives in the CNI configuration, as with containerd's
        // conf-dir mode: nothing to change here.
        Ok(Response::new(cri::UpdateRuntimeConfigResponse {}))
    }

    type GetContainerEventsStream = Pin<
        Box<dyn tokio_stream::Stream<Item = Result<cri::ContainerEventResponse, Status>> + Send>,
    >;

    async fn get_container_events(
        &self,
        _request: Request<cri::GetEventsRequest>,
    ) -> Reply<Self::GetContainerEventsStream> {
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let state = self.state.clone();
        // The engine's event log is followed by a thread of its own (it
        // blocks on inotify); it ends within 200 ms of the client leaving.
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as i128)
            .unwrap_or_default();
        std::thread::spawn(move || crate::events::follow(&state, since, tx));
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn run_pod_sandbox(
        &self,
        request: Request<cri::RunPodSandboxRequest>,
    ) -> Reply<cri::RunPodSandboxResponse> {
        let state = self.state.clone();
        let r = request.into_inner();
        blocking("RunPodSandbox", move || crate::sandbox::run(&state, r))
            .await
            .map(|pod_sandbox_id| Response::new(cri::RunPodSandboxResponse { pod_sandbox_id }))
    }

    async fn stop_pod_sandbox(
        &self,
        request: Request<cri::StopPodSandboxRequest>,
    ) -> Reply<cri::StopPodSandboxResponse> {
        let state = self.state.clone();
        let id = request.into_inner().pod_sandbox_id;
        blocking("StopPodSandbox", move || crate::sandbox::stop(&state, &id))
            .await
            .map(|()| Response::new(cri::StopPodSandboxResponse {}))
    }

    async fn remove_pod_sandbox(
        &self,
        request: Request<cri::RemovePodSandboxRequest>,
    ) -> Reply<cri::RemovePodSandboxResponse> {
        let state = self.state.clone();
        let id = request.into_inner().pod_sandbox_id;
        blocking("RemovePodSandbox", move || {
            crate::sandbox::remove(&state, &id)
        })
        .await
        .map(|()| Response::new(cri::RemovePodSandboxResponse {}))
    }

    async fn pod_sandbox_status(
        &self,
        request: Request<cri::PodSandboxStatusRequest>,
    ) -> Reply<cri::PodSandboxStatusResponse> {
        let state = self.state.clone();
        let r = request.into_inner();
        blocking("PodSandboxStatus", move || {
            crate::sandbox::status(&state, &r.pod_sandbox_id, r.verbose)
        })
        .await
        .map(Response::new)
    }

    async fn list_pod_sandbox(
        &self,
        request: Request<cri::ListPodSandboxRequest>,
    ) -> Reply<cri::ListPodSandboxResponse> {
        let state = self.state.clone();
        let filter = request.into_inner().filter;
        blocking("ListPodSandbox", move || {
            crate::sandbox::list(&state, filter)
        })
        .await
        .map(|items| Response::new(cri::ListPodSandboxResponse { items }))
    }

    async fn create_container(
        &self,
        request: Request<cri::CreateContainerRequest>,
    ) -> Reply<cri::CreateContainerResponse> {
        let state = self.state.clone();
        let r = request.into_inner();
        blocking("CreateContainer", move || {
            crate::container::create(&state, r)
        })
        .await
        .map(|container_id| Response::new(cri::CreateContainerResponse { container_id }))
    }

    async fn start_container(
        &self,
        request: Request<cri::StartContainerRequest>,
    ) -> Reply<cri::StartContainerResponse> {
        let state = self.state.clone();
        let r = request.into_inner();
        blocking("StartContainer", move || {
            crate::container::start(&state, &r.container_id)
        })
        .await
        .map(|()| Response::new(cri::StartContainerResponse {}))
    }

    async fn stop_container(
        &self,
        request: Request<cri::StopContainerRequest>,
    ) -> Reply<cri::StopContainerResponse> {
        let state = self.state.clone();
        let r = request.into_inner();
        blocking_long("StopContainer", move || {
            crate::container::stop(&state, &r.container_id, r.timeout)
        })
        .await
        .map(|()| Response::new(cri::StopContainerResponse {}))
    }

    async fn remove_container(
        &self,
        request: Request<cri::RemoveContainerRequest>,
    ) -> Reply<cri::RemoveContainerResponse> {
        let state = self.state.clone();
        let r = request.into_inner();
        blocking("RemoveContainer", move || {
            crate::container::remove(&state, &r.container_id)
        })
        .await
        .map(|()| Response::new(cri::RemoveContainerResponse {}))
    }

    async fn list_containers(
        &self,
        request: Request<cri::ListContainersRequest>,
    ) -> Reply<cri::ListContainersResponse> {
        let state = self.state.clone();
        let r = request.into_inner();
        blocking("ListContainers", move || {
            crate::container::list(&state, r.filter)
        })
        .await
        .map(|containers| Response::new(cri::ListContainersResponse { containers }))
    }

    async fn container_status(
        &self,
        request: Request<cri::ContainerStatusRequest>,
    ) -> Reply<cri::ContainerStatusResponse> {
        let state = self.state.clone();
        let r = request.into_inner();
        blocking("ContainerStatus", move || {
            crate::container::status(&state, &r.container_id, r.verbose)
        })
        .await
        .map(Response::new)
    }

    async fn update_container_resources(
        &self,
        request: Request<cri::UpdateContainerResourcesRequest>,
    ) -> Reply<cri::UpdateContainerResourcesResponse> {
        let state = self.state.clone();
        let r = request.into_inner();
        blocking("UpdateContainerResources", move || {
            crate::container::update(&state, r)
        })
        .await
        .map(|()| Response::new(cri::UpdateContainerResourcesResponse {}))
    }

    async fn reopen_container_log(
        &self,
        request: Request<cri::ReopenContainerLogRequest>,
    ) -> Reply<cri::ReopenContainerLogResponse> {
        let state = self.state.clone();
        let id = request.into_inner().container_id;
        blocking("ReopenContainerLog", move || {
            crate::container::reopen_log(&state, &id)
        })
        .await
        .map(|()| Response::new(cri::ReopenContainerLogResponse {}))
    }

    async fn exec_sync(
        &self,
        request: Request<cri::ExecSyncRequest>,
    ) -> Reply<cri::ExecSyncResponse> {
        let state = self.state.clone();
        let r = request.into_inner();
        blocking_long("ExecSync", move || crate::container::exec_sync(&state, r))
            .await
            .map(Response::new)
    }

    async fn exec(&self, request: Request<cri::ExecRequest>) -> Reply<cri::ExecResponse> {
        let mut r = request.into_inner();
        check_streams("exec", r.tty, r.stdin, r.stdout, r.stderr)?;
        if r.cmd.is_empty() {
            return Err(Status::invalid_argument("exec: the command is empty"));
        }
        let state = self.state.clone();
        let id = r.container_id.clone();
        r.container_id = blocking("Exec", move || {
            crate::container::running(&state, &id, "exec")
        })
        .await?;
        let url = self.state.streaming.url(Pending::Exec(r))?;
        Ok(Response::new(cri::ExecResponse { url }))
    }

    async fn attach(&self, request: Request<cri::AttachRequest>) -> Reply<cri::AttachResponse> {
        let mut r = request.into_inner();
        check_streams("attach", r.tty, r.stdin, r.stdout, r.stderr)?;
        let state = self.state.clone();
        let id = r.container_id.clone();
        r.container_id = blocking("Attach", move || {
            crate::container::running(&state, &id, "attach")
        })
        .await?;
        let url = self.state.streaming.url(Pending::Attach(r))?;
        Ok(Response::new(cri::AttachResponse { url }))
    }

    async fn port_forward(
        &self,
        request: Request<cri::PortForwardRequest>,
    ) -> Reply<cri::PortForwardResponse> {
        let mut r = request.into_inner();
        let state = self.state.clone();
        let id = r.pod_sandbox_id.clone();
        r.pod_sandbox_id =
            blocking("PortForward", move || crate::sandbox::running(&state, &id)).await?;
        let url = self.state.streaming.url(Pending::PortForward(r))?;
        Ok(Response::new(cri::PortForwardResponse { url }))
    }

    async fn container_stats(
        &self,
        request: Request<cri::ContainerStatsRequest>,
    ) -> Reply<cri::ContainerStatsResponse> {
        let state = self.state.clone();
        let r = request.into_inner();
        blocking("ContainerStats", move || {
            crate::container::stats(&state, &r.container_id)
        })
        .await
        .map(|stats| Response::new(cri::ContainerStatsResponse { stats: Some(stats) }))
    }

    async fn list_container_stats(
        &self,
        request: Request<cri::ListContainerStatsRequest>,
    ) -> Reply<cri::ListContainerStatsResponse> {
        let state = self.state.clone();
        let r = request.into_inner();
        blocking("ListContainerStats", move || {
            crate::container::list_stats(&state, r.filter)
        })
        .await
        .map(|stats| Response::new(cri::ListContainerStatsResponse { stats }))
    }

    async fn pod_sandbox_stats(
        &self,
        request: Request<cri::PodSandboxStatsRequest>,
    ) -> Reply<cri::PodSandboxStatsResponse> {
        let state = self.state.clone();
        let r = request.into_inner();
        blocking("PodSandboxStats", move || {
            crate::pod_stats::pod_stats(&state, &r.pod_sandbox_id)
        })
        .await
        .map(|stats| Response::new(cri::PodSandboxStatsResponse { stats: Some(stats) }))
    }

    async fn list_pod_sandbox_stats(
        &self,
        request: Request<cri::ListPodSandboxStatsRequest>,
    ) -> Reply<cri::ListPodSandboxStatsResponse> {
        let state = self.state.clone();
        let r = request.into_inner();
        blocking("ListPodSandboxStats", move || {
            crate::pod_stats::list(&state, r.filter)
        })
        .await
        .map(|stats| Response::new(cri::ListPodSandboxStatsResponse { stats }))
    }

    async fn checkpoint_container(
        &self,
        _request: Request<cri::CheckpointContainerRequest>,
    ) -> Reply<cri::CheckpointContainerResponse> {
        Err(unimplemented("CheckpointContainer"))
    }

    async fn list_metric_descriptors(
        &self,
        _request: Request<cri::ListMetricDescriptorsRequest>,
    ) -> Reply<cri::ListMetricDescriptorsResponse> {
        Err(unimplemented("ListMetricDescriptors"))
    }

    async fn list_pod_sandbox_metrics(
        &self,
        _request: Request<cri::ListPodSandboxMetricsRequest>,
    ) -> Reply<cri::ListPodSandboxMetricsResponse> {
        Err(unimplemented("ListPodSandboxMetrics"))
    }
}
