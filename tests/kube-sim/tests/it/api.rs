//! API semantics through kube-rs and raw requests: verbs, selectors,
//! conflicts, server-side apply ownership, dry-run, watch, namespaces.

use std::collections::BTreeMap;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::authorization::v1::{SelfSubjectAccessReview, SelfSubjectRulesReview};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube_sim::Flavor;
use serde_json::json;

use crate::common::{api_code, client, fast, raw, wait_until};

fn cm(name: &str, labels: &[(&str, &str)], data: &[(&str, &str)]) -> ConfigMap {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "labels": labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>()},
        "data": data.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>(),
    }))
    .unwrap()
}

async fn namespace(client: &kube::Client, name: &str) {
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
}

#[tokio::test]
async fn unauthenticated_requests_get_401() {
    let fed = fast(&["z1"], Flavor::Generic);
    let kc = kube::config::Kubeconfig::read_from(fed.kubeconfig_path()).unwrap();
    let mut config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    config.auth_info = Default::default();
    let anon = kube::Client::try_from(config).unwrap();
    let err = Api::<ConfigMap>::namespaced(anon, "default")
        .list(&ListParams::default())
        .await
        .unwrap_err();
    assert_eq!(api_code(&err), (401, "Unauthorized".to_string()));
    assert!(fed.cluster("z1").requests().iter().any(|r| r.status == 401));
}

#[tokio::test]
async fn discovery_and_version_work_for_kube_rs() {
    let fed = fast(&["z1"], Flavor::Generic);
    let c = client(&fed, "z1").await;
    let v = c.apiserver_version().await.unwrap();
    assert_eq!(v.major, "1");
    let discovery = kube::Discovery::new(c.clone()).run().await.unwrap();
    for (group, kind) in [
        ("apps", "StatefulSet"),
        ("", "Service"),
        ("batch", "Job"),
        ("policy", "PodDisruptionBudget"),
    ] {
        let gvk = kube::api::GroupVersionKind::gvk(group, "v1", kind);
        assert!(
            discovery.resolve_gvk(&gvk).is_some(),
            "discovery misses {kind}"
        );
    }
}

#[tokio::test]
async fn crud_selectors_and_stale_updates() {
    let fed = fast(&["z1"], Flavor::Generic);
    let c = client(&fed, "z1").await;
    namespace(&c, "app").await;
    let api: Api<ConfigMap> = Api::namespaced(c.clone(), "app");
    let pp = PostParams::default();
    let a = api
        .create(&pp, &cm("a", &[("tier", "db")], &[("k", "1")]))
        .await
        .unwrap();
    api.create(&pp, &cm("b", &[("tier", "web")], &[]))
        .await
        .unwrap();
    api.create(&pp, &cm("c", &[], &[])).await.unwrap();
    let err = api.create(&pp, &cm("a", &[], &[])).await.unwrap_err();
    assert_eq!(api_code(&err), (409, "AlreadyExists".to_string()));

    let names = |l: kube::core::ObjectList<ConfigMap>| -> Vec<String> {
        l.items
            .into_iter()
            .map(|o| o.metadata.name.unwrap())
            .collect()
    };
    let set = api
        .list(&ListParams::default().labels("tier in (db,web)"))
        .await
        .unwrap();
    assert_eq!(names(set), ["a", "b"]);
    let neg = api
        .list(&ListParams::default().labels("!tier"))
        .await
        .unwrap();
    assert!(names(neg).contains(&"c".to_string()));
    let by_name = api
        .list(&ListParams::default().fields("metadata.name=b"))
        .await
        .unwrap();
    assert_eq!(names(by_name), ["b"]);

    let mut updated = a.clone();
    updated.data = Some([("k".to_string(), "2".to_string())].into());
    let fresh = api.replace("a", &pp, &updated).await.unwrap();
    assert_ne!(fresh.metadata.resource_version, a.metadata.resource_version);
    let err = api.replace("a", &pp, &updated).await.unwrap_err();
    assert_eq!(api_code(&err), (409, "Conflict".to_string()));

    api.delete("a", &DeleteParams::default()).await.unwrap();
    let err = api.get("a").await.unwrap_err();
    assert_eq!(api_code(&err), (404, "NotFound".to_string()));

    api.delete_collection(
        &DeleteParams::default(),
        &ListParams::default().labels("tier=web"),
    )
    .await
    .unwrap();
    let left = names(api.list(&ListParams::default()).await.unwrap());
    assert!(
        left.contains(&"c".to_string())
            && !left.contains(&"a".to_string())
            && !left.contains(&"b".to_string())
    );
}

