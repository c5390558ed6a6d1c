//! Field validation as the API server does it: unknown fields in a
//! server-side apply are refused; in creates, updates and patches they are
//! dropped with a warning, or refused with `fieldValidation=Strict`.

use k8s_openapi::api::apps::v1::StatefulSet;
use kube::api::{Api, Patch, PatchParams};
use kube_sim::Flavor;
use serde_json::{Value, json};

use crate::common::{api_code, client, fast, raw};

fn sts_with_typo() -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "db", "namespace": "default"},
        "spec": {
            "serviceName": "db", "replicas": 1,
            "selector": {"matchLabels": {"app": "db"}},
            "template": {"metadata": {"labels": {"app": "db"}}, "spec": {
                "containers": [{"name": "db", "image": "cockroachdb/cockroach:v24.1.0",
                                "imagePullPolicyy": "Always"}],
            }},
        },
    })
}

const STS_URL: &str = "/apis/apps/v1/namespaces/default/statefulsets";

#[tokio::test]
async fn server_side_apply_with_a_misspelled_field_is_refused() {
    let fed = fast(&["z1"], Flavor::Gke);
    let api: Api<kube::api::DynamicObject> = Api::namespaced_with(
        client(&fed, "z1").await,
        "default",
        &kube::api::ApiResource::erase::<StatefulSet>(&()),
    );
    let e = api
        .patch(
            "db",
            &PatchParams::apply("crdb-multiregion"),
            &Patch::Apply(&sts_with_typo()),
        )
        .await
        .unwrap_err();
    assert_eq!(api_code(&e).0, 500);
    assert!(
        e.to_string().contains(
            "failed to create typed patch object (default/db; apps/v1, Kind=StatefulSet): \
             .spec.template.spec.containers[name=\"db\"].imagePullPolicyy: field not declared in schema"
        ),
        "{e}"
    );
    assert!(
        fed.cluster("z1")
            .get("apps/v1", "StatefulSet", Some("default"), "db")
            .is_none(),
        "nothing was created"
    );
    // Strict or not: apply refuses either way, and the correct object applies.
    let mut pp = PatchParams::apply("crdb-multiregion");
    pp.field_validation = Some(kube::api::ValidationDirective::Ignore);
    assert!(
        api.patch("db", &pp, &Patch::Apply(&sts_with_typo()))
            .await
            .is_err()
    );
    let mut good = sts_with_typo();
    good["spec"]["template"]["spec"]["containers"][0]
        .as_object_mut()
        .unwrap()
        .remove("imagePullPolicyy");
    api.patch(
        "db",
        &PatchParams::apply("crdb-multiregion"),
        &Patch::Apply(&good),
    )
    .await
    .unwrap();
    // A later apply that adds an unknown field is refused too.
    let mut typo = good.clone();
    typo["spec"]["replica"] = json!(2);
    let e = api
        .patch(
            "db",
            &PatchParams::apply("crdb-multiregion"),
            &Patch::Apply(&typo),
        )
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .contains(".spec.replica: field not declared in schema"),
        "{e}"
    );
}

#[tokio::test]
async fn create_drops_unknown_fields_with_a_warning_by_default() {
    let fed = fast(&["z1"], Flavor::Gke);
    let c = client(&fed, "z1").await;
    let body = serde_json::to_vec(&sts_with_typo()).unwrap();
    let (status, headers, obj) = raw(&c, "POST", STS_URL, Some("application/json"), body).await;
    assert_eq!(status, 201, "{obj}");
    let warnings: Vec<&str> = headers
        .get_all("warning")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(
        warnings,
        vec!["299 - \"unknown field \\\"spec.template.spec.containers[0].imagePullPolicyy\\\"\""]
    );
    let stored = fed
        .cluster("z1")
        .get("apps/v1", "StatefulSet", Some("default"), "db")
        .unwrap();
    assert!(
        stored["spec"]["template"]["spec"]["containers"][0]
            .get("imagePullPolicyy")
            .is_none(),
        "the unknown field is dropped: {stored}"
    );
}

#[tokio::test]
async fn strict_field_validation_refuses_creates_updates_and_patches() {
    let fed = fast(&["z1"], Flavor::Gke);
    let c = client(&fed, "z1").await;
    let strict = format!("{STS_URL}?fieldValidation=Strict");
    let body = serde_json::to_vec(&sts_with_typo()).unwrap();
    let (status, _, status_obj) = raw(&c, "POST", &strict, Some("application/json"), body).await;
    assert_eq!(status, 400);
    assert_eq!(status_obj["reason"], "BadRequest");
    assert_eq!(
        status_obj["message"],
        "StatefulSet in version \"v1\" cannot be handled as a StatefulSet: strict decoding error: \
         unknown field \"spec.template.spec.containers[0].imagePullPolicyy\""
    );
    // Create it correctly, then try an update and a merge patch with a typo.
    let mut good = sts_with_typo();
    good["spec"]["template"]["spec"]["containers"][0]
        .as_object_mut()
        .unwrap()
        .remove("imagePullPolicyy");
    let (status, _, _) = raw(
        &c,
        "POST",
        &strict,
        Some("application/json"),
        serde_json::to_vec(&good).unwrap(),
    )
    .await;
    assert_eq!(status, 201);
    let mut put = good.clone();
    put["spec"]["replicaz"] = json!(3);
    let (status, _, s) = raw(
        &c,
        "PUT",
        &format!("{STS_URL}/db?fieldValidation=Strict"),
        Some("application/json"),
        serde_json::to_vec(&put).unwrap(),
    )
    .await;
    assert_eq!(status, 400, "{s}");
    assert!(
        s["message"]
            .as_str()
            .unwrap()
            .ends_with("unknown field \"spec.replicaz\""),
        "{s}"
    );
    let (status, _, s) = raw(
        &c,
        "PATCH",
        &format!("{STS_URL}/db?fieldValidation=Strict"),
        Some("application/merge-patch+json"),
        br#"{"metadata": {"labelz": {"a": "b"}}}"#.to_vec(),
    )
    .await;
    assert_eq!(status, 400, "{s}");
    assert!(
        s["message"]
            .as_str()
            .unwrap()
            .ends_with("unknown field \"metadata.labelz\""),
        "{s}"
    );
    // An invalid directive is a bad request of its own.
    let (status, _, _) = raw(
        &c,
        "PATCH",
        &format!("{STS_URL}/db?fieldValidation=strict"),
        Some("application/merge-patch+json"),
        br#"{"metadata": {"labels": {"a": "b"}}}"#.to_vec(),
    )
    .await;
    assert_eq!(status, 400);
}
