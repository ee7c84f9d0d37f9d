//! hako's workload controllers (issue 17): clients of the Kubernetes API that
//! reconcile ReplicaSets, Deployments, StatefulSets, DaemonSets, Jobs, CronJobs, owner
//! references (garbage collection) and namespace deletion.