#[tokio::test]
async fn patch_formats_merge_strategic_and_json() {
    let fed = fast(&["z1"], Flavor::Generic);
    let c = client(&fed, "z1").await;
    let api: Api<ConfigMap> = Api::default_namespaced(c.clone());
    api.create(
        &PostParams::default(),
        &cm("p", &[("a", "1")], &[("x", "1"), ("y", "2")]),
    )
    .await
    .unwrap();
    let pp = PatchParams::default();
    let merged = api
        .patch(
            "p",
            &pp,
            &Patch::Merge(json!({"data": {"x": null, "z": "3"}})),
        )
        .await
        .unwrap();
    assert_eq!(
        merged.data.unwrap(),
        [("y".into(), "2".into()), ("z".into(), "3".into())].into()
    );
    let json_patched = api
        .patch(
            "p",
            &pp,
            &Patch::<()>::Json(
                serde_json::from_value(
                    json!([{"op": "replace", "path": "/data/y", "value": "20"}]),
                )
                .unwrap(),
            ),
        )
        .await
        .unwrap();
    assert_eq!(json_patched.data.unwrap()["y"], "20");

    let deploys: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(c.clone(), "kube-system");
    let d = deploys
        .patch(
            "coredns",
            &pp,
            &Patch::Strategic(json!({"spec": {"template": {"spec": {"containers": [{"name": "coredns", "image": "coredns:patched"}]}}}})),
        )
        .await
        .unwrap();
    let containers = d.spec.unwrap().template.spec.unwrap().containers;
    assert_eq!(containers.len(), 1);
    assert_eq!(containers[0].image.as_deref(), Some("coredns:patched"));
    assert_eq!(
        containers[0].ports.as_ref().map(Vec::len),
        Some(3),
        "merge by name keeps the ports"
    );
}

#[tokio::test]
async fn server_side_apply_tracks_ownership_and_reports_noops() {
    let fed = fast(&["z1"], Flavor::Generic);
    let cluster = fed.cluster("z1");
    let c = client(&fed, "z1").await;
    let api: Api<ConfigMap> = Api::default_namespaced(c.clone());
    let desired = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "owned"}, "data": {"k": "v"}});
    let first = api
        .patch(
            "owned",
            &PatchParams::apply("product"),
            &Patch::Apply(&desired),
        )
        .await
        .unwrap();
    cluster.clear_requests();
    let second = api
        .patch(
            "owned",
            &PatchParams::apply("product"),
            &Patch::Apply(&desired),
        )
        .await
        .unwrap();
    assert_eq!(
        first.metadata.resource_version,
        second.metadata.resource_version
    );
    let patches: Vec<_> = cluster
        .requests()
        .into_iter()
        .filter(|r| r.method == "PATCH")
        .collect();
    assert_eq!(patches.len(), 1);
    assert!(
        !patches[0].changed,
        "an identical re-apply must not change the object"
    );

    let rival = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "owned"}, "data": {"k": "other"}});
    let err = api
        .patch("owned", &PatchParams::apply("rival"), &Patch::Apply(&rival))
        .await
        .unwrap_err();
    assert_eq!(api_code(&err), (409, "Conflict".to_string()));
    let same = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "owned"}, "data": {"k": "v"}});
    api.patch("owned", &PatchParams::apply("rival"), &Patch::Apply(&same))
        .await
        .unwrap();
    let forced = api
        .patch(
            "owned",
            &PatchParams::apply("rival").force(),
            &Patch::Apply(&rival),
        )
        .await
        .unwrap();
    assert_eq!(forced.data.unwrap()["k"], "other");
    let managers: Vec<String> = forced
        .metadata
        .managed_fields
        .unwrap()
        .into_iter()
        .filter(|m| {
            m.fields_v1
                .as_ref()
                .is_some_and(|f| f.0.pointer("/f:data/f:k").is_some())
        })
        .map(|m| m.manager.unwrap())
        .collect();
    assert_eq!(managers, ["rival"]);

    // Dropping a field from the apply configuration removes it.
    let fewer = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "mine"}, "data": {"a": "1", "b": "2"}});
    api.patch(
        "mine",
        &PatchParams::apply("product"),
        &Patch::Apply(&fewer),
    )
    .await
    .unwrap();
    let fewer = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "mine"}, "data": {"a": "1"}});
    let after = api
        .patch(
            "mine",
            &PatchParams::apply("product"),
            &Patch::Apply(&fewer),
        )
        .await
        .unwrap();
    assert_eq!(after.data.unwrap().len(), 1);
}

