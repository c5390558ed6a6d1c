//! kube-rs against every simulated cluster: list, server-side apply, and a
//! watcher-based wait for a LoadBalancer address that appears after a delay.

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Service};
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, wait::await_condition, wait::conditions, watcher};
use kube_sim::{Federation, Flavor};
use serde_json::json;

use crate::common::client;

#[tokio::test]
async fn kube_rs_lists_applies_and_awaits_a_load_balancer() {
    let zones = ["us-east1-b", "us-west1-a=west"];
    let fed = Federation::builder()
        .zones(zones)
        .flavor(Flavor::Gke)
        .lb_delay(Duration::from_millis(300))
        .start()
        .unwrap();
    for context in ["us-east1-b", "west"] {
        let c = client(&fed, context).await;
        let nss: Vec<String> = Api::<Namespace>::all(c.clone())
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .map(|n| n.metadata.name.unwrap())
            .collect();
        assert!(nss.contains(&"kube-system".to_string()));

        let api: Api<Service> = Api::namespaced(c.clone(), "default");
        let svc = json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "crdb-dns", "labels": {"app.kubernetes.io/managed-by": "crdb-multiregion"}},
            "spec": {"type": "LoadBalancer", "selector": {"k8s-app": "kube-dns"}, "ports": [{"name": "dns", "port": 53, "protocol": "UDP"}]},
        });
        let pp = PatchParams::apply("crdb-multiregion").force();
        api.patch("crdb-dns", &pp, &Patch::Apply(&svc))
            .await
            .unwrap();

        // A watcher sees the address arrive.
        let mut stream = watcher(
            api.clone(),
            watcher::Config::default().fields("metadata.name=crdb-dns"),
        )
        .applied_objects()
        .boxed();
        let seen = tokio::time::timeout(Duration::from_secs(15), async {
            while let Some(svc) = stream.next().await {
                let svc = svc.unwrap();
                let ip = svc
                    .status
                    .and_then(|s| s.load_balancer)
                    .and_then(|lb| lb.ingress)
                    .and_then(|i| i.into_iter().next())
                    .and_then(|i| i.ip);
                if let Some(ip) = ip {
                    return ip;
                }
            }
            panic!("watch ended");
        })
        .await
        .expect("LB address within 15 s");
        let done = tokio::time::timeout(
            Duration::from_secs(15),
            await_condition(
                api.clone(),
                "crdb-dns",
                conditions::is_service_loadbalancer_provisioned(),
            ),
        )
        .await
        .expect("condition within 15 s")
        .unwrap()
        .unwrap();
        let ip = done.status.unwrap().load_balancer.unwrap().ingress.unwrap()[0]
            .ip
            .clone()
            .unwrap();
        assert_eq!(ip, seen);
        // A second identical apply changes nothing.
        let cluster = fed.cluster(context);
        cluster.clear_requests();
        api.patch("crdb-dns", &pp, &Patch::Apply(&svc))
            .await
            .unwrap();
        assert!(cluster.requests().iter().all(|r| !r.changed));
    }
}
