//! hako's kubelet and scheduler (issue 17): a client of the Kubernetes API that runs
//! the Pods bound to its Node through CRI, and the scheduler that binds them.