#[tokio::test]
async fn dry_run_returns_the_result_and_stores_nothing() {
    let fed = fast(&["z1"], Flavor::Generic);
    let cluster = fed.cluster("z1");
    let c = client(&fed, "z1").await;
    let api: Api<ConfigMap> = Api::default_namespaced(c.clone());
    let rv = cluster.resource_version();
    let pp = PostParams {
        dry_run: true,
        ..Default::default()
    };
    let created = api
        .create(&pp, &cm("dry", &[], &[("k", "v")]))
        .await
        .unwrap();
    assert_eq!(created.metadata.name.as_deref(), Some("dry"));
    assert_eq!(api_code(&api.get("dry").await.unwrap_err()).0, 404);
    let applied = api
        .patch(
            "dry2",
            &PatchParams::apply("product").dry_run(),
            &Patch::Apply(
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "dry2"}}),
            ),
        )
        .await
        .unwrap();
    assert_eq!(applied.metadata.name.as_deref(), Some("dry2"));
    assert!(
        cluster
            .get("v1", "ConfigMap", Some("default"), "dry2")
            .is_none()
    );
    // Neither dry run stored a version. (The cluster's resourceVersion as a
    // whole may move meanwhile: its controllers keep writing.)
    let dry: Vec<_> = cluster
        .requests()
        .into_iter()
        .filter(|r| r.query.contains("dryRun=All"))
        .collect();
    assert_eq!(dry.len(), 2, "{dry:?}");
    assert!(dry.iter().all(|r| !r.changed), "{dry:?}");
    let stored_configmaps = cluster
        .list("v1", "ConfigMap", Some("default"))
        .into_iter()
        .filter(|o| {
            o["metadata"]["resourceVersion"]
                .as_str()
                .and_then(|v| v.parse::<u64>().ok())
                > Some(rv)
        })
        .count();
    assert_eq!(stored_configmaps, 0);
}

#[tokio::test]
async fn watch_resumes_from_a_resource_version() {
    let fed = fast(&["z1"], Flavor::Generic);
    let c = client(&fed, "z1").await;
    let api: Api<ConfigMap> = Api::default_namespaced(c.clone());
    let created = api
        .create(&PostParams::default(), &cm("w", &[], &[("n", "0")]))
        .await
        .unwrap();
    let rv = created.metadata.resource_version.clone().unwrap();
    for n in 1..=2 {
        api.patch(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"n": n.to_string()}})),
        )
        .await
        .unwrap();
    }
    let wp = WatchParams::default().fields("metadata.name=w").timeout(5);
    let mut stream = api.watch(&wp, &rv).await.unwrap().boxed();
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let ev = tokio::time::timeout(crate::common::WAIT, stream.try_next())
            .await
            .expect("watch event in time")
            .unwrap()
            .expect("stream open");
        if let WatchEvent::Modified(o) = ev {
            seen.push(o.data.unwrap()["n"].clone());
        }
    }
    assert_eq!(seen, ["1", "2"]);

    // Bookmarks arrive on an idle watch that asked for them.
    let wp = WatchParams::default().timeout(10);
    let current = api
        .get("w")
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut stream = api.watch(&wp, &current).await.unwrap().boxed();
    let ev = tokio::time::timeout(crate::common::WAIT, stream.try_next())
        .await
        .expect("bookmark in time")
        .unwrap()
        .expect("stream open");
    assert!(matches!(ev, WatchEvent::Bookmark(_)), "got {ev:?}");
}

#[tokio::test]
async fn namespaces_terminate_and_reject_new_content() {
    let fed = fast(&["z1"], Flavor::Generic);
    let cluster = fed.cluster("z1");
    let c = client(&fed, "z1").await;
    let err = Api::<ConfigMap>::namespaced(c.clone(), "missing")
        .create(&PostParams::default(), &cm("x", &[], &[]))
        .await
        .unwrap_err();
    assert_eq!(api_code(&err), (404, "NotFound".to_string()));

    cluster.set_faults(kube_sim::Faults {
        namespace_delete_delay: std::time::Duration::from_secs(60),
        ..Default::default()
    });
    namespace(&c, "doomed").await;
    let api: Api<ConfigMap> = Api::namespaced(c.clone(), "doomed");
    api.create(&PostParams::default(), &cm("inside", &[], &[]))
        .await
        .unwrap();
    let nss: Api<Namespace> = Api::all(c.clone());
    nss.delete("doomed", &DeleteParams::default())
        .await
        .unwrap();
    let ns = nss.get("doomed").await.unwrap();
    assert_eq!(ns.status.unwrap().phase.as_deref(), Some("Terminating"));
    assert!(ns.metadata.deletion_timestamp.is_some());
    let err = api
        .create(&PostParams::default(), &cm("late", &[], &[]))
        .await
        .unwrap_err();
    assert_eq!(api_code(&err), (403, "Forbidden".to_string()));

    cluster.set_faults(kube_sim::Faults::default());
    wait_until("namespace doomed to vanish", || {
        cluster.get("v1", "Namespace", None, "doomed").is_none()
    })
    .await;
    assert!(cluster.list("v1", "ConfigMap", Some("doomed")).is_empty());
    let err = nss
        .delete("kube-system", &DeleteParams::default())
        .await
        .unwrap_err();
    assert_eq!(api_code(&err).0, 403);
}

#[tokio::test]
async fn access_reviews_are_allowed_and_unknown_paths_404() {
    let fed = fast(&["z1"], Flavor::Generic);
    let c = client(&fed, "z1").await;
    let review: SelfSubjectAccessReview = serde_json::from_value(json!({
        "apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
        "spec": {"resourceAttributes": {"verb": "create", "group": "apps", "resource": "statefulsets", "namespace": "x"}},
    }))
    .unwrap();
    let answer = Api::<SelfSubjectAccessReview>::all(c.clone())
        .create(&PostParams::default(), &review)
        .await
        .unwrap();
    assert!(answer.status.unwrap().allowed);
    let (code, _, body) = raw(&c, "GET", "/apis/example.com/v1/widgets", None, vec![]).await;
    assert_eq!(code, 404);
    assert_eq!(body["kind"], "Status");
    let (code, _, body) = raw(
        &c,
        "PATCH",
        "/api/v1/namespaces/default/configmaps/x",
        Some("text/plain"),
        b"{}".to_vec(),
    )
    .await;
    assert_eq!(
        (code, body["reason"].as_str()),
        (415, Some("UnsupportedMediaType"))
    );
}

#[tokio::test]
async fn rules_reviews_list_every_verb_but_the_denied_ones() {
    let fed = fast(&["z1"], Flavor::Generic);
    let c = client(&fed, "z1").await;
    let review: SelfSubjectRulesReview = serde_json::from_value(json!({
        "apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectRulesReview",
        "spec": {"namespace": "x"},
    }))
    .unwrap();
    let api = Api::<SelfSubjectRulesReview>::all(c.clone());
    let allows = |status: &k8s_openapi::api::authorization::v1::SubjectRulesReviewStatus,
                  verb: &str,
                  resource: &str| {
        status.resource_rules.iter().any(|r| {
            (r.verbs.iter().any(|v| v == "*" || v == verb))
                && r.resources
                    .as_ref()
                    .is_some_and(|l| l.iter().any(|x| x == "*" || x == resource))
        })
    };
    let status = api
        .create(&PostParams::default(), &review)
        .await
        .unwrap()
        .status
        .unwrap();
    assert!(!status.incomplete);
    assert!(allows(&status, "patch", "services"));
    fed.cluster("z1").set_faults(kube_sim::Faults {
        denied: vec!["patch services".into()],
        ..Default::default()
    });
    let status = api
        .create(&PostParams::default(), &review)
        .await
        .unwrap()
        .status
        .unwrap();
    assert!(!allows(&status, "patch", "services"));
    assert!(allows(&status, "get", "services"));
    assert!(allows(&status, "patch", "secrets"));
}
